"""How long `r1 status` takes with no server running, beside `python -c pass` measured in the same run.

    python benchmarks/status_speed.py [-n 20] [--json]

Target (issue 3): `r1 status` with no server returns in <= 250 ms wall. Both commands run as real
processes, interleaved, with the default state directory lookup (platformdirs) pointed at a fresh
empty folder (so no record is read), with stdout to a pipe
and no server on the default port (checked first: the default probe must be refused, not answered).
Prints the median, min and max of each and the difference of the medians. Exit 1 if the median is
over the target.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.250
ROOT = Path(__file__).resolve().parents[1]


def _r1_command() -> list[str]:
    script = Path(sys.executable).with_name("r1")
    return [str(script)] if script.exists() else [sys.executable, "-m", "r1cli"]


def _time(argv: list[str], env: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0, proc.returncode


def _port_8000_free() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 8000)) != 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs of each command (default 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    if not _port_8000_free():
        print("something listens on 127.0.0.1:8000: stop it first (this measures status with no server)",
              file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="r1-status-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("R1_BASE_URL", "R1_API_KEY", "R1_HOME")}
    # The default state directory (platformdirs, as a user without R1_HOME pays for), but an empty one.
    env["XDG_STATE_HOME"] = home
    r1 = _r1_command() + ["status"]
    baseline = [sys.executable, "-c", "pass"]

    # One warm-up each: the first run pays for a cold page cache.
    _time(baseline, env)
    _, code = _time(r1, env)
    if code != 3:
        print(f"`r1 status` exited {code}, expected 3 (no server)", file=sys.stderr)
        return 2

    runs: dict[str, list[float]] = {"python -c pass": [], "r1 status": []}
    for _ in range(args.n):
        runs["python -c pass"].append(_time(baseline, env)[0])
        runs["r1 status"].append(_time(r1, env)[0])

    med = {name: statistics.median(times) for name, times in runs.items()}
    result = {
        "runs": args.n,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_s": {k: round(min(v), 4) for k, v in runs.items()},
        "max_s": {k: round(max(v), 4) for k, v in runs.items()},
        "difference_s": round(med["r1 status"] - med["python -c pass"], 4),
        "target_s": TARGET_S,
        "within_target": med["r1 status"] <= TARGET_S,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.n} runs each, {os.cpu_count()} CPUs, Python {result['python']}")
        for name in runs:
            print(f"  {name:<16} median {med[name] * 1000:6.1f} ms   (min {min(runs[name]) * 1000:6.1f}, "
                  f"max {max(runs[name]) * 1000:6.1f})")
        print(f"  difference       {result['difference_s'] * 1000:6.1f} ms")
        verdict = "within" if result["within_target"] else "OVER"
        print(f"  r1 status median {med['r1 status'] * 1000:.0f} ms: {verdict} the {TARGET_S * 1000:.0f} ms target")
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
