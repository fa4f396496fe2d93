# Issue 12's `--ray` on one 2-GPU node: tests/gpu/test_gpu_ray.py against a real Ray head. Ray's wheel
# (79 MB, not on the device) travels in two parts, each within a call's 64 MiB: a call before this one
# carries .gpu/ray1 and copies it to /tmp/parts (`mkdir -p /tmp/parts && cp .gpu/ray1/* /tmp/parts/`); this
# call carries .gpu/ray2 with .gpu/b, .gpu/s and .gpu/r1. Its other needs are on the device or in vLLM's wheels.
set -x
bash .gpu/s/install.sh .gpu
cat /tmp/parts/ray.whl.part00 .gpu/ray2/ray.whl.part01 >/tmp/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/ray-2.60.0-*.whl
source benchmarks/gpu/env.sh
# pip --target leaves an existing bin/ as it is: Ray's `ray` command, written out
mkdir -p /tmp/raybin && printf '#!/bin/sh\nexec python3 -c "import sys; from ray.scripts.scripts import main; sys.argv[0] = \\"ray\\"; sys.exit(main())" "$@"\n' >/tmp/raybin/ray
chmod +x /tmp/raybin/ray && export PATH=/tmp/raybin:$PATH
ray --version
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.txt"
timeout 500 python3 -m pytest -m gpu2 tests/gpu/test_gpu_ray.py -q -p no:cacheprovider 2>&1 | tail -120 | tee "$OUT/gpu_ray.txt"
cp -r /tmp/r1-test-home-*/logs "$OUT/" 2>/dev/null
tail -c 20000 /tmp/ray/session_latest/logs/raylet.out >"$OUT/raylet.out" 2>/dev/null; true
