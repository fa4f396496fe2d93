"""What `r1 bench` shows: a table (one row per concurrency level, each figure mean ± std over the runs),
the JSON document (`--json`), every request's record (`--out`, JSON lines) and a plot (`--plot`,
matplotlib, an optional extra imported only then)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from r1cli.errors import UsageError

# (row label, summary key, scale): one row per figure, one column per concurrency level, so it fits 80 columns.
# Every time is in ms, as vLLM's own keys are: one unit down each column.
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
    ("end to end mean ms", "mean_e2el_ms", 1.0),
    ("first answer token mean ms", "mean_ttfa_ms", 1.0),
)
GOODPUT = ("goodput requests/s", "request_goodput", 1.0)


def figure(x: float, digits: int = 3) -> str:
    """`digits` significant digits, whole numbers from 100 up, no exponent for everyday sizes."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def decimals(x: float, digits: int = 3) -> int:
    """Decimals that show `digits` significant digits of x (none from 100 up; at most 6)."""
    if x == 0 or not math.isfinite(x) or abs(x) >= 100:
        return 0
    return min(6, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def cell(summary: dict, key: str, scale: float) -> str:
    """`mean ± std`, the std to the mean's decimals (794 ± 102, 12.3 ± 0.1): never an exponent."""
    entry = summary.get(key)
    if entry is None or entry["mean"] is None:
        return "-"
    mean = entry["mean"] * scale
    places = decimals(mean)
    text = f"{mean:,.{places}f}"
    if entry["std"] is not None:
        text += f" ± {entry['std'] * scale:,.{places}f}"
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
    from r1cli.server.route import target_text

    title = f"{doc['server']['model']}{target_text(doc['server'].get('router_workers'))}: {what}; {requests} requests per run, {runs}"
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


BURSTY = 0.5  # a level whose gaps between tokens are mostly bursts (metrics.BURST_GAP_S) gets a note


def notes(doc: dict) -> list[str]:
    """What the figures cannot say by themselves: levels whose tokens came in bursts, a run a Ctrl-C cut."""
    def mean(level: dict, key: str) -> float:
        return (level["summary"].get(key) or {}).get("mean") or 0.0

    out = []
    bursty = [lv for lv in doc["levels"] if mean(lv, "burst_share") > BURSTY]
    if bursty:
        levels = ",".join(str(lv["concurrency"]) for lv in bursty)
        gaps = min(mean(lv, "burst_share") for lv in bursty)
        ttft = min((mean(lv, "mean_ttft_ms") / mean(lv, "mean_e2el_ms") for lv in bursty if mean(lv, "mean_e2el_ms")),
                   default=0.0)  # the worst case: every token in one burst at the end
        first = f", TTFT {ttft:.0%} of the end-to-end latency" if ttft >= 0.5 else ""
        out.append(f"note: at concurrency {levels} the server sent the tokens in bursts (at least {gaps:.0%} of the "
                   f"gaps between tokens under 0.1 ms{first}): ITL and TPOT time its bursts, not the model's "
                   "decoding; the throughput and end-to-end latency hold")
    if doc.get("interrupted"):
        line = f"note: interrupted at {doc['interrupted']}"
        for lv in doc["levels"]:
            complete = lv.get("complete_runs", len(lv["runs"]))
            if complete < len(lv["runs"]):
                cut = lv["runs"][-1]
                ended = f"{cut['completed'] + cut['failed']} requests of its cut run that ended"
                line += (f": concurrency {lv['concurrency']} shows its {complete} complete run"
                         f"{'s' if complete > 1 else ''} (the {ended} are kept with the rest)" if complete
                         else f": concurrency {lv['concurrency']} shows the {ended}")
        out.append(line)
    return out


def show(env, doc: dict) -> None:
    env.out.print(table(doc))
    line = slo_line(doc)
    if line:
        env.out.print(line, markup=False)
    for line in notes(doc):
        env.out.print(line, markup=False, highlight=False)


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


def error_bars(levels: list[dict], key: str, scale: float = 1.0) -> tuple[list[float], tuple[list[float], list[float]]]:
    """A figure's means over the levels and its error bars (the runs' std), the lower one cut at 0:
    no throughput or latency is below 0, whatever the spread of the runs."""
    means, lower, upper = [], [], []
    for lv in levels:
        entry = lv["summary"].get(key) or {}
        mean = entry.get("mean")
        std = (entry.get("std") or 0.0) * scale
        means.append(float("nan") if mean is None else mean * scale)
        lower.append(0.0 if mean is None else min(std, max(0.0, mean * scale)))
        upper.append(std)
    return means, (lower, upper)


def plot(path: Path, doc: dict) -> None:
    """Throughput and latency against concurrency, with the runs' std as error bars (never below 0)."""
    from r1cli import plotting

    plt = plotting.require_matplotlib()
    levels = doc["levels"]
    xs = [lv["concurrency"] for lv in levels]

    def series(key: str, scale: float = 1.0):
        return error_bars(levels, key, scale)

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


class ProgressView:
    """`r1 bench` on a terminal: a bar on stderr with the requests done of all, the level and run, output
    tokens/s and an ETA (as `r1 eval` shows); each run's line prints above it."""

    def __init__(self, env, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("requests"), TextColumn("{task.fields[stats]}"), TextColumn("ETA"),
                                  TimeRemainingColumn(), console=env.err, transient=True)
        self._task = self._progress.add_task("warm-up", total=total, stats="")
        self._progress.start()

    def stage(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def advance(self, tokens: int = 0) -> None:
        self._progress.update(self._task, advance=1)

    def line(self, text: str) -> None:
        self._progress.console.print(text, style="dim", markup=False, highlight=False)

    def stats(self, text: str) -> None:
        self._progress.update(self._task, stats=text)

    def resize(self, total: int) -> None:
        """A new count of all requests (the quick set left levels out after its warm-up)."""
        self._progress.update(self._task, total=total)

    def stop(self) -> None:
        self._progress.stop()
