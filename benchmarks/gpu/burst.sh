# The issue-12 figures for one server at $1 (port): a first c=64 burst, the same again, then c=256.
# r1 bench with vLLM's random shape (128 in, 256 out, ignore_eos), one run each, no warm-up of its own.
port=$1; tag=$2
for step in first:64:256 again:64:256 c256:256:1024; do
  IFS=: read -r name c n <<<"$step"
  python3 -m r1cli bench --base-url "http://127.0.0.1:$port" --concurrency "$c" --requests "$n" --runs 1 --warmup 0 \
    --input-len 128 --output-len 256 --json >"$OUT/$tag-$name.json" 2>>"$OUT/$tag-bench.err" || echo "bench $name failed"
done
