"""Time from `r1 serve -d` to ready, next to bare vLLM running the same command answering /health 200.

Goal (issues 2 and 12): r1 adds under 1 s. Bare vLLM runs exactly the command `r1 serve --dry-run` prints
for the same model and flags (so both have equal vLLM flags), and the rounds are interleaved (bare vLLM,
r1 --no-warmup, r1) so that a machine getting busier or quieter shifts them alike; the first start warms
torch.compile's cache, so it runs once untimed. r1's ready includes its own checks (/v1/models, the
listener is its own tree); plain `r1 serve` also includes the warm-up, which bare vLLM does not do.
vLLM's own start-up varies by seconds between starts (on an H200: 46.5 to 60.8 s, same flags), so each r1
start also reports r1's own share, which does not ride on it: r1's start to vLLM's process, plus vLLM's
/health first answering to r1 saying ready.

    python benchmarks/serve_ready.py                      # the embedded demo, 2 rounds
    python benchmarks/serve_ready.py --rounds 2 /tmp/r1-1.5b --served-name DeepSeek-R1-Distill-Qwen-1.5B
      # (on a GPU: any `r1 serve` flags after the model)
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from r1cli.client import http
from r1cli.server import process

R1 = [sys.executable, "-m", "r1cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def r1_command(model: str, flags: list[str], port: int, env: dict) -> tuple[dict, list[str]]:
    """The environment and argv `r1 serve` would spawn (its --dry-run line: VAR=value ... argv)."""
    line = subprocess.run([*R1, "serve", model, "--port", str(port), "--dry-run", *flags], env=env, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    words = shlex.split(line)
    n = next(i for i, word in enumerate(words) if not re.match(r"[A-Z_][A-Z0-9_]*=", word))
    return dict(word.split("=", 1) for word in words[:n]), words[n:]


def bare(model: str, flags: list[str], env: dict) -> tuple[float, None]:
    """Seconds to /health 200 (and no r1 share: with_r1's shape)."""
    port = free_port()
    extra_env, argv = r1_command(model, flags, port, env)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env={**env, **extra_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while http.status_of(f"http://127.0.0.1:{port}/health", timeout=1) != 200:
            if proc.poll() is not None:
                raise SystemExit(f"bare vLLM exited ({proc.returncode}): {shlex.join(argv)}")
            time.sleep(0.1)
        return time.perf_counter() - t0, None
    finally:
        process.stop_tree(proc.pid)


def with_r1(model: str, flags: list[str], env: dict) -> tuple[float, float | None]:
    """Seconds to ready, and r1's own share of them: from r1's start to vLLM's process starting, plus from
    vLLM's /health first answering 200 (polled here every 20 ms) to r1 saying ready. vLLM's start-up time
    varies by seconds from one start to the next on a GPU; r1's share does not ride on it."""
    import psutil

    port = free_port()
    t0 = time.time()
    proc = subprocess.Popen([*R1, "serve", model, "--port", str(port), "-d", *flags], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vllm_started = health_at = None
    try:
        while proc.poll() is None:
            if vllm_started is None:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        if "vllm" in " ".join(child.cmdline()) and str(port) in child.cmdline():
                            vllm_started = child.create_time()
                    except psutil.Error:
                        continue
            elif health_at is None and http.status_of(f"http://127.0.0.1:{port}/health", timeout=0.5) == 200:
                health_at = time.time()
            time.sleep(0.02)
        ready_at = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"r1 serve exited {proc.returncode}")
        share = None
        if vllm_started is not None and health_at is not None:
            share = (vllm_started - t0) + (ready_at - health_at)
        return ready_at - t0, share
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([*R1, "stop", "--port", str(port)], env=env, check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only-no-warmup", action="store_true", help="skip the plain `r1 serve` rounds")
    parser.add_argument("model", nargs="?", default="demo")
    opts, flags = parser.parse_known_args()
    env = {**os.environ, "R1_HOME": tempfile.mkdtemp(prefix="r1-bench-")}
    if not os.environ.get("R1_CACHE_WARM"):  # a machine that already ran this command has its caches warm
        bare(opts.model, flags, env)  # warm caches
    results: dict[str, list[float]] = {"bare vLLM": [], "r1 serve --no-warmup": [], "r1 serve": []}
    shares: list[float] = []  # r1's own seconds in its --no-warmup starts
    for round_no in range(1, opts.rounds + 1):
        runs = [("bare vLLM", lambda: bare(opts.model, flags, env)),
                ("r1 serve --no-warmup", lambda: with_r1(opts.model, [*flags, "--no-warmup"], env))]
        if not opts.only_no_warmup:
            runs.append(("r1 serve", lambda: with_r1(opts.model, flags, env)))
        for name, start in runs:
            seconds, share = start()
            results[name].append(seconds)
            if share is not None and name == "r1 serve --no-warmup":
                shares.append(share)
            mine = f" (r1's own share {share:.2f} s)" if share is not None else ""
            print(f"round {round_no}: {name} ready in {seconds:.1f} s{mine}", file=sys.stderr, flush=True)
    print("vLLM command (both): " + shlex.join(r1_command(opts.model, flags, 8000, env)[1]))
    for name, times in results.items():
        if not times:
            continue
        print(f"{name:>20}: " + ", ".join(f"{t:.1f} s" for t in times) + f"  (median {statistics.median(times):.1f} s)")
    for name in ("r1 serve --no-warmup", "r1 serve"):
        if not results[name]:
            continue
        diffs = [r - b for r, b in zip(results[name], results["bare vLLM"])]
        print(f"{name} - bare, per round: " + ", ".join(f"{d:+.2f} s" for d in diffs)
              + f"  (median {statistics.median(diffs):+.2f} s; goal without the warm-up: < 1 s)")
    if shares:
        print("r1's own share of its --no-warmup starts (r1's start to vLLM's process, /health 200 to ready): "
              + ", ".join(f"{x:.2f} s" for x in shares) + f"  (median {statistics.median(shares):.2f} s; goal: < 1 s)")


if __name__ == "__main__":
    main()
