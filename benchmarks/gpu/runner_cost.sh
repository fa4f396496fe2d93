# Issue 23 on one GPU: what vLLM's V2 model runner (0.25's default) is worth against the V1 runner
# (VLLM_USE_V2_MODEL_RUNNER=0, which honours thinking_token_budget). For each: `r1 serve /tmp/r1-1.5b` (r1's
# defaults; r1 passes its environment to vLLM), ready time (wall clock and r1's summary), burst.sh's first c=64 /
# again c=64 / c=256 (r1 bench, random 128 in / 256 out), a raw stream with per-chunk usage, then
# tests/gpu/test_gpu_budget.py against that same server (-k v2 / -k v1), then stop.
# Usage: [REPEATS=n] bash benchmarks/gpu/runner_cost.sh [v2] [v1]   (default: both, V2 first; one per call fits
# 600 s better). REPEATS: n more c=64 (256 requests) and c=256 (1024) rounds after burst.sh's three.
# Carry .gpu/b .gpu/s .gpu/r1; call 1 = ../shared/gpu's setup.sh.
set -x
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 R1_HOME=/tmp/r1-home OUT  # OUT: burst.sh writes there too
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.txt"
variants=${*:-v2 v1}
for tag in $variants; do
  case $tag in
    v2) port=8000; runner_env=() ;;
    v1) port=8002; runner_env=(VLLM_USE_V2_MODEL_RUNNER=0) ;;
    *) echo "unknown variant $tag"; continue ;;
  esac
  t0=$(date +%s.%N)
  env "${runner_env[@]}" python3 -m r1cli serve "$MODEL" --served-name "$NAME" -d --port "$port" \
    >"$OUT/serve-$tag.out" 2>"$OUT/serve-$tag.err"
  rc=$?
  python3 -c "print(f'$tag (${runner_env[*]:-default runner}): r1 serve exit $rc, ready in {$(date +%s.%N) - $t0:.1f} s wall')" \
    | tee -a "$OUT/ready.txt"
  grep -E "^r1: (ready in|plan:)|warmed up in" "$OUT/serve-$tag.err" | sed "s/^/$tag: /" | tee -a "$OUT/ready.txt"
  if [ "$rc" = 0 ]; then
    bash benchmarks/gpu/burst.sh "$port" "r1-$tag"
    for i in $(seq 1 "${REPEATS:-0}"); do
      for step in again$i:64:256 c256-$i:256:1024; do
        IFS=: read -r name c n <<<"$step"
        python3 -m r1cli bench --base-url "http://127.0.0.1:$port" --concurrency "$c" --requests "$n" --runs 1 --warmup 0 \
          --input-len 128 --output-len 256 --json >"$OUT/r1-$tag-$name.json" 2>>"$OUT/r1-$tag-bench.err"
      done
    done
    for name in first again c256 $(for i in $(seq 1 "${REPEATS:-0}"); do echo "again$i c256-$i"; done); do
      python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['levels'][0]['summary']; \
print(sys.argv[2], sys.argv[3], round(s['output_throughput']['mean']), 'tok/s, p99 TTFT', round(s['p99_ttft_ms']['mean']), 'ms')" \
        "$OUT/r1-$tag-$name.json" "$tag" "$name" 2>&1 | tee -a "$OUT/figures.txt"
    done
    # What the stream looks like: which chunks carry text, and the server's count on each.
    for budget in none 32; do
      extra=""; [ "$budget" = 32 ] && extra=', "thinking_token_budget": 32'
      curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' -d "{\"model\": \"$NAME\", \
\"messages\": [{\"role\": \"user\", \"content\": \"What is 2+3?\"}], \"max_tokens\": 80, \"stream\": true, \
\"stream_options\": {\"include_usage\": true, \"continuous_usage_stats\": true}$extra}" >"$OUT/raw-$tag-budget-$budget.txt"
    done
    R1_GPU_URL_V2=http://127.0.0.1:$port/v1 R1_GPU_URL_V1=http://127.0.0.1:$port/v1 R1_GPU_BUDGET_LOG="$OUT/budget-asks.jsonl" \
      timeout 240 python3 -m pytest -m gpu tests/gpu/test_gpu_budget.py -k "$tag" -q -p no:cacheprovider 2>&1 \
      | tail -60 | tee "$OUT/pytest-budget-$tag.txt"
  fi
  env "${runner_env[@]}" python3 -m r1cli stop --port "$port" 2>>"$OUT/serve-$tag.err"
  cp "$R1_HOME/logs/server-$port.log" "$OUT/server-$tag.log" 2>/dev/null
  grep -E "init engine|torch.compile took" "$OUT/server-$tag.log" | sed "s/^.*INFO/$tag: vLLM/" | tee -a "$OUT/ready.txt"
  nvidia-smi --query-gpu=memory.used --format=csv | sed "s/^/$tag after stop: /" | tee -a "$OUT/ready.txt"
done
true
