# Issue 12 on one GPU: the API-server gain alone (r1 with one API server at c=256, against one_gpu_figures.sh's
# default r1), then bare vLLM with the article's flags (ready time, first/again/c=256 bursts), and on that server
# bench_vs_vllm.py at c=64 with 5 runs (bench_check.sh's 3 runs there spread 13%).
set -x
# Straight into $OUT: a call cut at its time limit still returns what was written.
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 R1_HOME=/tmp/r1-home OUT  # OUT: burst.sh and ready_time.sh write there too
r1 serve "$MODEL" --served-name "$NAME" -d --port 8002 --api-servers 1 >"$OUT/serve-api1.out" 2>"$OUT/serve-api1.err"
python3 -m r1cli bench --base-url http://127.0.0.1:8002 --concurrency 256 --requests 1024 --runs 1 --warmup 0 \
  --input-len 128 --output-len 256 --json >"$OUT/r1-api1-c256.json" 2>"$OUT/r1-api1-bench.err"
r1 stop --port 8002 2>>"$OUT/serve-api1.err"
bash benchmarks/gpu/ready_time.sh 8001 && bash benchmarks/gpu/burst.sh 8001 bare
timeout "${BENCH_LIMIT:-200}" python3 benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8001 --model "$NAME" \
  --tokenizer "$MODEL" --concurrency 64 --requests 256 --runs 5 --input-len 128 --output-len 256 \
  --vllm-python python3 >"$OUT/bench-vs-vllm-c64.txt" 2>&1
kill "$(cat /tmp/bare.pid)"
