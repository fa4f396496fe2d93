# Issue 12 on one GPU: default `r1 serve` (r1's API-server count), then `r1 serve --api-servers 1`, one after the
# other on the same card: ready time and first/again/c=256 bursts of each, so the API-server gain stands alone.
set -x
# Straight into $OUT: a call cut at its time limit still returns what was written.
source benchmarks/gpu/env.sh
export CUDA_VISIBLE_DEVICES=0 R1_HOME=/tmp/r1-home OUT  # OUT: burst.sh writes there too
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.txt"
for variant in default:8000: api1:8002:--api-servers=1; do
  IFS=: read -r tag port flag <<<"$variant"
  t0=$(date +%s.%N)
  r1 serve "$MODEL" --served-name "$NAME" -d --port "$port" $flag >"$OUT/serve-$tag.out" 2>"$OUT/serve-$tag.err"
  python3 -c "print(f'r1 serve $flag ready in {$(date +%s.%N) - $t0:.1f} s')" | tee -a "$OUT/ready.txt"
  bash benchmarks/gpu/burst.sh "$port" "r1-$tag"
  r1 stop --port "$port" 2>>"$OUT/serve-$tag.err"
done
