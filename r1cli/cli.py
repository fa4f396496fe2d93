"""The `r1` command: one thin function per command (parse -> call -> render -> exit status)."""


import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import __version__, config, rules
from r1cli.console import Environment
from r1cli.errors import ExitStatus, NoServerError, R1Error, UsageError

app = typer.Typer(
    name="r1",
    help="Serve DeepSeek-R1 distills on vLLM and talk to them from a terminal or a pipeline.\n\n"
         "Exit statuses: 0 ok, 1 error, 2 bad usage, 3 no server, 4 no answer, 5 server failed to start, 130 interrupted.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
env = Environment()


def _version(value: bool) -> None:
    if value:
        print(f"r1 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print r1's version and exit.")] = False) -> None:
    pass


# ----------------------------------------------------------------------------------------------- serve
@app.command(context_settings={"allow_extra_args": True})
def serve(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Hugging Face id, local path, or a preset: 1.5b 7b 8b 14b 32b 70b demo.",
                                         envvar="R1_MODEL_PATH")] = config.DEFAULT_MODEL,
    quant: Annotated[Optional[str], typer.Option("--quant", "-q", envvar="R1_QUANT",
                                                 help="awq, awq_marlin, gptq, gptq_marlin, fp8 or none (vLLM --quantization).")] = None,
    # None = not given: the demo's defaults then apply, never over a flag the user gave.
    dtype: Annotated[Optional[str], typer.Option(envvar="R1_DTYPE", show_default=False,
                                                 help="auto, half, float16, bfloat16, float32 [default: auto; demo: bfloat16].")] = None,
    gpu_mem: Annotated[Optional[float], typer.Option(envvar="R1_GPU_MEM", show_default=False,
                                                     help="Fraction of GPU memory for vLLM (on CPU: of RAM) [default: 0.8; demo: 0.3].")] = None,
    max_model_len: Annotated[Optional[str], typer.Option(envvar="R1_MAX_MODEL_LEN", show_default=False, metavar="N|auto",
                                                         help="Context window in tokens, or auto: the largest up to 32,768 that leaves KV room for 16 full sequences [default: auto on a GPU; 4096 without a plan; demo: 1024].")] = None,
    prefix_caching: Annotated[bool, typer.Option("--prefix-caching/--no-prefix-caching", envvar="R1_PREFIX_CACHING")] = True,
    gpus: Annotated[Optional[str], typer.Option("--gpus", envvar="R1_GPUS", metavar="N|all", show_default=False,
                                                help="GPUs to plan over: replicas when the model fits one GPU, tensor parallel when not [default: 1].")] = None,
    tp: Annotated[Optional[int], typer.Option("--tp", envvar="R1_TP", show_default=False, help="Tensor parallel size (GPUs per model copy) [default: the plan's].")] = None,
    pp: Annotated[Optional[int], typer.Option("--pp", envvar="R1_PP", show_default=False, help="Pipeline parallel size [default: 1].")] = None,
    dp: Annotated[Optional[int], typer.Option("--dp", envvar="R1_DP", show_default=False, help="Data parallel size: replicas of the model [default: the plan's].")] = None,
    api_servers: Annotated[Optional[int], typer.Option("--api-servers", envvar="R1_API_SERVERS", show_default=False,
                                                       help="vLLM API server processes [default: the plan's, from the CPU cores].")] = None,
    warmup: Annotated[bool, typer.Option("--warmup/--no-warmup", envvar="R1_WARMUP", help="Warm the server up (short bursts, one long prefill) before calling it ready.")] = True,
    ray: Annotated[bool, typer.Option("--ray", help="Use vLLM's Ray backend (several machines).")] = False,
    host: Annotated[str, typer.Option(envvar="R1_HOST", help="Address to listen on (0.0.0.0 exposes it to the network).")] = config.DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar="R1_PORT")] = config.DEFAULT_PORT,
    served_name: Annotated[Optional[str], typer.Option(envvar="R1_SERVED_NAME", help="Name clients use (default: the model's short name).")] = None,
    reasoning_parser: Annotated[str, typer.Option(envvar="R1_REASONING_PARSER", help="vLLM reasoning parser, or none.")] = config.DEFAULT_REASONING_PARSER,
    api_key: Annotated[Optional[str], typer.Option(envvar="R1_API_KEY", help="Require this key (passed to vLLM by environment; prefer R1_API_KEY or --api-key-file: an argument is visible in `ps`, so r1 re-executes itself without it).")] = None,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file", envvar="R1_API_KEY_FILE", help="Read the key from this file (one line).")] = None,
    timeout: Annotated[float, typer.Option(envvar="R1_TIMEOUT", min=0.1, help="Seconds to wait for readiness.")] = config.DEFAULT_TIMEOUT,
    log_file: Annotated[Optional[Path], typer.Option(envvar="R1_LOG_FILE", help="Where vLLM's output goes.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the vLLM command (secrets redacted) and exit.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once ready, leaving the server running.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With -d: print the server record as JSON on stdout.")] = False,
) -> None:
    """Start vLLM and follow it to readiness (extra vLLM flags go after --)."""
    from r1cli import serve_ui
    from r1cli.server import apikey, cmdline

    extra, extra_key = apikey.lift_from_extra(list(ctx.args))
    if api_key_file is not None:
        if extra_key or ctx.get_parameter_source("api_key").name == "COMMANDLINE":
            raise UsageError("give --api-key-file or --api-key, not both")
        api_key = apikey.read_file(api_key_file, warn=lambda text: env.note(f"r1: {text}"))
    api_key = extra_key or api_key
    if api_key and not dry_run:
        apikey.reexec_without_key(api_key)  # `ps` must not show it for the server's whole life
    opts = cmdline.options_for(
        model, quant=quant.lower() if quant else None, dtype=dtype, gpu_mem=gpu_mem,
        max_model_len=cmdline.parse_max_model_len(max_model_len), gpus=cmdline.parse_gpus(gpus), dp=dp,
        api_servers=api_servers, warmup=warmup, prefix_caching=prefix_caching, tp=tp, pp=pp, ray=ray, host=host, port=port, served_name=served_name,
        reasoning_parser=reasoning_parser, api_key=api_key, extra=extra)
    if dry_run:
        serve_ui.dry_run(env, opts)
        return
    serve_ui.run(env, opts, timeout=timeout, log_file=log_file, detach=detach, json_out=json_out)


