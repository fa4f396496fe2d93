# Issue 10 on one GPU, quickly: benchmarks/bench_vs_vllm.py at c=16 and 64 against bare vLLM (article flags),
# each line written to $OUT as it comes (a call cut short still returns what ran).
set -x
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0
python3 -m vllm.entrypoints.openai.api_server --model "$MODEL" --served-model-name "$NAME" --port 8000 \
  --gpu-memory-utilization 0.8 --max-model-len 4096 --enable-prefix-caching --reasoning-parser deepseek_r1 \
  >"$OUT/vllm.log" 2>&1 &
t0=$SECONDS; until curl -sf http://127.0.0.1:8000/health >/dev/null; do sleep 0.5; done; echo "ready in $((SECONDS - t0)) s"
timeout "${BENCH_LIMIT:-120}" python3 benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8000 --model "$NAME" \
  --tokenizer "$MODEL" --concurrency 16,64 --requests 256 --runs 2 --input-len 128 --output-len 256 \
  --vllm-python python3 >"$OUT/bench-vs-vllm.txt" 2>&1
