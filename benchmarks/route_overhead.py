"""What `r1 route` costs: the same `r1 bench` (c=32, random prompts) direct to one r1 server and through a
vllm-router started by `r1 route` in front of that one server, interleaved (direct, routed, direct, ...) so
that a machine getting busier or quieter shifts both alike. Goal (issue 31): the router costs at most 5% of
output tokens/s and at most 5 ms of mean TTFT; mean ± std over the runs.

--router-threads N also runs the router with N Tokio worker threads (TOKIO_WORKER_THREADS, which the
router's runtime reads; vllm-router has no flag for it), to see whether its threads competing with vLLM
for the cores is the cost. --spare-core gives the router a core of its own (the last; every thread of the
server's tree and the bench client get the others, in both setups alike; restored at the end): what a host
with cores to spare (a GPU host's 16) gives it. --paired sends each round's 32 streams half direct, half
through the router, shuffled, at once (the same moment of the machine for both), and compares their TTFT.

    python benchmarks/route_overhead.py                     # starts the demo on a free port, 5 runs each
    python benchmarks/route_overhead.py --port 8000         # an r1 server already running (not stopped)
    python benchmarks/route_overhead.py --router-threads 1
    python benchmarks/route_overhead.py --port 8000 --spare-core
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R1 = [sys.executable, "-m", "r1cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLIENT_CORES: set[int] | None = None  # --spare-core: where r1 (bench, route) runs: the server's cores


def pin(record_pid: int, cores: set[int]) -> None:
    """Every thread of every process in the tree of RECORD_PID onto CORES (sched_setaffinity is per thread)."""
    import psutil

    root = psutil.Process(record_pid)
    for proc in [root, *root.children(recursive=True)]:
        for thread in proc.threads():
            try:
                os.sched_setaffinity(thread.id, cores)
            except OSError:
                pass  # a thread that ended meanwhile


def record_pid(home: str, port: int) -> int:
    return json.loads((Path(home) / "servers" / f"{port}.json").read_text())["pid"]


def r1(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    cores = CLIENT_CORES
    proc = subprocess.run([*R1, *args], env=env, capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
    if check and proc.returncode != 0:
        raise SystemExit(f"r1 {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def cpu_seconds(home: str, port: int) -> float:
    """User + system CPU seconds of the process tree r1's record on PORT names (the router, or a server)."""
    import psutil

    root = psutil.Process(record_pid(home, port))
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def bench(port: int, args, env: dict) -> tuple[float, float]:
    """Output tokens/s and mean TTFT (ms) of one `r1 bench` run."""
    proc = r1("bench", "--port", str(port), "-c", str(args.concurrency), "--requests", str(args.requests),
              "--input-len", str(args.input_len), "--output-len", str(args.output_len), "-r", "1", "--json", env=env)
    summary = json.loads(proc.stdout)["levels"][0]["summary"]
    return summary["output_throughput"]["mean"], summary["mean_ttft_ms"]["mean"]


