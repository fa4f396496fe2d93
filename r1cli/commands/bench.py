"""`r1 bench`: its options, their checks, and where its results go (the measuring is r1cli/bench/)."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import completion, options
from r1cli.console import Environment
from r1cli.errors import Interrupted, UsageError


def bench(
    ctx: typer.Context,
    dataset: Annotated[Optional[str], typer.Argument(
        metavar="[DATASET]", show_default=False, autocompletion=completion.datasets,
        help=f"Real R1 prompts ({options.DATASETS_TEXT}, or a file), as eval takes them; none: random prompts.")] = None,
    concurrency: Annotated[Optional[str], typer.Option("--concurrency", "-c", metavar="C[,C2...]", show_default=False,
                                                       help="Concurrency levels: requests in flight at once [default: 1,16,64; "
                                                            "the quick set leaves out those the warm-up says would not fit its 2 minutes].")] = None,
    full: Annotated[bool, typer.Option("--full", help="The full set: 5 runs of 4 x C requests (at least 32) per level, "
                                                      "as vLLM's guides run it (tens of minutes on a CPU). Without it, a quick set: "
                                                      "2 runs of C requests (at least 4), about 2 minutes.")] = False,
    requests: Annotated[Optional[int], typer.Option("--requests", min=1, show_default=False,
                                                    help="Requests per run (default: the level's concurrency, at least 4; --full: 4 x it, at least 32; no -n: that is `r1 logs -n`).")] = None,
    input_len: Annotated[Optional[int], typer.Option("--input-len", min=1, help="Random prompts of this many tokens (default 256).")] = None,
    output_len: Annotated[Optional[int], typer.Option("--output-len", min=1,
                                                      help="Random prompts: exactly this many output tokens (default 512); with DATASET: max_tokens.")] = None,
    runs: Annotated[Optional[int], typer.Option("--runs", "-r", min=1, show_default=False,
                                                help="Runs per level: mean ± std over them [default: 2; --full: 5].")] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Requests sent first and not measured.")] = 4,
    slo_ttft: Annotated[Optional[float], typer.Option("--slo-ttft", metavar="MS", min=0.0, help="Goodput: time to first token at most MS.")] = None,
    slo_tpot: Annotated[Optional[float], typer.Option("--slo-tpot", metavar="MS", min=0.0, help="Goodput: time per output token at most MS.")] = None,
    slo_attainment: Annotated[float, typer.Option("--slo-attainment", metavar="SHARE", min=0.0, max=1.0,
                                                  help="A level meets the SLO when this share of its requests does.")] = 0.9,
    seed: Annotated[int, typer.Option("--seed", help="Picks the prompts.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (every metric, every run).")] = False,
    out: Annotated[Optional[Path], options.out_folder("requests.jsonl (one line per request) and summary.json (what --json prints)")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE.png", help="Plot throughput and latency vs concurrency (needs matplotlib); its path is said on stderr.")] = None,
    timeout: options.RequestTimeout = 300.0,
    port: options.Port = None,
    base_url: options.BaseUrl = None,
    api_key: options.ApiKey = None,
    model: options.Model = None,
    dataset_option: Annotated[Optional[str], typer.Option("--dataset", hidden=True,
                                                          help="The old spelling of DATASET (before r1 took it as eval does).")] = None,
) -> int:
    """Serving speed as `vllm bench serve` measures it (TTFT, TPOT, ITL, throughput), plus reasoning vs answer tokens/s."""
    from r1cli.bench import metrics, runner
    from r1cli.server import locate

    if dataset is not None and dataset_option is not None:
        raise UsageError("give the dataset once: `r1 bench DATASET` (--dataset is its old spelling)")
    dataset = dataset if dataset is not None else dataset_option
    if dataset is not None and input_len is not None:
        raise UsageError("--input-len is for random prompts; a DATASET brings its own", hint="drop one of them")
    # The levels are r1's to choose: fit them to the server, where the outputs' length is known (a DATASET's
    # end where the model ends: no estimate)
    fitted = not full and concurrency is None and dataset is None
    opts = runner.BenchOptions(
        concurrency=runner.parse_levels(concurrency) if concurrency else list(runner.DEFAULT_LEVELS),
        requests=requests, runs=runs or (5 if full else 2), full=full,
        budget=runner.QUICK_BUDGET_S if fitted else None, warmup=warmup,
        input_len=input_len or 256, output_len=output_len if dataset is not None else (output_len or 512),
        dataset=dataset, seed=seed, slo=metrics.SLO(slo_ttft, slo_tpot), attainment=slo_attainment, timeout=timeout)
    opts.check()
    check_out(out)
    target = locate.target_for(ctx.obj, base_url, api_key, model, port)
    return run(ctx.obj, target, opts, json_out=json_out, out=out, plot=plot)


def check_out(out: Path | None) -> None:
    """--out is a folder, as in eval (before issue 24 it was bench's JSONL file): say so for a file name."""
    if out is None:
        return
    path = out.expanduser()
    if path.is_file() or (not path.exists() and path.suffix.lower() in (".jsonl", ".json")):
        raise UsageError(f"--out {out}: --out is a folder (as in `r1 eval`), and this is a file name",
                         hint=f"--out {path.with_suffix('')} writes requests.jsonl and summary.json there")


def plan_line(opts) -> str:
    """What the run will send, said first on stderr: it can take minutes."""
    levels = ",".join(map(str, opts.concurrency))
    per = "/".join(str(opts.requests_for(c)) for c in opts.concurrency)
    what = f"dataset {opts.dataset}" if opts.dataset else f"random prompts of {opts.input_len} tokens, {opts.output_len} out"
    size = "the full set" if opts.full else "quick set" + (", at most about 2 minutes" if opts.budget else "")
    return (f"r1: bench ({size}): concurrency {levels} x {opts.runs} runs of {per} requests, {opts.warmup} warm-up: "
            f"{opts.total_requests():,} requests ({what})" + ("" if opts.full else "; --full for the full set"))


def run(env: Environment, target, opts, *, json_out: bool = False, out: Path | None = None, plot: Path | None = None) -> int:
    """The command: check what can fail early, run, then write the results."""
    from r1cli.bench import report, runner

    opts.check()
    check_out(out)
    for path, flag in ((out, "--out"), (plot, "--plot")):
        if path is not None and not path.expanduser().resolve().parent.is_dir():
            raise UsageError(f"{flag} {path}: no such folder")
    if plot is not None:
        from r1cli import plotting

        plotting.require_matplotlib()  # before minutes of benchmarking, not after
    env.note(plan_line(opts))
    view = report.ProgressView(env, opts.total_requests()) if env.stderr_isatty else None
    try:
        result = runner.bench(target, opts, progress=env.dim, view=view)
    finally:
        if view is not None:
            view.stop()
    if result.interrupted and not result.levels:
        raise Interrupted(f"interrupted at {result.interrupted}, before any measured request ended: nothing to keep")
    doc = result.to_dict()
    if result.interrupted and out is None:
        out = default_folder()  # what finished is kept somewhere, and said where
    if out is not None:
        folder = out.expanduser()
        try:
            folder.mkdir(parents=result.interrupted is not None, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot make --out {out}: {exc.strerror or exc}") from None
        n = report.write_records(folder / "requests.jsonl", result.request_rows())
        with open(folder / "summary.json", "w", encoding="utf-8") as f:
            report.write_json(f, doc)
        if not result.interrupted:
            env.note(f"wrote {n} request records and the summary to {out} (requests.jsonl, summary.json)")
    if plot is not None:
        report.plot(plot, doc)
        env.note(f"wrote the plot to {plot}")
    if json_out:
        report.write_json(env.stdout, doc)
        for line in report.notes(doc):
            env.note(line)
    else:
        report.show(env, doc)
    if result.interrupted:
        raise Interrupted(f"interrupted at {result.interrupted}: wrote the {result.finished_requests()} requests that "
                          f"ended and their summary to {out} (requests.jsonl, summary.json)")
    return 0


def default_folder() -> Path:
    """Where an interrupted bench without --out keeps what finished: under R1_HOME, as eval's folders."""
    import time

    from r1cli import config

    return config.state_dir() / "bench" / time.strftime("%Y%m%d-%H%M%S")