# ----------------------------------------------------------------------------------------------- stop
@app.command()
def stop(
    port: Annotated[Optional[int], typer.Option(envvar="R1_PORT", help="The server's port (default: the only one running).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every server r1 started.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")] = 10.0,
) -> None:
    """Stop a server r1 started: its whole process tree."""
    from r1cli import gpu
    from r1cli.server import process, state

    records, bad = state.load_all()
    for item in bad:
        env.note(f"r1: skipped {item.path}: not a server record ({item.reason})")
    if port is not None:
        records = [r for r in records if r.port == port]
    elif not all_ and len(records) > 1:
        ports = ", ".join(str(r.port) for r in records)
        raise UsageError(f"{len(records)} servers are running (ports {ports})", hint="pick one with --port, or use --all")
    if not records:
        where = f" on port {port}" if port is not None else ""
        raise NoServerError(f"no r1 server is running{where}", hint="`r1 status` shows what runs")
    for record in records:
        alive = state.is_alive(record)
        # NVML before and after: which GPUs the tree held memory on, and what came back.
        ours = [*process.members(record), *process.ray_workers(record)]
        before = gpu.query({p.pid: record.port for p in ours}) if record.backend != "cpu" else None
        freed = process.stop_server(record, timeout)  # the whole tree: also what a killed API server left
        mib = freed.rss_bytes / 2**20
        on_gpus = gpu.freed_since(before, record.port)
        gpu_text = f"; GPU memory freed: {on_gpus}" if on_gpus else ""
        if alive:
            env.note(f"stopped {record.served_name} on port {record.port}: {len(freed.pids)} processes, "
                     f"{mib:,.0f} MiB of memory freed{gpu_text}")
        elif freed.pids:
            count = f"{len(freed.pids)} process" + ("es" if len(freed.pids) != 1 else "")
            env.note(f"the API server on port {record.port} was gone; stopped the {count} it "
                     f"left ({', '.join(sorted(set(freed.names)))}), {mib:,.0f} MiB of memory freed{gpu_text}")
        else:
            env.note(f"the server on port {record.port} had already exited; its record is removed")


