# Issues 9, 10 and 12 on one GPU: default `r1 serve` (ready time, first/again/c=256 bursts), `r1 eval` beside
# `vllm bench serve` at the same concurrency, and `benchmarks/bench_vs_vllm.py` at c=16 and 64.
set -x
# Straight into $OUT: a call cut at its time limit still returns what was written (a tarball made at exit did not).
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 R1_HOME=/tmp/r1-home OUT  # OUT: burst.sh and ready_time.sh write there too
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.txt"
t0=$(date +%s.%N)
r1 serve "$MODEL" --served-name "$NAME" -d --port 8000 >"$OUT/serve.out" 2>"$OUT/serve.err"
python3 -c "print(f'r1 serve ready in {$(date +%s.%N) - $t0:.1f} s')" | tee "$OUT/ready.txt"
bash benchmarks/gpu/burst.sh 8000 r1
r1 eval .gpu/data/amc-aime.jsonl --limit 64 --runs 2 --max-tokens 1024 --concurrency 64 --json --out "$OUT/eval" \
  >"$OUT/eval.json" 2>"$OUT/eval.err"
python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat --endpoint /v1/chat/completions \
  --base-url http://127.0.0.1:8000 --model "$NAME" --tokenizer "$MODEL" --dataset-name random --random-input-len 128 \
  --random-output-len 1024 --ignore-eos --num-prompts 128 --max-concurrency 64 --disable-tqdm >"$OUT/vllm-bench-eval.txt" 2>&1
timeout 300 python3 benchmarks/bench_vs_vllm.py --base-url http://127.0.0.1:8000 --model "$NAME" --tokenizer "$MODEL" \
  --concurrency 16,64 --requests 256 --runs 3 --input-len 128 --output-len 256 --vllm-python python3 \
  --json "$OUT/bench-vs-vllm.json" >"$OUT/bench-vs-vllm.txt" 2>&1
r1 stop --port 8000 2>"$OUT/stop.err"
