set -x
bash .gpu/s/install.sh .gpu && source benchmarks/gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.txt"
timeout 540 python3 -m pytest -m gpu tests/gpu/test_gpu_one.py -q -p no:cacheprovider 2>&1 | tail -80 | tee "$OUT/gpu_one.txt"
cp -r "${R1_HOME:-/tmp}"/r1-test-home-*/logs "$OUT/" 2>/dev/null; true
