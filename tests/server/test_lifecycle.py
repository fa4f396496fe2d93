"""The faults a supervisor must survive (issue 13): a killed API server, a killed or hung-up r1, a port
taken by someone else's server while vLLM loads.

They use small real process trees (a session leader and a child renamed as vLLM renames EngineCore), which
is enough for what r1 decides about processes, and fast. What needs a real vLLM (a second start from
another state directory while one loads, no argv carrying the key, a SIGHUP stopping the whole tree) is
a stage of tests/hub/test_owned_server.py's one server. Each test stops everything it started in
`finally`, whatever happened.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, STOP_WAIT_S, free_port, reap, run_r1

from r1cli.server import cmdline, process, state


def wait_for(condition, timeout: float, what: str, every: float = 0.2):
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in running(procs):
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=STOP_WAIT_S)


def make_home(tmp_path: Path, name: str = "home") -> dict[str, str]:
    path = tmp_path / name
    path.mkdir(mode=0o700)
    return {"R1_HOME": str(path)}


# --- small real trees ------------------------------------------------------------------------------------

# A leader that starts a child and waits; the child renames itself as vLLM's EngineCore does
# (setproctitle, which also wipes what /proc shows of its environment) and waits too.
LEADER = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import setproctitle, time; "
                              "setproctitle.setproctitle('VLLM::EngineCore'); print('child up', flush=True); "
                              "time.sleep(600)"])
    time.sleep(600)
""")


def spawn_fake(code: str, port: int, ready: str, started: list) -> state.ServerRecord:
    """CODE started by process.spawn as r1 starts vLLM (its own session, the server id in the environment,
    stdout in the log; appended to STARTED for the cleanup), its record saved, once its log says READY."""
    log = state.logs_dir() / f"server-{port}.log"
    proc = process.spawn(cmdline.Launch([sys.executable, "-c", code], {}), log, server_id="f00d")
    started.append(proc)
    record = state.ServerRecord(
        pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), port=port, host="127.0.0.1",
        url=f"http://127.0.0.1:{port}/v1", model="m", served_name="m", log_path=str(log),
        started_at=time.time(), backend="cpu", pgid=proc.pid, server_id="f00d")
    state.save(record)
    wait_for(lambda: ready in log.read_text(), 30, f"{ready!r} from the fake server")
    return record


@pytest.fixture
def fake_server(tmp_path):
    """A record and a real tree started by process.spawn as r1 starts vLLM (its own session, the
    server id in the environment, stdout in the log), in a state directory of its own."""
    home = make_home(tmp_path)
    old = os.environ.get("R1_HOME")
    os.environ["R1_HOME"] = home["R1_HOME"]
    started = []
    try:
        def start(port: int | None = None) -> state.ServerRecord:
            return spawn_fake(LEADER, port or free_port(), "child up", started)

        yield start, home
    finally:
        for proc in started:
            kill_all([psutil.Process(p.pid) for p in _session(proc.pid)])
            reap(proc)
        if old is None:
            os.environ.pop("R1_HOME", None)
        else:
            os.environ["R1_HOME"] = old


def _session(sid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                out.append(proc)
        except OSError:
            pass
    return out


def test_a_killed_api_server_leaves_an_orphan_that_status_reports_and_stop_ends(fake_server):
    start, home = fake_server
    record = start()
    tree = process.members(record)
    assert sorted(p.name() for p in tree) == ["VLLM::EngineCore", "python"]
    engine = next(p for p in tree if p.name() == "VLLM::EngineCore")
    assert engine.environ() == {}  # setproctitle wiped it: the log is what marks this one as the server's
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: not state.is_alive(record), 60, "the leader's death")

    proc = run_r1("status", "--json", env=home, timeout=60)
    assert proc.returncode == 3
    [s] = [s for s in json.loads(proc.stdout)["servers"] if s["port"] == record.port]
    assert s["state"] == "orphaned" and s["orphans"] == [engine.pid], s
    assert s["error"] == (f"its API server (pid {record.pid}) is gone, but 1 process of its tree runs on "
                          f"(pids {engine.pid}); `r1 stop --port {record.port}` stops them")
    assert state.load(record.port) is not None  # kept: r1 still owns what runs

    proc = run_r1("stop", "--port", str(record.port), env=home, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"the API server on port {record.port} was gone; stopped the 1 process it "
                                  "left (VLLM::EngineCore)")
    assert running([engine]) == []
    assert state.load(record.port) is None


