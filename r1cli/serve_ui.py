"""What `r1 serve` shows: a spinner naming the stage on a terminal, one line per stage when piped."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape

from r1cli import config
from r1cli.console import Environment
from r1cli.errors import ExitStatus, R1Error
from r1cli.server import cmdline, plan, process, serve, state
from r1cli.server.cmdline import ServeOptions
from r1cli.server.logs import Fatal, Stage


class _StageDisplay:
    def __init__(self, env: Environment, title: str):
        self.env = env
        self.t0 = time.monotonic()
        self.title = title
        self.status = None
        if env.stderr_isatty:
            self.status = env.err.status(f"{title}: starting vLLM", spinner="dots")
            self.status.start()
        else:
            env.note(f"r1: {title}: starting vLLM")

    def __call__(self, event: Stage | Fatal) -> None:
        if not isinstance(event, Stage):
            return
        elapsed = time.monotonic() - self.t0
        label = stage_text(event)
        if self.status is not None:
            self.status.update(f"{self.title}: {escape(label)} [dim]({elapsed:.0f} s)[/dim]")
        else:
            self.env.note(f"r1: [{elapsed:5.1f} s] {label}")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def stage_text(stage: Stage) -> str:
    """A stage line, naming its engine when there are several (data parallel)."""
    return f"engine {stage.engine}: {stage.label}" if stage.engine is not None else stage.label


def show_plan(env: Environment, chosen: plan.Plan) -> None:
    """The parallel plan and why, on stderr: its head line plain, the reasons dim on a terminal."""
    head, *rest = plan.describe(chosen)
    env.note(f"r1: {head}")
    for line in rest:
        env.dim(f"r1: {line}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def dry_run(env: Environment, opts: ServeOptions) -> None:
    """The vLLM command a start would run (secrets redacted), after the same checks and resolution."""
    opts = serve.preflight(opts, notify=lambda text: env.note(f"r1: {text}"), dry_run=True,
                           on_plan=lambda chosen: show_plan(env, chosen))
    print(cmdline.build(opts, has_vllm_cli=process.vllm_distribution() == "vllm").shell())


def run(env: Environment, opts: ServeOptions, *, timeout: float, log_file: Path | None, detach: bool,
        json_out: bool) -> None:
    # `kill <r1>` and a closed terminal (SIGHUP) stop the server too, as Ctrl-C does.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    opts = serve.preflight(opts, notify=lambda text: env.note(f"r1: {text}"), on_plan=lambda chosen: show_plan(env, chosen))
    log_file = serve.log_path_for(log_file, opts.port)  # a symbolic link is refused before anything starts
    display = _StageDisplay(env, opts.served_name or cmdline.short_name(opts.model))
    try:
        # The server belongs to this r1 (a watchdog process stops it even when r1 is killed with -9:
        # server/watchdog.py says why not a parent-death signal) until a detached one is released, ready.
        result = serve.start(opts, timeout=timeout, log_file=log_file, on_event=display,
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
            print(json.dumps(asdict(record)) if json_out else record.url)
            env.note(f"r1: running in the background; `r1 stop --port {record.port}` stops it, `r1 logs -f` follows it")
            return
        env.note("r1: serving; press Ctrl-C to stop")
        code = result.started.proc.wait()
    except KeyboardInterrupt:
        with process.signals_held():  # a second Ctrl-C must not cut the stop short
            freed = process.stop_server(record)
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            env.note(f"\nr1: stopped {record.served_name} ({len(freed.pids)} processes)")
        raise SystemExit(ExitStatus.INTERRUPTED) from None
    _exited(record, code)


def _summary(env: Environment, record: state.ServerRecord, facts: dict, seconds: float, warmup_s: float = 0.0) -> None:
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
    if record.model == str(config.demo_model_dir()):
        questions = [q["question"] for q in config.demo_questions()]
        env.note("r1: knows: " + " ".join(questions)
                 + " (the demo is a tiny model trained on these questions alone: others get wrong answers)")


def _exited(record: state.ServerRecord, code: int) -> None:
    """vLLM ended by itself while serving (or its API server was killed): stop what is left of its
    tree (EngineCore outlives a killed API server), then say why."""
    process.stop_server(record, timeout=5)
    from r1cli.server.logs import explain

    with open(record.log_path, errors="replace") as fh:
        result = explain(fh)  # the last start in the log: this one
    fatal = result.fatal
    raise R1Error(f"the server exited with status {code}" + (f": {fatal.message}" if fatal else ""),
                  hint=fatal.hint if fatal else f"read the log: {record.log_path}", details=result.evidence)
