"""Server records: stale pids, reused pids, corrupt files, the per-port lock, file modes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import psutil
import pytest

from r1cli.cli import run
from r1cli.errors import R1Error, UsageError
from r1cli.server import state


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("R1_HOME", str(tmp_path / "home"))


def record(pid: int, port: int = 8500, create_time: float | None = None) -> state.ServerRecord:
    if create_time is None:
        create_time = psutil.Process(pid).create_time()
    return state.ServerRecord(pid=pid, create_time=create_time, port=port, host="127.0.0.1",
                              url=f"http://127.0.0.1:{port}/v1", model="m", served_name="m",
                              log_path="/nonexistent.log", started_at=time.time())


def test_round_trip_and_private_modes():
    rec = record(os.getpid())
    state.save(rec)
    assert state.load(8500) == rec
    path = state.servers_dir() / "8500.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.servers_dir().parent.stat().st_mode) == 0o700


def test_live_process_is_alive():
    assert state.is_alive(record(os.getpid()))


def test_stale_pid_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ct = psutil.Process(child.pid).create_time()
    child.wait()
    assert not state.is_alive(record(child.pid, create_time=ct))


def test_reused_pid_is_not_ours():
    # Same pid, other create time: a process that took over the pid after ours died.
    assert not state.is_alive(record(os.getpid(), create_time=psutil.Process().create_time() - 3600))


def test_corrupt_record_is_reported_not_fatal():
    state.save(record(os.getpid(), port=8501))
    (state.servers_dir() / "8502.json").write_text("{not json")
    records, bad = state.load_all()
    assert [r.port for r in records] == [8501]
    assert [(b.path.name, b.reason) for b in bad] == [("8502.json", "not JSON (Expecting property name enclosed in "
                                                                    "double quotes, line 1 column 2)")]
    with pytest.raises(R1Error, match="unreadable"):
        state.load(8502)


def test_second_starter_on_a_port_is_refused():
    with state.port_lock(8600):
        with pytest.raises(UsageError, match="another `r1 serve` is starting a server on port 8600"):
            with state.port_lock(8600):
                pass
    with state.port_lock(8600):  # released when the first one is done
        pass


def test_lock_is_held_across_processes():
    code = ("import sys; from r1cli.server import state\n"
            "try:\n  with state.port_lock(8601): print('got')\n"
            "except Exception as e: print('refused')")
    with state.port_lock(8601):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ).stdout
    assert out.strip() == "refused"


def test_stop_with_a_stale_record_cleans_it_up(capsys):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ct = psutil.Process(child.pid).create_time()
    child.wait()
    state.save(record(child.pid, port=8502, create_time=ct))
    assert run(["stop", "--port", "8502"]) == 0
    assert "had already exited" in capsys.readouterr().err
    assert state.load(8502) is None


def test_stop_with_nothing_running_exits_3(capsys):
    assert run(["stop"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "r1: error: no r1 server is running"


def test_logs_without_a_server_exits_3(capsys):
    assert run(["logs"]) == 3
    assert "no r1 server is recorded" in capsys.readouterr().err


def test_logs_shows_the_last_lines(tmp_path, capsys):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    rec = record(os.getpid(), port=8503)
    rec.log_path = str(log)
    state.save(rec)
    assert run(["logs", "-n", "3"]) == 0
    assert capsys.readouterr().out == "line 97\nline 98\nline 99\n"
