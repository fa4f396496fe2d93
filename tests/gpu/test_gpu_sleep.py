"""Issue 21 on one GPU (`pytest -m gpu` on the device): keep-alive through vLLM's sleep mode, with real vLLM 0.25.

One `r1 serve --idle-sleep 20s` for the module, then in order: it falls asleep by itself and NVML shows the
memory back; a plain HTTP request (urllib, standing for curl or any client that is not r1) wakes it and is
answered; 64 requests sent at once while it sleeps are all answered, each once; `r1 ask` wakes it and says
so; `r1 sleep --level 2` / `r1 wake`; the development routes turn away a peer from another address; `r1 stop`
of a sleeping server gives every byte back. The model has random weights: answers are junk, the tests assert
states, memory, counts and times, never text.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
import urllib.error
import urllib.request

import gpu_common as g
import pytest
from conftest import own_network_address, run_r1

from r1cli.server import devguard

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(1500)]
ONE = {"CUDA_VISIBLE_DEVICES": "0"}
IDLE_S = 20


@pytest.fixture(scope="module")
def server():
    before = g.nvml_used()[0]
    with g.served("--idle-sleep", f"{IDLE_S}s", env=ONE) as (port, proc):
        yield {"port": port, "root": f"http://127.0.0.1:{port}", "baseline_mib": before, "serve": proc}


def state_of(port: int) -> dict:
    return g.status(port, env=ONE)[1]


def wait_asleep(port: int, limit: float = IDLE_S + 60) -> dict:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        server = state_of(port)
        if server["state"] == "asleep" and server["sleep"]["since"]:  # since: once the sleep is done
            return server
        time.sleep(1.0)
    raise AssertionError(f"not asleep {limit:.0f} s after going idle: {json.dumps(server)[:2000]}")


def plain_request(root: str, prompt: str = "Hello", max_tokens: int = 8, timeout: float = 120) -> dict:
    """A completion through urllib: the way curl, the openai SDK or a web UI reaches the server."""
    body = json.dumps({"model": g.NAME, "prompt": prompt, "max_tokens": max_tokens}).encode()
    req = urllib.request.Request(root + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def success_total(root: str) -> float:
    text = urllib.request.urlopen(root + "/metrics", timeout=30).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total{"))


def test_idle_server_falls_asleep_and_gives_the_gpu_memory_back(server):
    awake_mib = g.nvml_used()[0]
    asleep = wait_asleep(server["port"])
    assert asleep["sleep"]["asleep"] and asleep["sleep"]["level"] == 1 and asleep["sleep"]["since"]
    used = g.nvml_used()[0]
    print(f"GPU 0: {awake_mib:,.0f} MiB awake, {used:,.0f} MiB asleep, {server['baseline_mib']:,.0f} MiB before serve")
    assert used < server["baseline_mib"] + 4096, "asleep, the server should hold little more than the CUDA context"
    assert awake_mib - used > 20 * 1024


def test_a_plain_request_to_the_sleeping_server_is_answered_within_1_5_s(server):
    wait_asleep(server["port"])
    t0 = time.monotonic()
    answer = plain_request(server["root"])
    seconds = time.monotonic() - t0
    print(f"first request from asleep (level 1): answered in {seconds:.3f} s")
    assert answer["choices"] and answer["usage"]["completion_tokens"] >= 1
    assert seconds < 1.5
    assert state_of(server["port"])["state"] == "ready"


def test_64_requests_sent_while_asleep_are_all_answered_once(server):
    wait_asleep(server["port"])
    done_before = success_total(server["root"])
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda i: plain_request(server["root"], f"Request {i}:", 16), range(64)))
    seconds = time.monotonic() - t0
    print(f"64 requests sent while asleep: all answered in {seconds:.2f} s")
    assert len(answers) == 64 and all(a["choices"] and a["usage"]["completion_tokens"] >= 1 for a in answers)
    assert len({a["id"] for a in answers}) == 64
    assert success_total(server["root"]) - done_before == 64  # none lost, none doubled


def test_r1_ask_wakes_the_server_and_says_so(server):
    wait_asleep(server["port"])
    proc = run_r1("ask", "What is 2+2?", "--port", str(server["port"]), "--max-tokens", "32", "--json",
                  env=ONE, timeout=300)
    assert proc.returncode in (0, 4), proc.stderr[-3000:]  # random weights: maybe no boxed answer (4)
    assert f"r1: woke the server on port {server['port']} in " in proc.stderr, proc.stderr
    print([line for line in proc.stderr.splitlines() if "woke" in line])
    assert state_of(server["port"])["state"] == "ready"


def test_sleep_level_2_and_wake_commands(server):
    port = str(server["port"])
    assert run_r1("wake", "--port", port, env=ONE, timeout=300).returncode == 0  # asleep or not, awake after
    slept = run_r1("sleep", "--port", port, "--level", "2", "--json", env=ONE, timeout=300)
    assert slept.returncode == 0, slept.stderr
    [result] = json.loads(slept.stdout)["servers"]
    print(slept.stderr.strip())
    assert result["level"] == 2 and result["gpu_mib_freed"]["0"] > 20 * 1024
    assert state_of(server["port"])["sleep"]["level"] == 2
    woke = run_r1("wake", "--port", port, "--json", env=ONE, timeout=300)
    assert woke.returncode == 0, woke.stderr
    [result] = json.loads(woke.stdout)["servers"]
    print(woke.stderr.strip())
    assert result["was_asleep"] and result["level"] == 2 and result["gpu_mib_taken"]["0"] > 20 * 1024
    assert plain_request(server["root"])["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize("method, path", [("POST", "/sleep?level=1"), ("POST", "/wake_up"), ("GET", "/is_sleeping"),
                                          ("POST", "/collective_rpc")])
def test_dev_routes_answer_this_machine_only(server, method, path):
    """Sleep mode opens vLLM's development routes (they answer without the API key): r1 serves them on a
    loopback address, and its guard (server/devguard.py) turns away a peer from any other address even there.
    The peer here is a socket bound to this machine's network address connecting to 127.0.0.1, which the
    server sees exactly as a client from afar; without the guard the route answers it."""
    assert urllib.request.urlopen(server["root"] + "/is_sleeping", timeout=30).status == 200  # there, for r1
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30,
                                      source_address=(own_network_address(), 0))
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 403 and json.loads(body) == devguard.REFUSAL, (status, body[:300])
    # and the address itself: nothing listens on the machine's network address
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(f"http://{own_network_address()}:{server['port']}/health", timeout=10)
    assert isinstance(caught.value.reason, ConnectionRefusedError), caught.value


def test_serve_refuses_idle_sleep_on_a_network_address_and_starts_nothing():
    port = g.free_port()
    proc = run_r1("serve", g.MODEL, "--host", "0.0.0.0", "--port", str(port), "--idle-sleep", "20s", "-d",
                  env=ONE, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--idle-sleep with --host 0.0.0.0" in proc.stderr and "no API key guards them" in proc.stderr
    assert all(s["port"] != port for s in json.loads(run_r1("status", "--json", env=ONE).stdout)["servers"])


def test_stop_while_asleep_frees_all_gpu_memory(server):
    port = str(server["port"])
    assert run_r1("sleep", "--port", port, env=ONE, timeout=300).returncode == 0
    assert state_of(server["port"])["state"] == "asleep"
    t0 = time.monotonic()
    stopped = run_r1("stop", "--port", port, env=ONE, timeout=300)
    seconds = time.monotonic() - t0
    print(stopped.stderr.strip(), f"({seconds:.1f} s)")
    assert stopped.returncode == 0, stopped.stderr
    time.sleep(2)
    used = g.nvml_used()[0]
    assert used < server["baseline_mib"] + 512, f"{used:,.0f} MiB still used after stop (before serve: {server['baseline_mib']:,.0f})"
