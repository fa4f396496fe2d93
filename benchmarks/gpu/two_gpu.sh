set -x
REAL_OUT=$OUT; export OUT=/tmp/o-$$; mkdir -p $OUT; trap 'tar czf $REAL_OUT/results.tgz -C $OUT .' EXIT
source benchmarks/gpu/env.sh
export R1_HOME=/tmp/r1-home2
timeout 420 python3 -m pytest -m gpu2 tests/gpu/test_gpu_two.py -q -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/gpu_two.txt"
t0=$(date +%s.%N)
r1 serve "$MODEL" --served-name "$NAME" -d --gpus 2 --port 8000 >"$OUT/serve2.out" 2>"$OUT/serve2.err"
python3 -c "print(f'r1 serve --gpus 2 ready in {$(date +%s.%N) - $t0:.1f} s')" | tee "$OUT/ready.txt"
bash benchmarks/gpu/burst.sh 8000 r1x2
r1 status --json >"$OUT/status2.json"; r1 stop --port 8000 2>"$OUT/stop2.err"
bash benchmarks/gpu/ready_time.sh 8001 && bash benchmarks/gpu/burst.sh 8001 bare1of2
kill "$(cat /tmp/bare.pid)"
