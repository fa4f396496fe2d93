# Source on the lent GPU machine, from the repository root, after ../shared/gpu's setup.sh / install.sh:
# r1's own dependencies (wheels carried in .gpu/r1) go beside vLLM's in /tmp/site, r1 runs from this tree.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/r1/*.whl 2>/dev/null \
  || echo "r1 wheels: already in /tmp/site"
source .gpu/s/env.sh
export PYTHONPATH="$PWD:$PYTHONPATH"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
r1() { python3 -m r1cli "$@"; }
export MODEL=/tmp/r1-1.5b
export NAME=DeepSeek-R1-Distill-Qwen-1.5B  # the served name, for r1 and bare vLLM alike
