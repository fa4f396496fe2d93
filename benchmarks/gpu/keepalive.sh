# Keep-alive on one GPU (issue 29): the GPU tier's sleep tests, then benchmarks/gpu/keepalive.py, into $OUT.
# After ../shared/gpu's setup.sh; carry .gpu/b .gpu/s .gpu/r1. The wheels moved to .gpu/b (openai_harmony,
# llguidance, apache_tvm_ffi: vLLM's engine fails to start without openai_harmony) are installed here too.
set -x
bash .gpu/s/install.sh .gpu && source benchmarks/gpu/env.sh
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/b/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.txt"
timeout 330 python3 -m pytest -m gpu tests/gpu/test_gpu_sleep.py -q -s -p no:cacheprovider >"$OUT/gpu_sleep.txt" 2>&1
tail -30 "$OUT/gpu_sleep.txt"
for home in /tmp/r1-test-home-*; do R1_HOME=$home python3 -m r1cli stop --all >/dev/null 2>&1; done
timeout 245 python3 benchmarks/gpu/keepalive.py --runs "${RUNS:-3}" --out "$OUT/keepalive.json" >"$OUT/bench.txt" 2>&1
tail -15 "$OUT/bench.txt"
python3 -m r1cli stop --all >/dev/null 2>&1; true
