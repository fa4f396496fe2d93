"""`r1 serve --ray`: the workers Ray starts outside the server's process tree, found through the server's log,
and a stage display that never goes back while Ray forwards each worker's lines in batches.

The log is real: `r1 serve /tmp/r1-1.5b --tp 2 --ray` on 2 H100s with a Ray 2.60 head (vLLM 0.25,
tests/gpu/test_gpu_ray.py), where NVML showed the two `ray::RayWorkerProc.run` processes, pids 4185 and
4184, as children of the raylet."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1cli.server import process, state
from r1cli.server.logs import STAGE_KEYS, LogWatcher, Stage, ray_worker_pids

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
RAY_LOG = LOGS / "gpu-0.25-ready-ray-tp2-h100.log"


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "replace").split("\n")


def test_the_log_names_both_ray_workers_first_seen_first():
    assert ray_worker_pids(_lines(RAY_LOG)) == [4185, 4184]


@pytest.mark.parametrize("name", ["gpu-0.25-ready-h100.log", "cpu-0.32-ready-demo.log"])
def test_a_log_without_ray_names_no_worker(name: str):
    assert ray_worker_pids(_lines(LOGS / name)) == []


def test_a_worker_on_another_node_is_not_taken_for_one_here():
    # Ray adds the node's address to a remote worker's prefix: its pid is another machine's.
    line = next(x for x in _lines(RAY_LOG) if "(RayWorkerProc pid=4184)" in x)
    assert ray_worker_pids([line.replace("(RayWorkerProc pid=4184)", "(RayWorkerProc pid=4184, ip=10.0.0.2)")]) == []


@pytest.mark.parametrize(("argv", "ray"), [
    (["vllm", "serve", "m", "--tensor-parallel-size", "2", "--distributed-executor-backend", "ray"], True),
    (["vllm", "serve", "m", "--distributed-executor-backend=ray"], True),
    (["vllm", "serve", "m", "--distributed-executor-backend", "mp"], False),
    (["vllm", "serve", "m", "--served-model-name", "ray"], False),
    ([], False),
])
def test_uses_ray(argv: list[str], ray: bool):
    assert process.uses_ray(argv) is ray


def test_the_stages_of_a_ray_start_never_go_back():
    watcher = LogWatcher()
    shown = [e.key for line in _lines(RAY_LOG) for e in watcher.feed(line) if isinstance(e, Stage)]
    ranks = [STAGE_KEYS.index(key) for key in shown]
    assert ranks == sorted(ranks), shown  # the second worker's "loading weights" came after "compiling"
    assert shown[-1] == "app_started" and watcher.fatal is None
    assert {"loading", "loaded", "compiling", "kv_cache", "graphs", "engine_ready"} <= set(shown)


def _named(name: bytes) -> subprocess.Popen:
    """A process whose name is NAME (prctl PR_SET_NAME, as Ray's setproctitle names its workers)."""
    code = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(15, ctypes.c_char_p(sys.argv[1].encode()), 0, 0, 0); "
            "print(flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, name.decode()], stdout=subprocess.PIPE)
    proc.stdout.readline()  # named by now
    return proc


def test_status_and_stop_find_the_workers_the_log_names_and_nothing_else(tmp_path: Path):
    """A stand-in for the raylet's workers: no Ray here (CI has none), so processes named as Ray names them;
    tests/gpu/test_gpu_ray.py checks the real ones on a GPU node."""
    assert ctypes.CDLL(None).prctl  # Linux
    before = _named(b"ray::RayWorkerP")  # started before the server: a pid reused by no worker of it
    time.sleep(2.0)  # past ray_workers' 1 s of slack for the clocks
    started = time.time()
    worker, stranger = _named(b"ray::RayWorkerP"), _named(b"python3")
    try:
        real = RAY_LOG.read_text(encoding="utf-8", errors="replace")
        log = tmp_path / "server.log"
        log.write_text(real.replace("pid=4185)", f"pid={worker.pid})").replace("pid=4184)", f"pid={stranger.pid})")
                       + f"(EngineCore pid=1) (RayWorkerProc pid={before.pid}) INFO late line\n")
        record = state.ServerRecord(pid=1, create_time=0.0, port=8000, host="127.0.0.1", url="http://127.0.0.1:8000/v1",
                                    model="m", served_name="m", log_path=str(log), started_at=started,
                                    argv=["vllm", "serve", "m", "--distributed-executor-backend", "ray"])
        assert [p.pid for p in process.ray_workers(record)] == [worker.pid]
        record.argv = ["vllm", "serve", "m"]  # the same log, a server without --ray
        assert process.ray_workers(record) == []
        record.argv, record.log_path = ["--distributed-executor-backend", "ray"], str(tmp_path / "gone.log")
        assert process.ray_workers(record) == []
    finally:
        for proc in (before, worker, stranger):
            proc.kill()
            proc.wait(timeout=30)
