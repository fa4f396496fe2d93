# Issue 10 on one GPU: benchmarks/bench_vs_vllm.py at c=16 and 64 (each level primed, 3 interleaved runs) against
# bare vLLM (article flags),
# each line written to $OUT as it comes (a call cut short still returns what ran).
set -x
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 OUT  # OUT: ready_time.sh writes there too
bash benchmarks/gpu/ready_time.sh 8000 || exit 1
timeout "${BENCH_LIMIT:-330}" python3 benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8000 --model "$NAME" \
  --tokenizer "$MODEL" --concurrency 16,64 --requests 256 --runs 3 --input-len 128 --output-len 256 \
  --vllm-python python3 >"$OUT/bench-vs-vllm.txt" 2>&1
kill "$(cat /tmp/bare.pid)"
