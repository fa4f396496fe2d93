"""Keep-alive on a GPU (issues 21, 29): what a request pays when the server sleeps, against a cold start.

    source benchmarks/gpu/env.sh && python3 benchmarks/gpu/keepalive.py [--runs 5] [--out results.json]

On the lent GPU (../shared/gpu/README.md) with the 1.5B's shape. In one run:
- cold: `r1 serve MODEL -d` from nothing, then the first request's first token (one sample: a start is minutes);
- time to first token of a streamed request sent to a sleeping server (level 1 and level 2, RUNS samples
  each), woken by r1's middleware inside the server on the request itself; and, as the anchor, of the same
  request to the awake server;
- output tokens/s of a c=64 burst (256 tokens each, ignore_eos) on the awake server before any sleep, right
  after a wake (`r1 wake`), and sent to the sleeping server (the burst wakes it) (RUNS samples each).
Prints mean ± std and writes every sample as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

MODEL = os.environ.get("MODEL", "/tmp/r1-1.5b")
NAME = os.environ.get("NAME", "DeepSeek-R1-Distill-Qwen-1.5B")
PORT = 8010


def r1(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "r1cli", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"r1 {' '.join(args)} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return proc


def first_token_s(max_tokens: int = 16) -> float:
    """Seconds from sending a streamed completion to its first text chunk."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
    body = json.dumps({"model": NAME, "prompt": "Hello", "max_tokens": max_tokens, "stream": True, "ignore_eos": True})
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()[:500]
    first = None
    for line in resp:
        if line.startswith(b"data: {") and first is None:
            first = time.monotonic() - t0
    conn.close()
    assert first is not None
    return first


def burst(concurrency: int = 64, tokens: int = 256) -> float:
    """Output tokens/s of CONCURRENCY completions of TOKENS tokens sent at once."""
    counts: list[int] = []

    def one(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
        body = json.dumps({"model": NAME, "prompt": f"Item {i}:", "max_tokens": tokens, "ignore_eos": True})
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        counts.append(json.loads(conn.getresponse().read())["usage"]["completion_tokens"])
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def asleep() -> bool:
    data = json.loads(r1("status", "--json", "--port", str(PORT)).stdout)
    return any(s["state"] == "asleep" for s in data["servers"])


def summary(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f} (n={len(values)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "keepalive.json"))
    args = ap.parse_args()
    samples: dict[str, list[float]] = {}
    t0 = time.monotonic()
    r1("serve", MODEL, "--served-name", NAME, "--port", str(PORT), "-d", "--idle-sleep", "manual", "--timeout", "900")
    ready_s = time.monotonic() - t0
    samples["cold_serve_then_first_token_s"] = [ready_s + first_token_s()]
    samples["cold_serve_ready_s"] = [ready_s]
    try:
        samples["awake_first_token_s"] = [first_token_s() for _ in range(args.runs)]
        samples["c64_tok_s_before_sleep"] = [burst() for _ in range(args.runs)]
        for level in (1, 2):
            key = f"asleep_level{level}_first_token_s"
            samples[key] = []
            samples[f"level{level}_sleep_s"] = []
            for _ in range(args.runs):
                slept = json.loads(r1("sleep", "--port", str(PORT), "--level", str(level), "--json").stdout)
                samples[f"level{level}_sleep_s"].append(slept["servers"][0]["seconds"])
                assert asleep()
                samples[key].append(first_token_s())  # r1's middleware wakes it on this request
        samples["c64_tok_s_right_after_wake"] = []
        for _ in range(args.runs):
            r1("sleep", "--port", str(PORT), "--level", "1")
            r1("wake", "--port", str(PORT))
            samples["c64_tok_s_right_after_wake"].append(burst())
        samples["c64_tok_s_sent_while_asleep"] = []
        for _ in range(args.runs):
            r1("sleep", "--port", str(PORT), "--level", "1")
            samples["c64_tok_s_sent_while_asleep"].append(burst())
    finally:
        r1("stop", "--port", str(PORT))
    with open(args.out, "w") as fh:
        json.dump(samples, fh, indent=1)
    for key, values in samples.items():
        print(f"{key:36s} {summary(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
