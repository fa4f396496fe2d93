"""`r1 serve`: its options and checks, and what it shows: a spinner naming the stage on a terminal, one line per stage when piped."""


import contextlib
import json
import shlex
import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import config, options
from r1cli.console import Environment
from r1cli.english import counted
from r1cli.errors import ExitStatus, R1Error, UsageError
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
markup = lazy_import("rich.markup")
cmdline = lazy_import("r1cli.server.cmdline")
plan = lazy_import("r1cli.server.plan")
process = lazy_import("r1cli.server.process")
state = lazy_import("r1cli.server.state")
server_serve = lazy_import("r1cli.server.serve")
logs = lazy_import("r1cli.server.logs")




def serve(
    ctx: typer.Context,
    model: options.ModelArg = config.DEFAULT_MODEL,
    quant: options.Quant = None,
    # None = not given: the demo's defaults then apply, never over a flag the user gave.
    dtype: Annotated[Optional[str], typer.Option(envvar="R1_DTYPE", show_default=False,
                                                 help="auto, half, float16, bfloat16, float32 (vLLM --dtype) [default: auto; demo: bfloat16].")] = None,
    gpu_mem: options.GpuMem = None,
    max_model_len: Annotated[Optional[str], typer.Option(envvar="R1_MAX_MODEL_LEN", show_default=False, metavar="N|auto",
                                                         help="Context window in tokens, or auto: the largest up to 32,768 that leaves KV room for 16 full sequences (vLLM --max-model-len) "
                                                              f"[default: auto on a GPU; {config.DEFAULT_MAX_MODEL_LEN} without a plan; demo: 1024].")] = None,
    prefix_caching: Annotated[bool, typer.Option("--prefix-caching/--no-prefix-caching", envvar="R1_PREFIX_CACHING", help="Reuse the KV cache of shared prompt prefixes (vLLM --enable-prefix-caching).")] = True,
    gpus: Annotated[Optional[str], typer.Option("--gpus", envvar="R1_GPUS", metavar="N|all", show_default=False,
                                                help="GPUs to plan over: replicas when the model fits one GPU, tensor parallel when not [default: 1].")] = None,
    tp: Annotated[Optional[int], typer.Option("--tp", envvar="R1_TP", show_default=False, help="Tensor parallel size: GPUs per model copy (vLLM --tensor-parallel-size) [default: the plan's].")] = None,
    pp: Annotated[Optional[int], typer.Option("--pp", envvar="R1_PP", show_default=False, help="Pipeline parallel size (vLLM --pipeline-parallel-size) [default: 1].")] = None,
    dp: Annotated[Optional[int], typer.Option("--dp", envvar="R1_DP", show_default=False, help="Data parallel size: replicas of the model (vLLM --data-parallel-size) [default: the plan's].")] = None,
    api_servers: Annotated[Optional[int], typer.Option("--api-servers", envvar="R1_API_SERVERS", show_default=False,
                                                       help="API server processes (vllm serve --api-server-count) [default: the plan's, from the CPU cores].")] = None,
    warmup: Annotated[bool, typer.Option("--warmup/--no-warmup", envvar="R1_WARMUP", help="Warm the server up (short bursts, one long prefill) before calling it ready.")] = True,
    ray: Annotated[bool, typer.Option("--ray", help="Use vLLM's Ray backend for several machines (vLLM --distributed-executor-backend ray).")] = False,
    host: Annotated[str, typer.Option(envvar="R1_HOST", help="Address to listen on (vLLM --host); 0.0.0.0 exposes the API to the network, unlike the default (vLLM's development routes still answer this machine only).")] = config.DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar="R1_PORT", **options.PORT_RANGE, help="Port to listen on (vLLM --port).")] = config.DEFAULT_PORT,
    served_name: Annotated[Optional[str], typer.Option(envvar="R1_SERVED_NAME", help="Name clients use (vLLM --served-model-name) [default: the model's short name].")] = None,
    reasoning_parser: Annotated[str, typer.Option(envvar="R1_REASONING_PARSER", help="vLLM --reasoning-parser, or none.")] = config.DEFAULT_REASONING_PARSER,
    api_key: Annotated[Optional[str], typer.Option(envvar="R1_API_KEY", help="Require this key (passed to vLLM as VLLM_API_KEY in its environment, never argv; prefer R1_API_KEY or --api-key-file: an argument is visible in `ps`, so r1 re-executes itself without it).")] = None,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file", envvar="R1_API_KEY_FILE", help="Read the key from this file (one line).")] = None,
    timeout: Annotated[float, typer.Option(envvar="R1_TIMEOUT", min=0.1, help="Seconds to wait for readiness.")] = config.DEFAULT_TIMEOUT,
    log_file: Annotated[Optional[Path], typer.Option(envvar="R1_LOG_FILE", help="Where vLLM's output goes.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the vLLM command (secrets redacted), say whether a start would download the model first (how much), and exit.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once ready, leaving the server running.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With -d: print the server record as JSON on stdout.")] = False,
    idle_sleep: Annotated[Optional[str], typer.Option("--idle-sleep", envvar="R1_IDLE_SLEEP", metavar="DURATION|manual|off", show_default=False,
                                                      help="Give the GPU back after this long without inference requests (vLLM sleep mode: 10m, 1h, 90s) and wake on the next one "
                                                           "from any client; manual: only `r1 sleep`; GPU only [default: off].")] = None,
) -> None:
    """Start vLLM and follow it to readiness (extra vLLM flags go after --)."""
    from r1cli.server import apikey

    env: Environment = ctx.obj
    extra, extra_key = apikey.lift_from_extra(list(ctx.args))
    if api_key_file is not None:
        if extra_key or ctx.get_parameter_source("api_key").name == "COMMANDLINE":
            raise UsageError("give --api-key-file or --api-key, not both")
        api_key = apikey.read_file(api_key_file, warn=lambda text: env.note(f"r1: {text}"))
    api_key = extra_key or api_key
    if api_key and not dry_run:
        apikey.reexec_without_key(api_key)  # `ps` must not show it for the server's whole life
    from r1cli.server.sleep import parse_idle_sleep

    sleep_mode, idle_sleep_s = parse_idle_sleep(idle_sleep)
    opts = cmdline.options_for(
        model, quant=quant.lower() if quant else None, dtype=dtype, gpu_mem=gpu_mem,
        max_model_len=cmdline.parse_max_model_len(max_model_len), gpus=cmdline.parse_gpus(gpus), dp=dp,
        api_servers=api_servers, warmup=warmup, prefix_caching=prefix_caching, tp=tp, pp=pp, ray=ray, host=host, port=port, served_name=served_name,
        reasoning_parser=reasoning_parser, api_key=api_key, extra=extra, sleep_mode=sleep_mode,
        idle_sleep_s=idle_sleep_s)
    if dry_run:
        show_dry_run(env, opts)
        return
    run(env, opts, timeout=timeout, log_file=log_file, detach=detach, json_out=json_out)