def test_a_reused_pid_and_process_group_are_never_taken_for_the_server(fake_server, tmp_path):
    start, _ = fake_server
    record = start()
    # Someone else's session leader, with the record's pid as if it had been reused (same pid, later
    # start) and its own child: same pgid/sid shape as the server, but none of its marks.
    stranger = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                 "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                                 "time.sleep(600)"], start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: psutil.Process(stranger.pid).children(), 30, "the stranger's child")
        fake = state.ServerRecord(**{**record.__dict__, "pid": stranger.pid, "pgid": stranger.pid,
                                     "create_time": psutil.Process(stranger.pid).create_time() - 100})
        assert process.members(fake) == []
        assert process.stop_server(fake, timeout=2).pids == []
        assert psutil.Process(stranger.pid).is_running()
    finally:
        kill_all(_session(stranger.pid))
        stranger.wait(timeout=STOP_WAIT_S)


class _AnyOk(http.server.BaseHTTPRequestHandler):
    """Someone else's server: 200 to everything, as a second vLLM or any web app would."""

    def do_GET(self):
        body = (json.dumps({"object": "list", "data": [{"id": "m", "root": "m", "max_model_len": 4096}]})
                if self.path == "/v1/models" else "{}").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_http(port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _AnyOk)  # SO_REUSEADDR, as uvicorn binds
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_status_does_not_call_a_port_answered_by_someone_else_ready(fake_server):
    start, home = fake_server
    port = free_port()
    record = start(port)
    other = serve_http(port)  # the port answers, but no process of the server's tree listens on it
    try:
        proc = run_r1("status", "--json", env=home, timeout=60)
    finally:
        other.shutdown()
        other.server_close()
    [s] = [s for s in json.loads(proc.stdout)["servers"] if s["port"] == port]
    assert s["state"] == "unhealthy", s
    assert s["error"].startswith(f"port {port} is answered by another program (pid {os.getpid()} ")
    assert s["error"].endswith(f"not by this server (pid {record.pid})")
    assert proc.returncode == 3


def test_a_port_bound_by_a_loading_server_is_taken(tmp_path):
    """vLLM binds its port with SO_REUSEADDR as it starts and listens only when loaded: until then a
    bind as uvicorn does it succeeds, so r1 also binds without SO_REUSEADDR (checked at the OS level,
    whatever the state directory)."""
    port = free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # bound, not listening: how a loading vLLM holds it
        assert process.port_holder("127.0.0.1", port) == "bound by a server that is still starting"
        proc = run_r1("serve", "demo", "--port", str(port), "-d", env=make_home(tmp_path), timeout=60)
    assert proc.returncode == 5
    assert proc.stderr.startswith(f"r1: error: port {port} on 127.0.0.1 is already in use (bound by a server "
                                  "that is still starting)")
    assert process.port_holder("127.0.0.1", port) is None


