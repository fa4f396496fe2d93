"""`r1 eval --plot FILE.png`: accuracy against the thinking budget, and latency, per dataset (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from r1cli import plotting


def plot(path: Path, summary: dict) -> None:
    """Left: pass@1 (mean ± std over runs) per budget; right: mean TTFT and end-to-end latency per budget.
    A result without a budget is shown at the right end as "none"."""
    plt = plotting.require_matplotlib()
    results = summary["results"]
    budgets = sorted({r["budget"] for r in results if r["budget"] is not None})
    labels = [str(b) for b in budgets] + (["none"] if any(r["budget"] is None for r in results) else [])
    xs = {b: i for i, b in enumerate([*budgets, None])}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = sorted((r for r in results if r["dataset"] == dataset), key=lambda r: xs[r["budget"]])
        x = [xs[r["budget"]] for r in rows]
        name = Path(dataset).name
        left.errorbar(x, [r["pass@1"]["mean"] or 0.0 for r in rows], yerr=[r["pass@1"]["std"] or 0.0 for r in rows],
                      marker="o", capsize=3, label=name)
        for key, what in (("ttft_s", "TTFT"), ("latency_s", "end to end")):
            right.errorbar(x, [r[key]["mean"]["mean"] or 0.0 for r in rows],
                           yerr=[r[key]["mean"]["std"] or 0.0 for r in rows], marker="o", capsize=3,
                           label=f"{name}: {what}")
    left.set(xlabel="thinking budget (tokens)", ylabel="pass@1 %", title="Accuracy", ylim=(0, 100))
    right.set(xlabel="thinking budget (tokens)", ylabel="seconds", title="Latency (mean)")
    for ax in (left, right):
        ax.set_xticks(range(len(labels)), labels)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    runs = results[0]["runs"] if results else 0
    fig.suptitle(f"r1 eval: {summary['provenance'].get('served_name') or ''}, {runs} runs", fontsize=10)
    fig.tight_layout()
    plotting.save(plt, fig, path)