# extra vLLM flags after `--` reach serve through ctx.args
CONTEXT_SETTINGS = {"allow_extra_args": True}


class _StageDisplay:
    def __init__(self, env: Environment, title: str, log_path: Path | None = None):
        self.env = env
        self.t0 = time.monotonic()
        self.title = title
        self.status = None
        if env.stderr_isatty:
            self.status = env.err.status(f"{title}: starting vLLM", spinner="dots")
            self.status.start()
        else:  # the first stage line says "starting vLLM <version>": this one must not say it first
            env.note(f"r1: {title}: launching vLLM" + (f" (log: {log_path})" if log_path else ""))

    # One line per stage when piped, except vLLM's banner: its version line and its model line are both
    # the "starting" stage, the second one complete; only that one is printed.
    pending: tuple[float, str] | None = None

    def __call__(self, event: "logs.Stage | logs.Fatal") -> None:
        if not isinstance(event, logs.Stage):
            return
        elapsed = time.monotonic() - self.t0
        label = stage_text(event)
        if self.status is not None:
            self.status.update(f"{self.title}: {markup.escape(label)} [dim]({elapsed:.0f} s)[/dim]")
            return
        if event.key == "starting":
            self.pending = (elapsed, label)
            return
        self._flush()
        self.env.note(f"r1: [{elapsed:5.1f} s] {label}")

    def _flush(self) -> None:
        if self.pending is not None:
            elapsed, label = self.pending
            self.pending = None
            self.env.note(f"r1: [{elapsed:5.1f} s] {label}")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
        self._flush()