def test_kill9_of_the_r1_holding_a_watchdog_stops_the_server_it_was_starting(fake_server):
    """`kill -9` of a foreground r1 (or an OOM kill): no cleanup runs in r1, and its watchdog (a process of
    its own, holding the read end of a pipe whose write end r1 held) stops the server's whole tree and
    removes its record. The r1 here is a process that starts the watchdog as serve does, then is killed."""
    start, home = fake_server
    record = start()
    tree = process.members(record)
    assert len(tree) == 2
    log = Path(record.log_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        from r1cli.server import state, watchdog
        record = state.load({record.port})
        with open({str(log)!r}, "a") as log:
            watchdog.Watchdog(record, log.fileno())
        print("watching", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, **home}, cwd=ROOT)
    try:
        assert holder.stdout.readline() == "watching\n"
        holder.kill()
        holder.wait(timeout=STOP_WAIT_S)
        _, left = psutil.wait_procs(tree, timeout=STOP_WAIT_S)
        assert running(left) == [], [p.name() for p in left]
        wait_for(lambda: "r1 watchdog: " in log.read_text() and "stopped 2 processes" in log.read_text(), 60,
                 "the watchdog's last line")
        assert f"r1 is gone and left its server on port {record.port} running" in log.read_text()
        assert state.load(record.port) is None
    finally:
        reap(holder)


# A server slow to stop, as vLLM is (its engine and workers shut down in turn): SIGTERM takes 1.5 s to end it.
SLOW_TO_STOP = textwrap.dedent("""
    import signal, sys, time
    def bye(*_):
        time.sleep(1.5)
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    print("up", flush=True)
    time.sleep(600)
""")


class _StreamBeside:
    """stderr that keeps, with each line, whether a process (the server being stopped) still ran as it was
    written: an order of events, not a stopwatch."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.writes: list[tuple[bool, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((self.proc.poll() is None, text))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def lines(self) -> list[tuple[bool, str]]:
        out, buf, alive = [], "", True
        for running_then, text in self.writes:
            for piece in text.splitlines(keepends=True):
                alive = alive if buf else running_then
                buf += piece
                if buf.endswith("\n"):
                    out.append((alive, buf.strip()))
                    buf = ""
        return out


def test_ctrl_c_of_a_foreground_serve_says_at_once_that_it_stops_vllm(tmp_path, monkeypatch):
    """Issue 32, item 8: Ctrl-C on a foreground `r1 serve` once it serves. The stop takes seconds (vLLM's, 1.5 s
    here): r1 says at once that it is stopping (the pid), then what it stopped. The code path is serve's own
    (commands/serve.start), on a real tree; only vLLM's start is stood in for, and the Ctrl-C arrives while it
    waits on the server, as the user's does."""
    import io
    from types import SimpleNamespace

    from r1cli.commands import serve as serve_command
    from r1cli.console import Environment
    from r1cli.server import serve as server_serve

    monkeypatch.setenv("R1_HOME", make_home(tmp_path)["R1_HOME"])
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    port = free_port()
    log = state.logs_dir() / f"server-{port}.log"
    started_procs: list = []
    try:
        record = spawn_fake(SLOW_TO_STOP, port, "up", started_procs)
        proc = started_procs[0]

        class CtrlCWhileServing:
            def wait(self):
                raise KeyboardInterrupt

        started = SimpleNamespace(proc=CtrlCWhileServing(), watcher=SimpleNamespace(facts={}), seconds=1.0)
        monkeypatch.setattr(server_serve, "preflight", lambda opts, **kw: opts)
        monkeypatch.setattr(server_serve, "start",
                            lambda opts, **kw: SimpleNamespace(record=record, started=started, warmup=None, watchdog=None))
        err = _StreamBeside(proc)
        env = Environment(_stdin=io.StringIO(), _stdout=io.StringIO(), _stderr=err)
        with pytest.raises(SystemExit) as stopped:
            serve_command.start(env, cmdline.ServeOptions(model="m", port=port), timeout=60, log_file=log,
                                detach=False, json_out=False)
        assert stopped.value.code == 130
        lines = err.lines()
        assert (True, "r1: serving; press Ctrl-C to stop") in lines, lines
        # said while the server still ran (it takes 1.5 s to stop): at once, not once the stop was done
        assert lines[-2] == (True, f"r1: stopping vLLM (pid {proc.pid})..."), lines
        assert lines[-1] == (False, "r1: stopped m (1 process)"), lines
        assert proc.poll() is not None and state.load(port) is None
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        for proc in started_procs:
            kill_all([psutil.Process(p.pid) for p in _session(proc.pid)])
            reap(proc)