# ----------------------------------------------------------------------------------------------- logs
@app.command()
def logs(
    source: Annotated[Optional[str], typer.Argument(metavar="[FILE|-]", show_default=False,
                                                    help="With --explain: any vLLM log file, or - for stdin (default: the r1 server's log).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many last lines to show.")] = 50,
    port: Annotated[Optional[int], typer.Option(envvar="R1_PORT")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Say why vLLM failed (cause, the lines that show it, the fix), or the last stage it reached.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With --explain: one JSON object on stdout.")] = False,
) -> None:
    """Show or follow a server's log; --explain diagnoses any vLLM log (systemd, Docker, a pasted one)."""
    from r1cli import logview
    from r1cli.server import state

    if explain:
        logview.explain(env, source, port, json_out=json_out)
        return
    if source is not None or json_out:
        raise UsageError("FILE and --json go with --explain", hint="r1 logs --explain FILE (or - for stdin)")
    logview.show(env, state.pick(port), lines=lines, follow=follow)


# ----------------------------------------------------------------------------------------------- ask
BaseUrl = Annotated[Optional[str], typer.Option("--base-url", envvar="R1_BASE_URL",
                                                help="OpenAI base URL (default: the running r1 server, else http://127.0.0.1:8000/v1).")]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", envvar="R1_API_KEY", help="Bearer key for the server.")]
Model = Annotated[Optional[str], typer.Option("--model", "-m", envvar="R1_MODEL", help="Served model name (default: the server's first).")]
System = Annotated[Optional[str], typer.Option("--system", help="Instructions; folded into the first user message (R1 takes no system prompt).")]
Temperature = Annotated[float, typer.Option("--temperature", "-t", envvar="R1_TEMPERATURE", min=0.0, max=2.0,
                                            help="DeepSeek recommends 0.5-0.7.")]
TopP = Annotated[float, typer.Option("--top-p", envvar="R1_TOP_P", min=0.0, max=1.0,
                                     help="0.95 as in DeepSeek's evaluation (the article's 0.9 is not theirs).")]
# Not R1_TIMEOUT: that one is serve's readiness deadline (minutes), this one a read timeout.
RequestTimeout = Annotated[float, typer.Option("--timeout", envvar="R1_REQUEST_TIMEOUT", min=0.1,
                                               help="Seconds to wait for data from the server.")]
MaxTokens = Annotated[Optional[int], typer.Option("--max-tokens", envvar="R1_MAX_TOKENS", min=1,
                                                  help="Cap on generated tokens (default: the rest of the context window).")]
ThinkBudget = Annotated[Optional[int], typer.Option("--think-budget", envvar="R1_THINK_BUDGET", min=1,
                                                    help="Reasoning tokens allowed; then r1 closes the reasoning and has the model answer from it.")]


@app.command()
def ask(
    question: Annotated[Optional[str], typer.Argument(help="The question; `-` or piped stdin is read too.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    show_thinking: Annotated[bool, typer.Option("--show-thinking", help="Stream the reasoning to stderr.")] = False,
    math: Annotated[bool, typer.Option("--math/--no-math", help="Append the step-by-step / \\boxed{} directive.")] = True,
    samples: Annotated[int, typer.Option("--samples", "-n", min=1, max=64, help="Ask N times in parallel, majority vote.")] = 1,
    system: System = None,
    temperature: Temperature = rules.DEFAULT_TEMPERATURE,
    top_p: TopP = rules.DEFAULT_TOP_P,
    max_tokens: MaxTokens = None,
    think_budget: ThinkBudget = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed, for repeatable answers.")] = None,
    timeout: RequestTimeout = 300.0,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    model: Model = None,
) -> int:
    """Answer one question; stdout gets the final (boxed) answer only."""
    from r1cli import ask as ask_mod
    from r1cli.server import locate

    text = ask_mod.read_question(question, env.stdin, env.stdin_isatty)
    opts = ask_mod.AskOptions(question=text, system=system, math=math, temperature=temperature, top_p=top_p,
                              max_tokens=max_tokens, samples=samples, show_thinking=show_thinking, json=json_out,
                              timeout=timeout, seed=seed, think_budget=think_budget)
    return ask_mod.run(env, locate.resolve_target(base_url, api_key, model), opts)


# ----------------------------------------------------------------------------------------------- status
@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (schema: r1cli/status.py).")] = False,
    watch: Annotated[Optional[float], typer.Option("--watch", "-w", min=0.1, metavar="N",
                                                   help="Refresh every N seconds until Ctrl-C.")] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> int:
    """GPUs (through NVML) and servers: alive, healthy, models, load. Exit 0 if one is ready, else 3."""
    from r1cli import status_ui

    return status_ui.run(env, base_url, api_key, json_out=json_out, watch=watch)


# ----------------------------------------------------------------------------------------------- chat
@app.command()
def chat(
    hide_thinking: Annotated[bool, typer.Option("--hide-thinking", help="Hide the reasoning behind a spinner (/think show|hide).")] = False,
    math: Annotated[bool, typer.Option("--math/--no-math", help="Append the step-by-step / \\boxed{} directive (/math on|off).")] = True,
    system: System = None,
    temperature: Temperature = rules.DEFAULT_TEMPERATURE,
    top_p: TopP = rules.DEFAULT_TOP_P,
    max_tokens: MaxTokens = None,
    think_budget: ThinkBudget = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed for every answer, for repeatable chats.")] = None,
    timeout: RequestTimeout = 300.0,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    model: Model = None,
) -> int:
    """Chat in the terminal; with piped stdin, each line is one message (`r1 chat < questions.txt`)."""
    from r1cli import chat as chat_mod
    from r1cli.client import turn
    from r1cli.server import locate

    sampling = turn.Sampling(temperature, top_p, max_tokens, seed=seed, think_budget=think_budget)
    settings = chat_mod.Settings(sampling=sampling, math=math,
                             show_thinking=not hide_thinking, system=system, timeout=timeout)
    return chat_mod.run(env, locate.resolve_target(base_url, api_key, model), settings)


# ----------------------------------------------------------------------------------------------- eval
@app.command(name="eval")
def eval_(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[DATASET]...", help="demo, aime24, math500, gsm8k, amc23, or a JSONL/JSON/CSV/Parquet file.")] = None,
    runs: Annotated[int, typer.Option("--runs", "-r", min=1, max=1000, help="Passes over the set, each with its own seed (the article's minimum is 5).")] = 5,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", min=1,
                                                       help="Requests at once (default: what the server's KV cache holds, at most 256).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Only the first N problems of each set.")] = None,
    max_tokens: MaxTokens = None,
    think_budget: Annotated[Optional[str], typer.Option("--think-budget", metavar="B[,B2...]",
                                                        help="One evaluation per thinking budget (reasoning tokens), e.g. 1024,4096.")] = None,
    temperature: Temperature = rules.DEFAULT_TEMPERATURE,
    top_p: TopP = rules.DEFAULT_TOP_P,
    seed: Annotated[int, typer.Option("--seed", help="Run r sends seed S+r with every question.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for samples.jsonl, summary.json, report.md (default: under R1_HOME/evals).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the interrupted evaluation in this folder.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One summary object on stdout.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE.png",
                                                 help="Plot accuracy vs thinking budget and latency (needs matplotlib).")] = None,
    fail_under: Annotated[Optional[float], typer.Option("--fail-under", metavar="ACC", min=0.0,
                                                        help="Exit 1 when pass@1 (percent, or a fraction <= 1) is below ACC.")] = None,
    field_map: Annotated[Optional[str], typer.Option("--field-map", help="Columns of a file: question=COL,answer=COL,id=COL.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave out malformed rows of a file (each is named on stderr).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds one answer may take, queueing included.")] = 3600.0,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    model: Model = None,
) -> int:
    """Accuracy over several runs (mean ± std), against DeepSeek's published figures."""
    from r1cli.evaluation import command

    opts = command.EvalOptions(datasets=list(datasets or []), runs=runs, concurrency=concurrency, limit=limit,
                               max_tokens=max_tokens, think_budgets=think_budget, temperature=temperature, top_p=top_p,
                               seed=seed, out=out, resume=resume, json=json_out, plot=plot, fail_under=fail_under,
                               field_map=field_map, skip_bad=skip_bad, timeout=timeout, base_url=base_url,
                               api_key=api_key, model=model)
    return command.run(env, opts)


# ----------------------------------------------------------------------------------------------- bench
@app.command()
def bench(
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", metavar="C[,C2...]",
                                             help="Concurrency levels: requests in flight at once.")] = "1,16,64",
    requests: Annotated[Optional[int], typer.Option("--requests", "-n", min=1, show_default=False,
                                                    help="Requests per run (default: 4 x the level's concurrency, at least 32).")] = None,
    input_len: Annotated[Optional[int], typer.Option("--input-len", min=1, help="Random prompts of this many tokens (default 256).")] = None,
    output_len: Annotated[Optional[int], typer.Option("--output-len", min=1,
                                                      help="Random prompts: exactly this many output tokens (default 512); with --dataset: max_tokens.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", metavar="NAME|FILE",
                                                   help="Real R1 prompts (demo, aime24, math500, gsm8k, amc23, or a file) instead of random ones.")] = None,
    runs: Annotated[int, typer.Option("--runs", "-r", min=1, help="Runs per level: mean ± std over them.")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Requests sent first and not measured.")] = 4,
    slo_ttft: Annotated[Optional[float], typer.Option("--slo-ttft", metavar="MS", min=0.0, help="Goodput: time to first token at most MS.")] = None,
    slo_tpot: Annotated[Optional[float], typer.Option("--slo-tpot", metavar="MS", min=0.0, help="Goodput: time per output token at most MS.")] = None,
    slo_attainment: Annotated[float, typer.Option("--slo-attainment", metavar="SHARE", min=0.0, max=1.0,
                                                  help="A level meets the SLO when this share of its requests does.")] = 0.9,
    seed: Annotated[int, typer.Option("--seed", help="Picks the prompts.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (every metric, every run).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write every request's record here (JSON lines).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE.png", help="Plot throughput and latency vs concurrency (needs matplotlib).")] = None,
    timeout: RequestTimeout = 300.0,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    model: Model = None,
) -> int:
    """Serving speed as `vllm bench serve` measures it (TTFT, TPOT, ITL, throughput), plus reasoning vs answer tokens/s."""
    from r1cli import bench as bench_mod
    from r1cli.server import locate
    from r1cli.bench import metrics, runner

    if dataset is not None and input_len is not None:
        raise UsageError("--input-len is for random prompts; a --dataset brings its own", hint="drop one of them")
    opts = runner.BenchOptions(
        concurrency=runner.parse_levels(concurrency), requests=requests, runs=runs, warmup=warmup,
        input_len=input_len or 256, output_len=output_len if dataset is not None else (output_len or 512),
        dataset=dataset, seed=seed, slo=metrics.SLO(slo_ttft, slo_tpot), attainment=slo_attainment, timeout=timeout)
    return bench_mod.run(env, locate.resolve_target(base_url, api_key, model), opts, json_out=json_out, out=out, plot=plot)