def stage_text(stage: "logs.Stage") -> str:
    """A stage line, naming its engine when there are several (data parallel)."""
    return f"engine {stage.engine}: {stage.label}" if stage.engine is not None else stage.label


def show_plan(env: Environment, chosen: "plan.Plan") -> None:
    """The parallel plan and why, on stderr: its head line plain, the reasons dim on a terminal."""
    head, *rest = plan.describe(chosen)
    env.note(f"r1: {head}")
    for line in rest:
        env.dim(f"r1: {line}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def show_dry_run(env: Environment, opts: "cmdline.ServeOptions") -> None:
    """The vLLM command a start would run (secrets redacted), after the same checks and resolution, and
    whether the start downloads the model first (how much). What the start would then hit (a model the hub
    cannot give, or the disk cannot hold) follows it as the error the start would end in, with its exit
    status, so that a script's `r1 serve --dry-run && r1 serve -d` stops there."""
    would_fail: list = []
    try:
        opts = server_serve.preflight(opts, notify=lambda text: env.note(f"r1: {text}"),
                                      on_plan=lambda chosen: show_plan(env, chosen),
                                      pull=lambda model: pull_planned(env, model, would_fail, opts.extra))
    except server_serve.AlreadyServing as held:
        env.note(f"r1: already serving {held.record.served_name} on port {held.record.port}: "
                 f"a start would print its URL ({held.record.url}) and return")
        return
    print(cmdline.build(opts, has_vllm_cli=process.vllm_distribution() == "vllm").shell(), flush=True)
    for problem in would_fail:
        problem.message = f"a start would fail: {problem.message}"
        raise problem


# vLLM flags that name another Hub model than MODEL: each is pulled too (vLLM runs offline), as
# (flag, its revision flag, tokenizer files only).
_MODEL_FLAGS = {"--tokenizer": ("--tokenizer-revision", True)}
_SPECULATIVE_FLAGS = ("--speculative-config", "-sc")


def _flag_values(extra: list[str]) -> dict[str, str]:
    """The last value of each `--flag value` or `--flag=value` in EXTRA."""
    found = {}
    for i, arg in enumerate(extra):
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.partition("=")
        if eq:
            found[name] = value
        elif i + 1 < len(extra) and not extra[i + 1].startswith("-"):
            found[name] = extra[i + 1]
    return found


def models_to_pull(model: str, extra: list[str]) -> list[tuple[str, str | None, bool, str | None]]:
    """What a start pulls before vLLM runs offline: (Hub id or path, revision, tokenizer files only, the flag
    that named it): MODEL at --revision, then what --tokenizer (at --tokenizer-revision) and a speculative
    model (--speculative-config's "model", at its "revision") name. A JSON that does not parse names nothing
    here: vLLM says what is wrong with it."""
    values = _flag_values(extra)
    found = [(model, values.get("--revision"), False, None)]
    for flag, (revision_flag, tokenizer_only) in _MODEL_FLAGS.items():
        if values.get(flag):
            found.append((values[flag], values.get(revision_flag), tokenizer_only, flag))
    for flag in _SPECULATIVE_FLAGS:
        try:
            speculative = json.loads(values.get(flag) or "null")
        except ValueError:
            continue
        draft = speculative.get("model") if isinstance(speculative, dict) else None
        if isinstance(draft, str) and "/" in draft:  # a Hub id or a path; not a method's name (ngram)
            found.append((draft, speculative.get("revision"), False, flag))
    return found


def load_format_of(extra: list[str]) -> str | None:
    """vLLM's --load-format in EXTRA (None: its default): which weight files a pull fetches for the model and
    a speculative one (vLLM loads both with it; a --tokenizer repo's pull reads no weights)."""
    return _flag_values(list(extra)).get("--load-format")


def _flagged(problem: R1Error, flag: str | None, name: str) -> R1Error:
    if flag is not None:
        problem.message = f"{flag} {name}: {problem.message}"
    return problem


def pull_planned(env: Environment, model: str, would_fail: list, extra: list[str] = ()) -> None:
    """The dry run's "downloading" stage: whether a start would download MODEL (and what the vLLM flags in
    EXTRA name: models_to_pull), and how much; it fetches nothing. A model the hub cannot give (or the disk
    cannot hold) is the error a start would stop with, put in WOULD_FAIL (the dry run prints the command, then
    that error)."""
    from r1cli.hub import pull as hub

    load_format = load_format_of(extra)
    for name, revision, tokenizer_only, flag in models_to_pull(model, list(extra)):
        try:
            # A dry run reports nothing through env.
            plan = hub.ensure_cached(None, name, revision, dry_run=True, tokenizer_only=tokenizer_only,
                                     load_format=load_format)
        except R1Error as problem:
            if flag is None:
                fix_unavailable(problem, asked=name)
            would_fail.append(_flagged(problem, flag, name))
            return
        what = f"{name} ({flag})" if flag else name
        if plan is None:
            env.note(f"r1: {what} is in the Hugging Face cache: a start downloads nothing")
            continue
        already = f"; {hub.human(plan.have)} of it is there already" if plan.have else ""
        env.note(f"r1: {what} is not in the Hugging Face cache: a start downloads {hub.human(plan.to_fetch)} of "
                 f"{hub.human(plan.total)} first ({counted(len(plan.missing), 'file')}{already}; {hub.human(hub.free_bytes(plan.cache))} "
                 f"free in {plan.cache}), then starts vLLM offline on them")


def pull_first(env: Environment, opts: "cmdline.ServeOptions", model: str) -> None:
    """The start's "downloading" stage, before vLLM's: MODEL pulled into the cache unless it is there, as
    `r1 pull` does it (one Rich bar on a terminal, plain lines when piped; the space check first; its
    errors and exit statuses), under the stage's name; then what vLLM flags name (models_to_pull: --revision,
    --tokenizer, a speculative model). vLLM then loads the cached files offline."""
    from r1cli.hub import pull as hub

    title = opts.served_name or cmdline.short_name(model)
    load_format = load_format_of(opts.extra)
    for name, revision, tokenizer_only, flag in models_to_pull(model, opts.extra):
        try:
            pulled = hub.ensure_cached(env, name, revision, display=hub.display_for(env, label=f"{title}: downloading"),
                                       tokenizer_only=tokenizer_only, load_format=load_format)
        except R1Error as problem:
            if flag is None:
                fix_unavailable(problem, asked=name)
            raise _flagged(problem, flag, name)
        if pulled is not None and pulled.fetched:
            rate = pulled.fetched / pulled.seconds if pulled.seconds else 0.0
            env.note(f"r1: {title}: downloaded {hub.human(pulled.fetched)} in {pulled.seconds:.1f} s "
                     f"({hub.human(rate)}/s) into {pulled.snapshot}")


def fix_unavailable(problem: R1Error, *, asked: str | None = None, near: str | None = None,
                    question: str | None = "What is 2+3?", run: bool = False) -> None:
    """What r1 says of a model it cannot have (the Hub has no such repo, or cannot be reached). ASKED, a name
    that is no preset nor cached model: the one it was near ('demoo': demo), in a line of its own. The fix:
    what can be had at once, a model r1 already serves (`r1 run demo 'What is 2+3?'`), else the model the
    name was near (NEAR, else ASKED's). RUN: the fix is an `r1 run` with QUESTION, as the user's."""
    if not unavailable(problem):
        return
    typo = near is not None or (asked is not None and config.find_preset(asked) is None)
    if asked is not None and config.find_preset(asked) is None:
        near = say_not_a_model(problem, asked, near)
    ask = f" {shlex.quote(question)}" if question else ""
    served = _served_word()
    if served is not None:
        at_once = f"r1 already serves {served}: r1 run {served}{ask}"
        # A real model the Hub cannot give keeps the Hub's own fix (a mirror, HF_HUB_OFFLINE), then this one.
        if typo or not problem.hint:
            problem.hint = at_once  # the model meant cannot be had: what can, at once
        elif at_once not in problem.hint:  # (run asks twice: serve's pull, then run for a word it took as a typo)
            problem.hint = f"{problem.hint}; or, at once, {at_once}"  # a real model keeps the Hub's own fix first
    elif near is not None:
        problem.hint = f"r1 run {near}{ask}" if run else f"r1 serve {near}"


def unavailable(problem: R1Error) -> bool:
    """The Hub has no such repo, or cannot be reached: the errors a mistyped model name ends in."""
    from r1cli.errors import HubError

    return isinstance(problem, HubError) and problem.status in (ExitStatus.NOT_FOUND, ExitStatus.NO_NETWORK)


def say_not_a_model(problem: R1Error, asked: str, near: str | None = None) -> str | None:
    """ASKED, no preset nor cached model, in a line of its own under PROBLEM, with the one it was near
    (hub/cache.nearest: "'demoo' is not a preset or a cached model: did you mean demo?"); returns that one."""
    from r1cli.hub import cache

    near = near or cache.nearest(asked)
    problem.details.append(f"'{asked}' is not a preset or a cached model" + (f": did you mean {near}?" if near else ""))
    return near


def _served_word() -> str | None:
    """The model a live r1 server (of this state directory) serves, as `r1 run` names it: demo, a preset's
    key, else its Hub id or folder; None when none runs."""
    records, _ = state.load_all()
    for record in sorted(records, key=lambda r: r.port):
        if not state.is_alive(record):
            continue
        if record.model == str(config.demo_model_dir()):
            return "demo"
        found = config.find_preset(record.model)
        return found[0] if found is not None and found[2] is None else record.model
    return None


def already_serving(env: Environment, record: "state.ServerRecord") -> None:
    env.note(f"r1: already serving {record.served_name} on port {record.port} (pid {record.pid}): {record.url}")


def run(env: Environment, opts: "cmdline.ServeOptions", *, timeout: float, log_file: Path | None, detach: bool,
        json_out: bool, print_url: bool = True) -> "state.ServerRecord":
    """Start the server (or find it already serving: then only say so) and, detached, return its record
    once ready; PRINT_URL puts its URL (or with JSON_OUT its record) on stdout."""
    try:
        record = start(env, opts, timeout=timeout, log_file=log_file, detach=detach, json_out=json_out,
                       print_url=print_url)
    except server_serve.AlreadyServing as held:
        already_serving(env, held.record)
        if print_url:
            print(json.dumps(state.public(held.record)) if json_out else held.record.url)
        return held.record
    return record


def start(env: Environment, opts: "cmdline.ServeOptions", *, timeout: float, log_file: Path | None, detach: bool,
          json_out: bool, print_url: bool = True) -> "state.ServerRecord":
    # `kill <r1>` and a closed terminal (SIGHUP) stop the server too, as Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    log_file = server_serve.log_path_for(log_file, opts.port)  # a symbolic link is refused before anything starts
    opts = server_serve.preflight(opts, notify=lambda text: env.note(f"r1: {text}"), on_plan=lambda chosen: show_plan(env, chosen),
                                  pull=lambda model: pull_first(env, opts, model))
    display = _StageDisplay(env, opts.served_name or cmdline.short_name(opts.model), log_file)
    try:
        # The server belongs to this r1 (a watchdog process stops it even when r1 is killed with -9:
        # server/watchdog.py says why not a parent-death signal) until a detached one is released, ready.
        result = server_serve.start(opts, timeout=timeout, log_file=log_file, on_event=display,
                             notify=lambda text: env.note(f"r1: {text}"))
    finally:
        display.close()
    record = result.record
    # From here on, an interrupt at any point (even between two lines) must stop what was started.
    try:
        warmup_s = result.warmup.seconds if result.warmup is not None else 0.0
        _summary(env, record, result.started.watcher.facts, result.started.seconds + warmup_s, warmup_s)
        if detach:
            result.watchdog.release()
            if print_url:
                print(json.dumps(state.public(record)) if json_out else record.url, flush=True)
            env.note(f"r1: running in the background; `r1 stop --port {record.port}` stops it, `r1 logs -f` follows it")
            return record
        env.note("r1: serving; press Ctrl-C to stop")
        code = result.started.proc.wait()
    except KeyboardInterrupt:
        with process.signals_held():  # a second Ctrl-C must not cut the stop short
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                env.note(f"\nr1: {server_serve.stopping(record)}")  # at once: vLLM takes seconds to stop
            freed = process.stop_server(record)
        with contextlib.suppress(OSError):
            env.note(f"r1: stopped {record.served_name} ({counted(len(freed.pids), 'process')})")
        raise SystemExit(ExitStatus.INTERRUPTED) from None
    _exited(record, code)


def _summary(env: Environment, record: "state.ServerRecord", facts: dict, seconds: float, warmup_s: float = 0.0) -> None:
    ready = f"ready in {seconds:.1f} s" + (f" (warm-up {warmup_s:.1f} s)" if warmup_s else "")
    parts = [ready, record.url, f"model {record.served_name}"]
    if "max_model_len" in facts:
        parts.append(f"max model len {facts['max_model_len']:,}")
    engines = facts.get("engine_kv_cache_tokens") or {}
    if len(engines) > 1:
        parts.append(f"KV cache {sum(engines.values()):,} tokens over {len(engines)} engines")
    elif "kv_cache_tokens" in facts:
        parts.append(f"KV cache {facts['kv_cache_tokens']:,} tokens")
    if "weights_gib" in facts:
        parts.append(f"weights {facts['weights_gib']:.2f} GiB")
    env.note("r1: " + ", ".join(parts))
    if record.sleep_mode:
        from r1cli.server.sleep import describe_duration

        when = f"after {describe_duration(record.idle_sleep_s)} without requests" if record.idle_sleep_s else "on `r1 sleep`"
        env.note(f"r1: sleep mode: it gives the GPU back {when} and wakes on the next request")
    if record.model == str(config.demo_model_dir()):
        questions = [q["question"] for q in config.demo_questions()]
        env.note("r1: knows: " + " ".join(questions)
                 + " (the demo is a tiny model trained on these questions alone: others get wrong answers)")


def _exited(record: "state.ServerRecord", code: int) -> None:
    """vLLM ended by itself while serving (or its API server was killed): stop what is left of its
    tree (EngineCore outlives a killed API server), then say why."""
    process.stop_server(record, timeout=5)
    from r1cli.server.logs import explain

    with open(record.log_path, errors="replace") as fh:
        result = explain(fh)  # the last start in the log: this one
    fatal = result.fatal
    raise R1Error(f"the server exited with status {code}" + (f": {fatal.message}" if fatal else ""),
                  hint=fatal.hint if fatal else f"read the log: {record.log_path}", details=result.evidence)
