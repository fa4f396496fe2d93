"""Server records: stale pids, reused pids, corrupt files, the per-port lock, file modes."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import free_port
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


# --- records are data from a file anyone may have edited (issue 13) -----------------------------------

GOOD = {"pid": 4242, "create_time": 1.5, "port": 8504, "host": "127.0.0.1", "url": "http://127.0.0.1:8504/v1",
        "model": "m", "served_name": "m", "log_path": "/nonexistent.log", "started_at": 2}


@pytest.mark.parametrize("change, reason", [
    ({"pid": "abc"}, "'pid' should be an integer, not \"abc\""),
    ({"pid": True}, "'pid' should be an integer, not true"),
    ({"pid": -1}, "'pid' should be a process id, not -1"),
    ({"port": "8504"}, "'port' should be an integer, not \"8504\""),
    ({"port": 70000}, "'port' should be a port number, not 70000"),
    ({"create_time": None}, "'create_time' should be a number, not null"),
    ({"argv": "vllm serve"}, "'argv' should be a list, not \"vllm serve\""),
    ({"argv": ["vllm", 3]}, "'argv' should be a list of strings"),
    ({"ready_at": "soon"}, "'ready_at' should be a number or null, not \"soon\""),
    ({"host": None}, "'host' should be a string, not null"),
    ({"url": None, "model": 1}, "'url' should be a string, not null"),
])
def test_a_record_with_wrong_types_is_named_and_skipped(change, reason):
    state.save(record(os.getpid(), port=8501))
    (state.servers_dir() / "8504.json").write_text(json.dumps({**GOOD, **change}))
    records, bad = state.load_all()
    assert [r.port for r in records] == [8501]
    assert bad == [state.BadRecord(state.servers_dir() / "8504.json", reason)]
    with pytest.raises(R1Error, match=re.escape(f"the server record {state.servers_dir() / '8504.json'} is unreadable: {reason}")):
        state.load(8504)


@pytest.mark.parametrize("text, reason", [
    ("[1, 2]", "not a JSON object but list"),
    ('{"pid": 1}', "missing 'create_time', 'port', 'host', 'url', 'model', 'served_name', 'log_path', 'started_at'"),
    (json.dumps({**GOOD, "port": 8600}), "it names port 8600, its file name port 8504"),
])
def test_records_that_are_not_records(text, reason):
    (state.servers_dir() / "8504.json").write_text(text)
    assert state.load_all() == ([], [state.BadRecord(state.servers_dir() / "8504.json", reason)])


def test_a_record_of_a_newer_r1_with_more_fields_is_readable():
    (state.servers_dir() / "8504.json").write_text(json.dumps({**GOOD, "gpus": [0, 1], "plan": {"dp": 2}}))
    [rec], bad = state.load_all()
    assert bad == [] and rec.port == 8504 and rec.pgid is None and rec.server_id is None


@pytest.mark.parametrize("command", [["status", "--json"], ["stop", "--all"], ["ask", "What is 2+3?"], ["logs"]])
def test_commands_name_a_bad_record_and_go_on(command, tmp_path):
    """The real CLI in a process: `{"pid": "abc"}` once made these exit 1 with "unexpected TypeError"."""
    from conftest import run_r1

    home = Path(os.environ["R1_HOME"])
    bad = state.servers_dir() / "8504.json"
    bad.write_text(json.dumps({**GOOD, "pid": "abc"}))
    port = free_port()  # ask: where no server answers, so that it ends at once
    proc = run_r1(*command, env={"R1_HOME": str(home), "R1_BASE_URL": f"http://127.0.0.1:{port}/v1"}
                  if command[0] == "ask" else {"R1_HOME": str(home)}, timeout=60)
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # `stop --all` with no (readable) server: nothing to stop is its goal met, exit 0 (issue 24)
    assert proc.returncode == (0 if command[0] == "stop" else 3), proc.stderr
    if command[0] == "status":
        assert json.loads(proc.stdout)["notes"] == [
            f"skipped {bad}: not a server record ('pid' should be an integer, not \"abc\"); remove it by hand"]
    if command[0] == "stop":
        assert proc.stderr.splitlines()[0] == (f"r1: skipped {bad}: not a server record ('pid' should be an "
                                               "integer, not \"abc\")")
    assert bad.exists()  # reported, never deleted: it is the user's to look at


# --- a state directory open to others (issue 13) -----------------------------------------------------


def test_a_state_directory_open_to_others_is_made_private_with_a_note(tmp_path):
    from conftest import run_r1

    home = tmp_path / "shared-home"
    home.mkdir()
    home.chmod(0o755)
    proc = run_r1("stop", env={"R1_HOME": str(home)})
    assert proc.stderr.splitlines()[0] == f"r1: note: {home} was open to other users (mode 0755); made it 0700"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    again = run_r1("stop", env={"R1_HOME": str(home)})
    assert "was open to other users" not in again.stderr  # said once: it is fixed


def test_a_state_directory_r1_cannot_chmod_is_warned_about(tmp_path, capsys, monkeypatch):
    from r1cli import config

    home = tmp_path / "theirs"
    home.mkdir()
    home.chmod(0o755)
    monkeypatch.setenv("R1_HOME", str(home))

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")  # as chmod of a directory owned by another user

    monkeypatch.setattr(os, "chmod", refuse)
    config.state_dir()
    assert capsys.readouterr().err == (f"r1: warning: {home} is open to other users (mode 0755) and r1 cannot "
                                       f"change that: chmod 700 {home}\n")


def test_chat_history_is_created_private():
    from r1cli.commands import chat

    path = chat.history_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_port_lock_holds_across_state_directories(tmp_path):
    """Two R1_HOMEs, one port: the second `r1 serve` is refused while the first one starts."""
    code = ("import sys; from r1cli.server import state\n"
            "try:\n  with state.port_lock(8602): print('got')\n"
            "except Exception as e: print('refused')")
    other = tmp_path / "other-home"
    other.mkdir(mode=0o700)
    with state.port_lock(8602):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "R1_HOME": str(other)}).stdout
    assert out.strip() == "refused"
