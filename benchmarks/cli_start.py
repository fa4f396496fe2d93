"""The CLI's start, as ratios to `python -c pass` in the same venv and run: `r1 --version`, `r1 status`
with no server, and `r1 ask` against a local server that answers at once. Several source trees
(e.g. a `git worktree` of an older commit) run interleaved, so a change's cost shows beside its parent.

    python benchmarks/cli_start.py [-n 20] [TREE ...]     (default TREE: this checkout)

Each tree runs as `python -m r1cli` with the tree as working directory, so its own r1cli is imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from scripted_server import ScriptedServer  # noqa: E402


def timed(argv: list[str], cwd: Path, env: dict, ok: tuple[int, ...]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} in {cwd} exited {proc.returncode}: {proc.stderr.decode()[-400:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    args = parser.parse_args()
    server = ScriptedServer("instant")
    # An empty state directory and a port nobody listens on: status finds no record and no server.
    env = {**os.environ, "R1_HOME": tempfile.mkdtemp(prefix="r1-start-"), "R1_BASE_URL": "http://127.0.0.1:9/v1"}
    py = sys.executable
    commands = {
        "r1 --version": ([py, "-m", "r1cli", "--version"], (0,)),
        "r1 status": ([py, "-m", "r1cli", "status"], (3,)),
        "r1 ask": ([py, "-m", "r1cli", "ask", "What is 2+3?", "--base-url", server.base_url], (0,)),
        "r1 --help": ([py, "-m", "r1cli", "--help"], (0,)),
    }
    anchor = [py, "-c", "pass"]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(2):  # warm the page cache and the bytecode
        for tree in args.trees:
            for argv, ok in commands.values():
                timed(argv, tree, env, ok)
    for _ in range(args.n):
        times.setdefault(("", "python -c pass"), []).append(timed(anchor, ROOT, env, (0,)))
        for tree in args.trees:
            for name, (argv, ok) in commands.items():
                times.setdefault((str(tree), name), []).append(timed(argv, tree, env, ok))
    server.close()
    base = statistics.median(times[("", "python -c pass")])
    print(f"python -c pass: median {base * 1000:.1f} ms over {args.n} runs")
    for tree in args.trees:
        print(f"{tree}:")
        for name in commands:
            med = statistics.median(times[(str(tree), name)])
            print(f"  {name:>13}: median {med * 1000:6.1f} ms = {med / base:4.1f}x python -c pass")


if __name__ == "__main__":
    main()
