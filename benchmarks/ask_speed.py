"""`r1 ask` against a local server that answers at once, next to `curl` doing the same request.

Goal (issue 4): r1 within 250 ms of curl, measured in the same run. Prints medians and the difference.
Usage: python benchmarks/ask_speed.py [RUNS]
"""

from __future__ import annotations

import json
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


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    server = ScriptedServer("instant")
    env = {**os.environ, "R1_HOME": tempfile.mkdtemp(prefix="r1-bench-")}
    body = json.dumps({"model": "scripted", "stream": True, "temperature": 0.6, "top_p": 0.95,
                       "messages": [{"role": "user", "content": "What is 2+3?"}]})
    curl = ["curl", "-sN", "-H", "Content-Type: application/json", "-d", body, server.base_url + "/chat/completions"]
    r1 = [str(Path(sys.executable).parent / "r1"), "ask", "What is 2+3?", "--base-url", server.base_url]
    pypass = [sys.executable, "-c", "pass"]
    for cmd in (curl, r1, pypass):  # warm the page cache
        timed(cmd, env)
    results = {"curl": [], "r1 ask": [], "python -c pass": []}
    for _ in range(runs):  # interleaved, so drift hits all three alike
        results["curl"].append(timed(curl, env))
        results["r1 ask"].append(timed(r1, env))
        results["python -c pass"].append(timed(pypass, env))
    server.close()
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    for name, ms in med.items():
        print(f"{name:>15}: median {ms:7.1f} ms over {runs} runs")
    print(f"r1 ask - curl: {med['r1 ask'] - med['curl']:+.1f} ms (goal: <= 250 ms); ratio {med['r1 ask'] / med['curl']:.1f}x")


if __name__ == "__main__":
    main()
