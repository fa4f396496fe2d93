# The GPU tier on two GPUs: --tp 2 and --gpus 2 (replicas named, metrics summed, stop frees both).
set -x
# Straight into $OUT: a call cut at its time limit still returns what was written (a tarball made at exit did not).
source benchmarks/gpu/env.sh
export R1_HOME=/tmp/r1-home2
timeout 560 python3 -m pytest -m gpu2 tests/gpu/test_gpu_two.py -q -p no:cacheprovider 2>&1 | tail -60 | tee "$OUT/gpu_two.txt"
