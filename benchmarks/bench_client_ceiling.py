"""The client's own ceiling: `r1 bench` and `vllm bench serve` against a server that costs nothing.

A local server (a process of its own) answers every chat request with one canned R1 answer of
--tokens tokens (a think block as `delta.reasoning`, then the answer as `delta.content`, one SSE
event per token, as vLLM streams them; benchmarks/replay_server.py's events), each event in a write of
its own as vLLM sends them (--one-write: the whole answer in one write, which flatters a client that
parses a read's events in one go), so whatever limits the throughput is the client reading and parsing. Both tools run at the same
concurrency (64 by default) over the same number of requests, alternating, --runs times each.
Goal (issue 10): r1 bench sustains at least the output tokens/s that vllm bench serve sustains.

    python benchmarks/bench_client_ceiling.py [--concurrency 64] [--requests 512] [--tokens 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from bench_vs_vllm import r1_bench, vllm_bench_serve
from replay_server import make_handler, sse_events

from r1cli.bench import metrics


class BurstServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 64 clients connect at once; the default backlog of 5 would drop some SYNs

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing a spare keep-alive connection
            super().handle_error(request, client_address)


def serve(port: int, tokens: int, think: int, model: str, rate: float = 0.0, one_write: bool = False) -> None:
    # One write per token, as vLLM streams (paced at RATE tokens/s when given, the first at once: a true TTFT
    # of about nothing); with ONE_WRITE, unpaced, the whole answer in one sendall.
    events = [b"".join(sse_events(tokens, think, model))] if one_write and not rate else sse_events(tokens, think, model)
    server = BurstServer(("127.0.0.1", port), make_handler(events, rate, model))
    print(f"ready http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def start_server(tokens: int, think: int, model: str, rate: float = 0.0,
                 one_write: bool = False) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--tokens", str(tokens), "--think", str(think),
                             "--model", model, "--rate", str(rate), *(["--one-write"] if one_write else [])],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("ready "):
        proc.kill()
        raise SystemExit(f"the canned server did not start: {line!r}")
    return proc, line.split()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=1000, help="output tokens per answer")
    ap.add_argument("--think", type=int, default=800, help="of which reasoning")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="canned")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="pace each stream at this many tokens/s, the first token at once (0: as fast as it can): "
                         "each tool's mean TTFT is then what its own client adds")
    ap.add_argument("--one-write", action="store_true",
                    help="unpaced: send each answer in one write instead of one write per token (as vLLM does)")
    ap.add_argument("--vllm-python", default=sys.executable)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.serve:
        serve(0, opts.tokens, opts.think, opts.model, opts.rate, opts.one_write)
        return 0
    proc, url = start_server(opts.tokens, opts.think, opts.model, opts.rate, opts.one_write)
    results: dict[str, list[dict]] = {"r1 bench": [], "vllm bench serve": []}
    try:
        for run in range(opts.runs):
            order = ("vllm bench serve", "r1 bench") if run % 2 == 0 else ("r1 bench", "vllm bench serve")
            for tool in order:
                t0 = time.perf_counter()
                if tool == "r1 bench":
                    # Dataset prompts: the canned server has no /tokenize, and the prompt does not matter to it.
                    doc = r1_bench(["--base-url", url, "--model", opts.model, "demo",
                                    "-c", str(opts.concurrency), "--requests", str(opts.requests), "-r", "1", "--warmup", "0"])
                    figures = doc["levels"][0]["runs"][0]
                else:
                    figures = vllm_bench_serve(opts.vllm_python, [
                        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url,
                        "--model", opts.model, "--tokenizer", str(ROOT / "r1cli" / "demo_model"),
                        "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", str(opts.tokens),
                        "--num-prompts", str(opts.requests), "--max-concurrency", str(opts.concurrency),
                        "--ready-check-timeout-sec", "0"])[0]
                results[tool].append(figures)
                print(f"  run {run + 1}/{opts.runs} {tool:>16}: {figures['output_throughput']:10,.0f} output tok/s, "
                      f"{figures['request_throughput']:7.1f} req/s, mean TTFT {figures['mean_ttft_ms']:.2f} ms, "
                      f"{figures['completed']} ok, {figures['failed']} failed "
                      f"({time.perf_counter() - t0:.1f} s with start-up)", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    pace = (f"paced at {opts.rate:g} tokens/s per stream" if opts.rate
            else "unpaced, " + ("one write per answer" if opts.one_write else "one write per token"))
    print(f"canned server ({pace}), {opts.tokens} tokens per answer, concurrency {opts.concurrency}, {opts.requests} requests, "
          f"{opts.runs} runs each (mean ± std):")
    summary = {tool: metrics.across_runs(runs) for tool, runs in results.items()}
    for tool, s in summary.items():
        out, req = s["output_throughput"], s["request_throughput"]
        std = f" ± {out['std']:,.0f}" if out["std"] is not None else ""
        ttft = s["mean_ttft_ms"]
        print(f"  {tool:>16}: {out['mean']:10,.0f}{std} output tok/s, {req['mean']:7.1f} req/s, "
              f"mean TTFT {ttft['mean']:.2f} ± {ttft['std'] or 0:.2f} ms")
    ratio = summary["r1 bench"]["output_throughput"]["mean"] / summary["vllm bench serve"]["output_throughput"]["mean"]
    print(f"r1/vllm: {ratio:.2f}x (goal: >= 1.00): {'met' if ratio >= 1 else 'NOT met'}")
    return 0 if ratio >= 1 else 1


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
