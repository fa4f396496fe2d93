"""Two machines' worth of replicas (issue 31): two `r1 serve` (one per GPU, as two machines would run them)
behind `r1 route`, against vLLM's own data parallel on the same two GPUs (`r1 serve --gpus 2`), with the same
`r1 bench` at c=256, rounds interleaved. Goal: the router reaches at least 0.95x of vLLM's data parallel in
output tokens/s. Prints mean ± std and the ratio; writes every run as JSON with --out.

    source benchmarks/gpu/env.sh && python3 benchmarks/gpu/route_vs_dp.py [--runs 3] [--policy cache_aware]

Needs a 2-GPU device and vllm-router (pip install 'r1cli[route]'; the device reaches no package index: carry its
wheel beside r1's in .gpu/r1). Not run yet: no 2-GPU machine was used for
it when it was written (the README says so).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys

MODEL = os.environ.get("MODEL", "/tmp/r1-1.5b")
NAME = os.environ.get("NAME", "DeepSeek-R1-Distill-Qwen-1.5B")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def r1(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "r1cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise SystemExit(f"r1 {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def bench(port: int, args) -> float:
    proc = r1("bench", "--port", str(port), "-c", str(args.concurrency), "--requests", str(4 * args.concurrency),
              "--input-len", "256", "--output-len", "512", "-r", "1", "--json")
    return json.loads(proc.stdout)["levels"][0]["summary"]["output_throughput"]["mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--policy", default="cache_aware")
    parser.add_argument("--out")
    args = parser.parse_args()
    serve = ["serve", MODEL, "--served-name", NAME, "-d", "--timeout", "900"]
    results: dict[str, list[float]] = {"r1 serve --gpus 2": [], "2 x r1 serve + r1 route": []}
    # one setup at a time: both hold the two GPUs' memory
    for i in range(args.runs):
        dp = free_port()
        try:
            r1(*serve, "--port", str(dp), "--gpus", "2", env={"CUDA_VISIBLE_DEVICES": "0,1"})
            bench(dp, args)  # untimed: the first burst after a start
            results["r1 serve --gpus 2"].append(bench(dp, args))
        finally:
            r1("stop", "--port", str(dp), check=False)
        workers, router = [free_port(), free_port()], free_port()
        try:
            for gpu, port in enumerate(workers):
                r1(*serve, "--port", str(port), env={"CUDA_VISIBLE_DEVICES": str(gpu)})
            r1("route", *(f":{p}" for p in workers), "--port", str(router), "--policy", args.policy, "-d")
            bench(router, args)
            results["2 x r1 serve + r1 route"].append(bench(router, args))
        finally:
            for port in (router, *workers):
                r1("stop", "--port", str(port), check=False)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} tok/s" for k, v in results.items()),
              file=sys.stderr, flush=True)
    means = {k: statistics.mean(v) for k, v in results.items()}
    for name, values in results.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:>24}: {means[name]:9,.0f} ± {spread:6,.0f} output tok/s at c={args.concurrency}")
    ratio = means["2 x r1 serve + r1 route"] / means["r1 serve --gpus 2"]
    print(f"router / data parallel: {ratio:.3f}x ({'meets' if ratio >= 0.95 else 'misses'} the goal of >= 0.95x)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"runs": results, "ratio": ratio, "policy": args.policy, "concurrency": args.concurrency}, fh,
                      indent=1)


if __name__ == "__main__":
    main()
