"""Stage lines name their engine when vLLM runs several (data parallel).

No data-parallel vLLM log exists here (tests/data/logs and ../shared/vllm/logs hold one-engine starts), so
the 2-engine log is the real H100 start (gpu-0.25-ready-h100.log) written as vLLM writes it with
`--data-parallel-size 2`, per its source: vllm/v1/engine/utils.py CoreEngineProcManager names each engine
process `EngineCore_DP{rank}` when there are several (`"EngineCore"` alone otherwise, as in the real log;
older releases: `EngineCore_{rank}`), and vllm/utils/system_utils.py decorate_logs prefixes every line
with `({process name} pid={pid}) `; the API server logs the arguments it was given, data_parallel_size
among them. Workers of a tensor-parallel engine are `Worker_TP{rank}`, with `_DP{rank}` first only when
there are several engines (vllm/v1/executor/multiproc_executor.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from r1cli.commands.serve import stage_text
from r1cli.server.logs import LogWatcher, Stage, engine_of

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
REAL = (LOGS / "gpu-0.25-ready-h100.log").read_bytes().decode().split("\n")  # as r1 reads it: progress bars keep their \r


def data_parallel(lines: list[str], engines: int = 2, args: bool = True) -> list[str]:
    """The real one-engine start as `--data-parallel-size ENGINES` writes it (see the module's text)."""
    out = []
    for line in lines:
        if "non-default args:" in line:
            if not args:
                continue
            line = line.replace("'enable_prefix_caching': True}",
                                f"'enable_prefix_caching': True, 'data_parallel_size': {engines}}}")
        m = re.match(r"^\(EngineCore pid=(\d+)\)(.*)$", line)
        if m:
            out += [f"(EngineCore_DP{i} pid={int(m.group(1)) + i}){m.group(2)}" for i in range(engines)]
        else:
            out.append(line)
    return out


def feed(lines: list[str]) -> tuple[LogWatcher, list[Stage]]:
    watcher = LogWatcher()
    stages = [event for line in lines for event in watcher.feed(line) if isinstance(event, Stage)]
    return watcher, stages


@pytest.mark.parametrize("line, engine", [
    ("(EngineCore_DP1 pid=1049) INFO 11-25 14:50:16 [kv_cache_utils.py:2146] GPU KV cache size: 2,199,584 tokens", "1"),
    ("(EngineCore_DP0 pid=1048, ip=10.0.0.2) INFO 11-25 14:49:46 [model_runner.py:302] Model loading took 3.45 GiB", "0"),
    ("\x1b[0;36m(EngineCore_DP3 pid=7)\x1b[0;0m INFO 11-25 14:49:46 [core.py:1] x", "3"),  # coloured prefix
    ("(EngineCore_1 pid=7) INFO 11-25 14:49:46 [core.py:1] x", "1"),  # older vLLM
    ("(Worker_DP1_TP0 pid=9) INFO 11-25 14:49:46 [gpu_worker.py:1] x", "1"),
    ("(Worker_TP1 pid=9) INFO 11-25 14:49:46 [gpu_worker.py:1] x", None),  # a worker of the only engine
    ("(EngineCore pid=1048) INFO 11-25 14:49:46 [model_runner.py:302] Model loading took 3.45 GiB", None),
    ("(APIServer pid=968) INFO 11-25 14:50:45 [api_server.py:616] Starting vLLM server on http://127.0.0.1:8000", None),
    ("(ApiServer_1 pid=970) INFO 11-25 14:50:45 [launcher.py:37] Available routes are:", None),
    ("(Worker pid=4577) INFO 11-25 14:28:43 [cpu_model_runner.py:68] Starting to load model /models/demo...", None),
])
def test_engine_of(line, engine):
    assert engine_of(line) == engine


@pytest.mark.parametrize("name", ["gpu-0.25-ready-h100.log", "cpu-0.32-ready-demo.log",
                                  "gpu-0.25-fail-tp-too-large-h100.log"])
def test_one_engine_logs_name_no_engine(name):
    _, stages = feed((LOGS / name).read_bytes().decode().split("\n"))
    assert stages and all(s.engine is None for s in stages)


def test_each_engine_of_a_data_parallel_start_is_named():
    watcher, stages = feed(data_parallel(REAL))
    tagged = [(s.engine, s.label) for s in stages if s.engine is not None]
    for engine in ("0", "1"):
        assert (engine, "weights loaded: 3.45 GiB in 2.5 s") in tagged
        assert (engine, "KV cache: 2,199,584 tokens, max concurrency 537.01x") in tagged
        assert (engine, "engine ready in 58.5 s") in tagged
    assert [s.engine for s in stages if s.key in ("api_server", "app_started")] == [None, None]  # the API server's
    assert watcher.stage.key == "app_started"  # readiness is reached as before
    assert watcher.facts["engine_kv_cache_tokens"] == {"0": 2_199_584, "1": 2_199_584}


def test_without_the_arguments_line_engines_are_named_once_a_second_one_speaks():
    _, stages = feed(data_parallel(REAL, args=False))
    engine_stages = [s for s in stages if s.key in ("config", "loading", "loaded", "kv_cache", "engine_ready")]
    first_dp1 = next(i for i, s in enumerate(engine_stages) if s.engine == "1")
    assert all(s.engine is None for s in engine_stages[:first_dp1 - 1])  # engine 0 alone so far: untagged
    assert all(s.engine is not None for s in engine_stages[first_dp1:])


def test_stage_text_names_the_engine():
    assert stage_text(Stage("loaded", "weights loaded in 2.5 s", "1")) == "engine 1: weights loaded in 2.5 s"
    assert stage_text(Stage("loaded", "weights loaded in 2.5 s")) == "weights loaded in 2.5 s"


def workers_of_their_own(lines: list[str]) -> list[str]:
    """The data-parallel start as vLLM 0.25 wrote it on 2 H100s (the --gpus 2 GPU test): each engine's
    weights are loaded in a worker process named plain `Worker`, whose lines name no engine."""
    out = []
    for line in lines:
        m = re.match(r"^\(EngineCore_DP(\d) pid=(\d+)\)(.*(?:Loading weights took|Model loading took).*)$", line)
        out.append(f"(Worker pid={9000 + int(m.group(1))}){m.group(3)}" if m else line)
    return out


def test_a_plain_worker_counts_for_the_engine_that_started_it():
    lines = workers_of_their_own(data_parallel(REAL))
    engine_pids = {int(m.group(2)): m.group(1) for line in lines
                   for m in [re.match(r"^\(EngineCore_DP(\d) pid=(\d+)\)", line)] if m}
    parents = {9000 + int(engine): pid for pid, engine in engine_pids.items()}  # worker -> its engine's process

    untold = LogWatcher()
    untagged = [e for line in lines for e in untold.feed(line) if isinstance(e, Stage) and e.key == "loaded"]
    assert untagged and all(s.engine is None for s in untagged)  # what the H100 showed without the process tree

    told = LogWatcher(parent_of=parents.get)
    tagged = [e for line in lines for e in told.feed(line) if isinstance(e, Stage) and e.key == "loaded"]
    assert {s.engine for s in tagged} == {"0", "1"}
