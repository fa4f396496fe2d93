#!/usr/bin/env bash
# GPU verification on the lent H100 (see ../shared/gpu/README.md for the vLLM payload):
#   bash .gpu/s/install.sh .gpu && source .gpu/s/env.sh && bash tools/gpu_check.sh
# Carries r1's wheel and the few pure-Python wheels the device image lacks in .gpu/w.
# Writes everything under $OUT: NVML vs nvidia-smi while a CUDA process holds memory, doctor,
# two real start failures (GPU memory taken, --tp 2 on one GPU), a real start, ask, stop.
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 -m pip install -q --no-index --no-deps --target /tmp/r1site .gpu/w/*.whl
export PYTHONPATH=/tmp/r1site:${PYTHONPATH:-} R1_HOME=/tmp/r1home NO_COLOR=1
r1() { python3 -m r1cli "$@"; }
MODEL=/tmp/r1-1.5b
NAME=DeepSeek-R1-Distill-Qwen-1.5B
smi() { nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader; }
step() { echo "=== $* ($(date +%T))"; }

step "1. a CUDA process holds 20 GiB"
python3 -c "import torch,time; x=torch.empty(20*2**30,dtype=torch.uint8,device='cuda'); x.fill_(1); torch.cuda.synchronize(); open('/tmp/hog.ready','w').close(); time.sleep(900)" &
HOG=$!
for _ in $(seq 60); do [ -f /tmp/hog.ready ] && break; sleep 1; done
echo "nvidia-smi before: $(smi)"
r1 status --json >"$OUT/status-hog.json"; echo "status rc=$?"
echo "nvidia-smi after:  $(smi)"
python3 -c "import json; d=json.load(open('$OUT/status-hog.json')); g=d['gpus'][0]; print('r1 status: used', g['memory_used_mib'], 'MiB of', g['memory_total_mib'], [(p['pid'], p['name'], p['used_mib']) for p in g['processes']])"
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader
r1 doctor >"$OUT/doctor.txt"; echo "doctor rc=$?"; cat "$OUT/doctor.txt"
r1 doctor 1.5b --quant awq_marlin --json >"$OUT/doctor-awq.json"; echo "doctor awq rc=$?"

step "2. serve while 20 GiB is taken (--gpu-mem 0.8 cannot fit)"
r1 serve $MODEL --served-name $NAME --port 8001 -d --timeout 300 --log-file "$OUT/gpu-fail-memory-taken.log"; echo "serve rc=$?"

step "3. --tp 2 on a one-GPU machine"
r1 serve $MODEL --served-name $NAME --port 8002 --tp 2 -d --timeout 300 --log-file "$OUT/gpu-fail-tp2.log"; echo "serve rc=$?"
kill $HOG; wait $HOG 2>/dev/null
echo "nvidia-smi idle: $(smi)"

step "4. a real start"
t0=$(date +%s.%N)
r1 serve $MODEL --served-name $NAME -d --timeout 400 --log-file "$OUT/gpu-ready.log"; echo "serve rc=$? in $(echo "$(date +%s.%N) - $t0" | bc) s"
r1 status --json >"$OUT/status-serving.json"; echo "status rc=$?"
echo "nvidia-smi serving: $(smi)"
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader
python3 -c "import json; d=json.load(open('$OUT/status-serving.json')); g=d['gpus'][0]; s=d['servers'][0]; print('r1 status: used', g['memory_used_mib'], [(p['pid'], p['name'], p['used_mib'], p['server_port']) for p in g['processes']]); print('server', s['state'], s['models'], s['metrics'])"
r1 ask "What is 2+3?" --max-tokens 64 --json >"$OUT/ask.json"; echo "ask rc=$?"; head -c 600 "$OUT/ask.json"; echo
r1 status >"$OUT/status-serving.txt"; cat "$OUT/status-serving.txt"
r1 stop; echo "stop rc=$?"
sleep 1
echo "nvidia-smi after stop: $(smi)"
r1 status --json >"$OUT/status-after.json"; echo "status after rc=$?"
pgrep -af vllm || echo "no vllm process left"
