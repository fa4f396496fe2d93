"""Time from `r1 serve demo -d` to ready, next to a bare vLLM API server answering /health 200.

Goal (issues 2 and 12): r1 adds under 1 s. All serve the embedded demo with the same vLLM command line,
interleaved in each round (bare vLLM, r1, r1 --no-warmup), so that a machine getting busier or quieter
shifts them alike; the first start warms torch.compile's cache, so it runs once untimed. r1's own
ready time includes its warm-up (two tiny requests on the CPU), which bare vLLM does not do.
Usage: python benchmarks/serve_ready.py [ROUNDS]
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from r1cli import http  # noqa: E402
from r1cli.server import cmdline, process  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare(port: int) -> float:
    opts = cmdline.demo_options(cmdline.ServeOptions(model=cmdline.resolve_model("demo"), port=port))
    launch = cmdline.build(opts, has_vllm_cli=process.vllm_distribution() == "vllm")
    t0 = time.perf_counter()
    proc = subprocess.Popen(launch.argv, env={**os.environ, **launch.env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while http.status_of(f"http://127.0.0.1:{port}/health", timeout=1) != 200:
        if proc.poll() is not None:
            raise SystemExit("bare vLLM exited")
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    process.stop_tree(proc.pid)
    return elapsed


def with_r1(port: int, env: dict, *flags: str) -> float:
    r1 = str(Path(sys.executable).parent / "r1")
    t0 = time.perf_counter()
    subprocess.run([r1, "serve", "demo", "--port", str(port), "-d", *flags], env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - t0
    subprocess.run([r1, "stop", "--port", str(port)], env=env, check=True, capture_output=True)
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    env = {**os.environ, "R1_HOME": tempfile.mkdtemp(prefix="r1-bench-")}
    bare(free_port())  # warm caches
    results: dict[str, list[float]] = {"bare vLLM": [], "r1 serve": [], "r1 serve --no-warmup": []}
    for _ in range(rounds):
        results["bare vLLM"].append(bare(free_port()))
        results["r1 serve"].append(with_r1(free_port(), env))
        results["r1 serve --no-warmup"].append(with_r1(free_port(), env, "--no-warmup"))
    for name, times in results.items():
        print(f"{name:>20}: " + ", ".join(f"{t:.1f} s" for t in times) + f"  (median {statistics.median(times):.1f} s)")
    for name in ("r1 serve", "r1 serve --no-warmup"):
        diffs = [r - b for r, b in zip(results[name], results["bare vLLM"])]
        print(f"{name} - bare, per round: " + ", ".join(f"{d:+.2f} s" for d in diffs)
              + f"  (median {statistics.median(diffs):+.2f} s; goal: < 1 s)")


if __name__ == "__main__":
    main()