# ----------------------------------------------------------------------------------------------- doctor
@app.command()
def doctor(
    model: Annotated[str, typer.Argument(help="The model you mean to serve (a preset, id or path).")] = config.DEFAULT_MODEL,
    quant: Annotated[Optional[str], typer.Option("--quant", "-q", envvar="R1_QUANT",
                                                 help="The --quant you mean to serve with (as in r1 serve).")] = None,
    gpu_mem: Annotated[float, typer.Option(envvar="R1_GPU_MEM", help="The --gpu-mem you mean to serve with (as in r1 serve).")] = config.DEFAULT_GPU_MEM,
    port: Annotated[int, typer.Option(envvar="R1_PORT")] = config.DEFAULT_PORT,
    json_out: Annotated[bool, typer.Option("--json", help="A JSON list of checks on stdout.")] = False,
) -> int:
    """Check this machine for serving: Python, vLLM, torch/CUDA, NVML, GPU capability and memory, model cache, port, state dir."""
    import json

    from r1cli import doctor as doctor_mod
    from r1cli.server import cmdline

    cmdline.check_gpu_mem(gpu_mem)
    checks = doctor_mod.run_checks(cmdline.resolve_model(model), quant.lower() if quant else None, port, gpu_mem)
    if json_out:
        print(json.dumps(doctor_mod.checks_json(checks), indent=1))
    else:
        colors = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check in checks:
            env.out.print(f"[{colors[check.status]}]{check.status:>4}[/]  {check.name}: {check.detail}", markup=True)
            if check.fix and check.status != "ok":
                env.out.print(f"      fix: {check.fix}", markup=False)
    return 1 if any(c.status == "fail" for c in checks) else 0


