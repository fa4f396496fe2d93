"""`r1 bench`: serving speed measured as `vllm bench serve` measures it, plus what R1 needs on top.

metrics (the definitions), load (what is sent), runner (runs and levels), report (table, JSON, plot).
"""

from __future__ import annotations

from pathlib import Path


def run(env, target, opts, *, json_out: bool = False, out: Path | None = None, plot: Path | None = None) -> int:
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
