# Bare vLLM with the article's flags on the GPUs visible: seconds from spawn to GET /health = 200. Leaves it running
# (pid in /tmp/bare.pid); $1 = port, rest = extra vLLM flags.
port=$1; shift
t0=$(date +%s.%N)
python3 -m vllm.entrypoints.openai.api_server --model "$MODEL" --served-model-name "$NAME" --port "$port" \
  --gpu-memory-utilization 0.8 --max-model-len 4096 --enable-prefix-caching --reasoning-parser deepseek_r1 "$@" \
  >"$OUT/bare-$port.log" 2>&1 &
echo $! >/tmp/bare.pid
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.2; kill -0 "$(cat /tmp/bare.pid)" || exit 1; done
python3 -c "print(f'bare vLLM ready in {$(date +%s.%N) - $t0:.1f} s')" | tee -a "$OUT/ready.txt"
