"""What `r1 bench` shows: a table (one row per concurrency level, each figure mean ± std over the runs),
the JSON document (`--json`), every request's record (`--out`, JSON lines) and a plot (`--plot`,
matplotlib, an optional extra imported only then)."""

from __future__ import annotations

import json
from pathlib import Path

from r1cli.errors import UsageError

# (row label, summary key, scale): one row per figure, one column per concurrency level, so it fits 80 columns.
ROWS = (
    ("requests/s", "request_throughput", 1.0),
    ("output tokens/s", "output_throughput", 1.0),
    ("  reasoning tokens/s", "reasoning_throughput", 1.0),
    ("  answer tokens/s", "answer_throughput", 1.0),
    ("total tokens/s", "total_token_throughput", 1.0),
    ("TTFT mean ms", "mean_ttft_ms", 1.0),
    ("TTFT p99 ms", "p99_ttft_ms", 1.0),
    ("TPOT mean ms", "mean_tpot_ms", 1.0),
    ("ITL mean ms", "mean_itl_ms", 1.0),
    ("ITL p99 ms", "p99_itl_ms", 1.0),
    ("end to end mean s", "mean_e2el_ms", 0.001),
    ("first answer token s", "mean_ttfa_ms", 0.001),
)
GOODPUT = ("goodput requests/s", "request_goodput", 1.0)


def figure(x: float, digits: int = 3) -> str:
    """`digits` significant digits, whole numbers from 100 up, no exponent for everyday sizes."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def cell(summary: dict, key: str, scale: float) -> str:
    entry = summary.get(key)
    if entry is None or entry["mean"] is None:
        return "-"
    text = figure(entry["mean"] * scale)
    if entry["std"] is not None:
        text += f" ± {figure(entry['std'] * scale, 2)}"
    return text


def table(doc: dict):
    """A Rich table of the JSON document: figures down, concurrency levels across."""
    from rich.table import Table

    load = doc["load"]
    what = (f"dataset {load['dataset']}" if load["kind"] == "dataset"
            else f"random prompts of {load['prompt_text_tokens']} tokens + template, {load['params']['max_tokens']} out")
    runs = "1 run" if doc["runs"] == 1 else f"{doc['runs']} runs (mean ± std)"
    counts = sorted({level["requests"] for level in doc["levels"]})
    requests = f"{counts[0]}" if len(counts) == 1 else "/".join(str(level["requests"]) for level in doc["levels"])
    title = f"{doc['server']['model']}: {what}; {requests} requests per run, {runs}"
    t = Table(title=title, title_justify="left")
    t.add_column("concurrency")
    for level in doc["levels"]:
        t.add_column(str(level["concurrency"]), justify="right")
    for label, key, scale in ROWS + ((GOODPUT,) if doc.get("slo") else ()):
        t.add_row(label, *(cell(level["summary"], key, scale) for level in doc["levels"]))
    if doc.get("slo"):
        t.add_row("requests within SLO", *(f"{level['slo_attainment']:.0%}" for level in doc["levels"]))
    return t


def slo_line(doc: dict) -> str | None:
    slo = doc.get("slo")
    if not slo:
        return None
    bounds = " and ".join(f"{name} <= {slo[key]:g} ms" for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"))
                          if slo[key] is not None)
    best = slo["best_concurrency"]
    share = f"{slo['attainment']:.0%} of requests"
    if best is None:
        return f"SLO {bounds}: no concurrency level tried has {share} meeting it"
    return f"SLO {bounds}: the highest concurrency with {share} meeting it is {best}"


def show(env, doc: dict) -> None:
    env.out.print(table(doc))
    line = slo_line(doc)
    if line:
        env.out.print(line, markup=False)


def write_json(stream, doc: dict) -> None:
    stream.write(json.dumps(doc, indent=1) + "\n")


def write_records(path: Path, rows) -> int:
    n = 0
    try:
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
                n += 1
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return n


def plot(path: Path, doc: dict) -> None:
    """Throughput and latency against concurrency, with the runs' std as error bars."""
    from r1cli import plotting

    plt = plotting.require_matplotlib()
    levels = doc["levels"]
    xs = [lv["concurrency"] for lv in levels]

    def series(key: str, scale: float = 1.0):
        means = [(lv["summary"].get(key) or {}).get("mean") for lv in levels]
        stds = [(lv["summary"].get(key) or {}).get("std") or 0.0 for lv in levels]
        return ([float("nan") if m is None else m * scale for m in means], [s * scale for s in stds])

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("output_throughput", "output"), ("reasoning_throughput", "reasoning"),
                       ("answer_throughput", "answer")):
        means, stds = series(key)
        left.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    left.set(xlabel="concurrency", ylabel="tokens/s", title="Throughput")
    for key, label in (("mean_ttft_ms", "TTFT"), ("mean_ttfa_ms", "first answer token"), ("mean_e2el_ms", "end to end")):
        means, stds = series(key, 0.001)
        right.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    right.set(xlabel="concurrency", ylabel="seconds", title="Latency (mean)")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"r1 bench: {doc['server']['model']}", fontsize=10)
    fig.tight_layout()
    plotting.save(plt, fig, path)
