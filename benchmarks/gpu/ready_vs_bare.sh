# Issue 12 on one GPU: r1's ready time against bare vLLM running r1's own command (equal flags), interleaved, by
# benchmarks/serve_ready.py (an untimed first start fills torch.compile's cache; then bare vLLM, r1 --no-warmup).
set -x
# Straight into $OUT: a call cut at its time limit still returns what was written.
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 R1_HOME=/tmp/r1-home
timeout "${READY_LIMIT:-450}" python3 benchmarks/serve_ready.py --rounds "${ROUNDS:-1}" --only-no-warmup "$MODEL" \
  --served-name "$NAME" 2>&1 | tee "$OUT/serve_ready.txt"
