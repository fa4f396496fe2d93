"""`r1 bench`: its options, their checks, and where its results go (the measuring is r1cli/bench/)."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import options
from r1cli.console import Environment
from r1cli.errors import UsageError


def bench(
    ctx: typer.Context,
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", metavar="C[,C2...]",
                                             help="Concurrency levels: requests in flight at once.")] = "1,16,64",
    requests: Annotated[Optional[int], typer.Option("--requests", "-n", min=1, show_default=False,
                                                    help="Requests per run (default: 4 x the level's concurrency, at least 32).")] = None,
    input_len: Annotated[Optional[int], typer.Option("--input-len", min=1, help="Random prompts of this many tokens (default 256).")] = None,
    output_len: Annotated[Optional[int], typer.Option("--output-len", min=1,
                                                      help="Random prompts: exactly this many output tokens (default 512); with --dataset: max_tokens.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", metavar="NAME|FILE",
                                                   help=f"Real R1 prompts ({options.DATASETS_TEXT}, or a file) instead of random ones.")] = None,
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
    timeout: options.RequestTimeout = 300.0,
    base_url: options.BaseUrl = None,
    api_key: options.ApiKey = None,
    model: options.Model = None,
) -> int:
    """Serving speed as `vllm bench serve` measures it (TTFT, TPOT, ITL, throughput), plus reasoning vs answer tokens/s."""
    from r1cli.bench import metrics, runner
    from r1cli.server import locate

    if dataset is not None and input_len is not None:
        raise UsageError("--input-len is for random prompts; a --dataset brings its own", hint="drop one of them")
    opts = runner.BenchOptions(
        concurrency=runner.parse_levels(concurrency), requests=requests, runs=runs, warmup=warmup,
        input_len=input_len or 256, output_len=output_len if dataset is not None else (output_len or 512),
        dataset=dataset, seed=seed, slo=metrics.SLO(slo_ttft, slo_tpot), attainment=slo_attainment, timeout=timeout)
    return run(ctx.obj, locate.resolve_target(base_url, api_key, model), opts, json_out=json_out, out=out, plot=plot)


def run(env: Environment, target, opts, *, json_out: bool = False, out: Path | None = None, plot: Path | None = None) -> int:
    """The command: check what can fail early, run, then write the results."""
    from r1cli.bench import report, runner

    opts.check()
    for path, flag in ((out, "--out"), (plot, "--plot")):
        if path is not None and not path.expanduser().resolve().parent.is_dir():
            from r1cli.errors import UsageError

            raise UsageError(f"{flag} {path}: no such folder")
    if plot is not None:
        from r1cli import plotting

        plotting.require_matplotlib()  # before minutes of benchmarking, not after
    result = runner.bench(target, opts, progress=env.dim)
    doc = result.to_dict()
    if out is not None:
        n = report.write_records(out, result.request_rows())
        env.note(f"wrote {n} request records to {out}")
    if plot is not None:
        report.plot(plot, doc)
        env.note(f"wrote the plot to {plot}")
    if json_out:
        report.write_json(env.stdout, doc)
    else:
        report.show(env, doc)
    return 0
