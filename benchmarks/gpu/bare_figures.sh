# Issues 10 and 12 on one GPU: bare vLLM with the article's flags (ready time, first/again/c=256 bursts), then on
# that server bench_vs_vllm.py at c=64 with 5 runs (bench_check.sh's 3 runs there spread 13%).
set -x
# Straight into $OUT: a call cut at its time limit still returns what was written.
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 OUT  # OUT: burst.sh and ready_time.sh write there too
bash benchmarks/gpu/ready_time.sh 8001 && bash benchmarks/gpu/burst.sh 8001 bare
timeout "${BENCH_LIMIT:-240}" python3 benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8001 --model "$NAME" \
  --tokenizer "$MODEL" --concurrency 64 --requests 256 --runs 5 --input-len 128 --output-len 256 \
  --vllm-python python3 --json "$OUT/bench-vs-vllm-c64.json" >"$OUT/bench-vs-vllm-c64.txt" 2>&1
kill "$(cat /tmp/bare.pid)"
