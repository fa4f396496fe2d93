"""How long plain `r1 bench` (the quick set) takes on a running server, next to the full set's estimate.

Goal (issue 32, item 7): on the CPU demo the quick set ends within 2 minutes, where the full set (`--full`,
1,764 requests of 512 tokens) took 15-25. The anchor, measured in the same run against the same server: one
level of the full set, concurrency 1 (its 5 runs of 32 requests cut to 1 run of 4), whose time x 40 is what
the full set's concurrency-1 level alone takes. Rounds alternate anchor and quick set, so a machine getting
busier or quieter shifts both alike; the table is each round's quick-set wall time, the levels it kept, and
its ratio to the anchor.

    python benchmarks/bench_quick.py --port 8061              # a demo server: r1 serve demo --port 8061 -d
    python benchmarks/bench_quick.py --port 8000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R1 = [sys.executable, "-m", "r1cli", "bench", "--json"]
GOAL_S = 120.0


def timed(args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([*R1, *args], capture_output=True, text=True, cwd=ROOT, timeout=3600)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"r1 bench {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return took, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    where = ["--port", str(opts.port)]
    quick, anchors = [], []
    for round_ in range(opts.rounds):
        anchor, _ = timed([*where, "-c", "1", "--requests", "4", "-r", "1", "--warmup", "0"])
        took, doc = timed(where)
        anchors.append(anchor)
        quick.append(took)
        kept = ",".join(str(lv["concurrency"]) for lv in doc["levels"])
        print(f"round {round_ + 1}: quick set {took:.1f} s (levels {kept}; left out: {doc['left_out'] or 'none'}), "
              f"anchor {anchor:.1f} s, ratio {took / anchor:.1f}")
    mean = statistics.fmean(quick)
    std = statistics.stdev(quick) if len(quick) > 1 else 0.0
    full_c1 = statistics.fmean(anchors) * 40  # 5 runs of 32 requests at concurrency 1, from 1 run of 4
    print(f"quick set: {mean:.1f} ± {std:.1f} s over {len(quick)} rounds (goal: <= {GOAL_S:.0f} s); "
          f"the full set's concurrency-1 level alone: about {full_c1:.0f} s")


if __name__ == "__main__":
    main()
