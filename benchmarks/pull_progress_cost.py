"""What the pull's progress display costs: a pull's throughput with the Rich bar (drawn to a terminal that
discards it), with the plain lines, and with no display at all, against olah on localhost.

    python benchmarks/pull_progress_cost.py [--mb 200] [--runs 5]

The repo is the demo model's files with weights of --mb MB of random bytes, served by olah's local mirror
(tests/hub/conftest.py starts it; R1_OLAH_PYTHON names olah's python). Each run pulls into a fresh cache;
the displays take turns so that drift on a shared machine falls on all of them alike. Prints the median
MB/s of each, and since olah (a Python server: about 5-10 MB/s here) makes the throughput noisy, also the
client's own CPU time a pull: the bar's extra CPU as a share of a pull's time is its cost, under 2% wanted.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from hub.conftest import REPO, build_repo, free_port, olah_python, start_olah, stop, wait_http  # noqa: E402


class DiscardingTerminal(io.StringIO):
    """A terminal for Rich (isatty) whose output goes nowhere: the drawing is paid for, not the screen."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def pull_once(display_name: str, cache: Path) -> tuple[float, float, float]:
    """One pull of REPO into CACHE with the named display: its throughput in MB/s, its wall seconds and the
    CPU seconds this process spent (the display's drawing thread included)."""
    from r1cli.console import Environment
    from r1cli.hub import pull as hub

    env = Environment(_stderr=DiscardingTerminal())
    display = {"rich": hub.RichDisplay, "plain": hub.PlainDisplay, "none": lambda env: hub.NoDisplay()}[display_name](env)
    os.environ["HF_HUB_CACHE"] = str(cache)
    start, cpu = time.perf_counter(), time.process_time()
    plan = hub.pull(env, REPO, display=display)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert plan.fetched == plan.total, (plan.fetched, plan.total)
    return plan.total / seconds / 1e6, seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the weights file")
    parser.add_argument("--runs", type=int, default=5, help="pulls per display")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="r1-pull-bench-"))
    repo = base / "mirrors" / "models" / REPO
    build_repo(repo)
    (repo / "model.safetensors").write_bytes(os.urandom(args.mb * 1_000_000))  # weights of the size asked
    import subprocess

    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam",
                    "bigger weights"], check=True)
    port = free_port()
    proc = start_olah(olah_python(), base / "mirror", port,
                      f'mirrors-path = ["{base / "mirrors"}"]\n[accessibility]\noffline = true\n')
    try:
        wait_http(f"http://127.0.0.1:{port}/api/models/{REPO}/revision/main", proc)
        os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
        os.environ.pop("HF_HUB_OFFLINE", None)
        pull_once("none", base / "warm")  # olah reads the repo into its page cache; imports are paid here
        rates: dict[str, list[tuple[float, float, float]]] = {"none": [], "rich": [], "plain": []}
        for run in range(args.runs):
            for name in rates:
                rates[name].append(pull_once(name, base / f"cache-{name}-{run}"))
                subprocess.run(["rm", "-rf", str(base / f"cache-{name}-{run}")], check=True)
    finally:
        stop(proc)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    median = {name: statistics.median(v[0] for v in values) for name, values in rates.items()}
    cpu = {name: statistics.median(v[2] for v in values) for name, values in rates.items()}
    wall = statistics.median(v[1] for v in rates["none"])
    for name, values in rates.items():
        print(f"{name:>5}: median {median[name]:7.1f} MB/s, client CPU {cpu[name]:.2f} s a pull  "
              f"(runs, MB/s: {', '.join(f'{v[0]:.1f}' for v in values)})")
    for name in ("rich", "plain"):
        # Paired: each round's pull with the display against the same round's pull without one (adjacent in
        # time), so that drift on the machine cancels; their median and range show the noise as well.
        paired = sorted((v[0] / n[0] - 1) * 100 for v, n in zip(rates[name], rates["none"]))
        print(f"{name}: throughput {(median[name] / median['none'] - 1) * 100:+.1f}% vs no display (paired by round: "
              f"median {statistics.median(paired):+.1f}%, range {paired[0]:+.1f}% to {paired[-1]:+.1f}%; olah is the "
              f"bottleneck); the display's own CPU: {cpu[name] - cpu['none']:+.3f} s a pull = "
              f"{(cpu[name] - cpu['none']) / wall * 100:+.2f}% of a pull's {wall:.1f} s ({args.mb} MB, {args.runs} runs)")

if __name__ == "__main__":
    main()