def paired(port: int, router_port: int, rounds: int, concurrency: int, output_len: int) -> dict[str, list[float]]:
    """TTFT (ms) of streams sent at once, half to PORT, half to ROUTER_PORT, shuffled, for ROUNDS rounds."""
    import http.client
    import random
    import threading
    import time

    ttft: dict[str, list[float]] = {"direct": [], "routed": []}

    def one(name: str, target: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", target, timeout=300)
        body = {"model": "r1-demo", "prompt": f"What is {random.randint(0, 10**6)}+3?", "max_tokens": output_len,
                "stream": True, "ignore_eos": True}
        t0 = time.perf_counter()
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp, first = conn.getresponse(), None
        while line := resp.readline():
            if first is None and line.startswith(b"data:"):
                first = (time.perf_counter() - t0) * 1000
        conn.close()
        ttft[name].append(first)

    for i in range(rounds):
        jobs = [("direct", port), ("routed", router_port)] * (concurrency // 2)
        random.shuffle(jobs)
        threads = [threading.Thread(target=one, args=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tail = {k: statistics.mean(v[-(concurrency // 2):]) for k, v in ttft.items()}
        print(f"round {i + 1}/{rounds}: mean TTFT direct {tail['direct']:.0f} ms, routed {tail['routed']:.0f} ms",
              file=sys.stderr, flush=True)
    return ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="an r1 server already running (default: start the demo)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--policy", default="cache_aware")
    parser.add_argument("--router-threads", type=int, help="also a router with this many Tokio worker threads")
    parser.add_argument("--paired", action="store_true", help="streams half direct, half routed, at once")
    parser.add_argument("--spare-core", action="store_true",
                        help="the router on a core of its own, the server and the client on the others")
    args = parser.parse_args()
    global CLIENT_CORES
    everything = os.sched_getaffinity(0)

    env = {**os.environ, "R1_HOME": os.environ.get("R1_HOME") or tempfile.mkdtemp(prefix="r1-route-bench-")}
    port = args.port
    if port is None:
        port = free_port()
        r1("serve", "demo", "--port", str(port), "-d", env=env)
    routers = {"routed": free_port()}
    if args.router_threads:
        routers[f"routed, {args.router_threads} thread(s)"] = free_port()
    try:
        for name, router_port in routers.items():
            threads = {"TOKIO_WORKER_THREADS": str(args.router_threads)} if "thread" in name else {}
            r1("route", f":{port}", "--port", str(router_port), "--policy", args.policy, "-d", env={**env, **threads})
        targets = {"direct": port, **routers}
        if args.spare_core:
            CLIENT_CORES = everything - {max(everything)}
            os.sched_setaffinity(0, CLIENT_CORES)  # this process too: --paired's client threads
            pin(record_pid(env["R1_HOME"], port), CLIENT_CORES)
            for router_port in routers.values():
                pin(record_pid(env["R1_HOME"], router_port), {max(everything)})
        bench(port, args, env)  # untimed: the first run after a start pays for vLLM's first batches
        if args.paired:
            found = paired(port, routers["routed"], args.runs + 1, args.concurrency, args.output_len)
            half = args.concurrency // 2  # the first round is a warm-up
            direct, routed = found["direct"][half:], found["routed"][half:]
            print(f"c={args.concurrency} ({half} direct + {half} routed at once), {args.runs} rounds: mean TTFT direct "
                  f"{statistics.mean(direct):.1f} ± {statistics.stdev(direct):.1f} ms, routed {statistics.mean(routed):.1f} "
                  f"± {statistics.stdev(routed):.1f} ms ({statistics.mean(routed) - statistics.mean(direct):+.1f} ms)")
            return
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        router_cpu: dict[str, float] = dict.fromkeys(routers, 0.0)  # the router's own CPU over its runs
        for i in range(args.runs):
            for name, target in targets.items():
                before = cpu_seconds(env["R1_HOME"], target) if name in routers else 0.0
                results[name].append(bench(target, args, env))
                if name in routers:
                    router_cpu[name] += cpu_seconds(env["R1_HOME"], target) - before
                tok, ttft = results[name][-1]
                print(f"run {i + 1}/{args.runs} {name}: {tok:,.0f} output tok/s, mean TTFT {ttft:.1f} ms",
                      file=sys.stderr, flush=True)
    finally:
        if args.spare_core:
            CLIENT_CORES = None
            os.sched_setaffinity(0, everything)
            pin(record_pid(env["R1_HOME"], port), everything)
        for router_port in routers.values():
            r1("stop", "--port", str(router_port), env=env, check=False)
        if args.port is None:
            r1("stop", "--port", str(port), env=env, check=False)

    def stats(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    direct_tok, _ = stats([t for t, _ in results["direct"]])
    direct_ttft, _ = stats([f for _, f in results["direct"]])
    where = (f"the server and the client on {len(everything) - 1} core(s), the router on 1 of its own"
             if args.spare_core else f"all on {len(everything)} cores")
    print(f"c={args.concurrency}, {args.requests} requests of {args.input_len} -> {args.output_len} tokens, "
          f"{args.runs} runs each, {where}")
    for name, rows in results.items():
        (tok, tok_sd), (ttft, ttft_sd) = stats([t for t, _ in rows]), stats([f for _, f in rows])
        line = f"{name:>22}: {tok:8,.0f} ± {tok_sd:5,.0f} output tok/s, mean TTFT {ttft:7.1f} ± {ttft_sd:5.1f} ms"
        if name != "direct":
            cost, extra = 1 - tok / direct_tok, ttft - direct_ttft
            verdict = "meets" if cost <= 0.05 and extra <= 5 else "misses"
            line += f"  (cost {cost:+.1%} tok/s, {extra:+.1f} ms TTFT: {verdict} the goal of <= 5%, <= 5 ms)"
            line += f"; the router's CPU: {router_cpu[name] / (args.runs * args.requests) * 1000:.2f} ms a request"
        print(line)


if __name__ == "__main__":
    main()