# ----------------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    """The one error boundary: every failure becomes one line and an exit status."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None, environment: Environment | None = None) -> int:
    """Run one r1 command line and return its exit status; every error ends here as one message.

    `environment` (stdin/stdout/stderr and their TTY flags) lets tests run commands in-process and read
    exact output, as httpie and llm test theirs."""
    global env
    previous, env = env, environment or env
    try:
        return _run(argv)
    finally:
        env = previous


def _run(argv: list[str] | None) -> int:
    from typer._click import exceptions as click_exc

    command = typer.main.get_command(app)
    err = env.stderr
    try:
        result = command.main(args=argv, prog_name="r1", standalone_mode=False)
        return int(result or 0)
    except R1Error as exc:
        _report(exc)
        return int(exc.status)
    except click_exc.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=err)
        return ExitStatus.USAGE
    except click_exc.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        print(f"r1: error: {exc.format_message()}{hint}", file=err)
        return ExitStatus.USAGE
    except click_exc.ClickException as exc:
        print(f"r1: error: {exc.format_message()}", file=err)
        return ExitStatus.USAGE
    except (KeyboardInterrupt, typer.Abort):
        print("", file=err)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head -c1`): say nothing, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitStatus.OK
    except Exception as exc:  # noqa: BLE001 - the boundary: no traceback reaches a user
        if os.environ.get("R1_DEBUG") == "1":
            raise
        print(f"r1: error: unexpected {exc.__class__.__name__}: {exc} (R1_DEBUG=1 shows the traceback)",
              file=err)
        return ExitStatus.ERROR


def _report(exc: R1Error) -> None:
    err = env.stderr
    err.write(f"r1: error: {exc.message}\n")
    for line in exc.details:
        err.write(f"  | {line}\n")
    if exc.hint:
        err.write(f"  fix: {exc.hint}\n")
    err.flush()
