"""Issue 29 on one GPU (`pytest -m gpu` on the device): keep-alive inside vLLM's own process, real vLLM 0.25.

One `r1 serve --idle-sleep 20s --host 0.0.0.0` for the module (a network address: sleep mode opens nothing
unguarded now), with the user's VLLM_SERVER_DEV_MODE=1 so that vLLM's development routes exist and the
guard, not their absence, is what turns a peer away. In order: it falls asleep by itself and NVML shows at
most the CUDA context; keep-alive scrapes of /metrics leave it asleep; curl's and the openai SDK's first
byte from asleep; 64 requests sent while asleep, each answered once; greedy tokens identical before a sleep
and after level-1 and level-2 wakes; the dev and control routes refuse another address; `r1 stop` of a
sleeping server gives every byte back. The model has random weights: answers are junk, the tests assert
states, memory, counts, times and token identity, never text.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import subprocess
import time
import urllib.request

import gpu_common as g
import pytest
from conftest import own_network_address, run_r1

from r1cli.server import devguard, state

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(1500)]
ONE = {"CUDA_VISIBLE_DEVICES": "0"}
IDLE_S = 20
CONTEXT_MIB = 1024  # a CUDA context on an H100/H200 with room (cuda_context_mib() measures it)
KEPT_MIB = 1024  # beyond the context: what vLLM's sleeping engine keeps (1.4 GiB in all on an H100, 2026-12-06)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    before = g.nvml_used()[0]
    with g.served("--idle-sleep", f"{IDLE_S}s", "--host", "0.0.0.0", env={**ONE, "VLLM_SERVER_DEV_MODE": "1"}) \
            as (port, proc):
        yield {"port": port, "root": f"http://127.0.0.1:{port}", "baseline_mib": before, "serve": proc}


def state_of(port: int) -> dict:
    return g.status(port, env=ONE)[1]


def wait_asleep(port: int, limit: float = IDLE_S + 60) -> dict:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        server = state_of(port)
        if server["state"] == "asleep":
            return server
        time.sleep(1.0)
    raise AssertionError(f"not asleep {limit:.0f} s after going idle: {json.dumps(server)[:2000]}")


def complete(root: str, prompt: str = "Hello", max_tokens: int = 8, timeout: float = 120, **extra) -> dict:
    body = json.dumps({"model": g.NAME, "prompt": prompt, "max_tokens": max_tokens, **extra}).encode()
    req = urllib.request.Request(root + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def success_total(root: str) -> float:
    text = urllib.request.urlopen(root + "/metrics", timeout=30).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total{"))


def test_idle_server_falls_asleep_and_nvml_shows_at_most_the_cuda_context(server):
    awake_mib = g.nvml_used()[0]
    asleep = wait_asleep(server["port"])
    assert asleep["sleep"]["asleep"] and asleep["sleep"]["level"] == 1 and asleep["sleep"]["since"]
    time.sleep(1.0)  # NVML shows memory given back a moment later
    used = g.nvml_used()[0]
    print(f"GPU 0: {awake_mib:,.0f} MiB awake, {used:,.0f} MiB asleep, {server['baseline_mib']:,.0f} MiB before serve")
    context = cuda_context_mib()
    print(f"a bare torch process's CUDA context (cuBLAS included): {context:,.0f} MiB")
    assert used <= server["baseline_mib"] + context + KEPT_MIB, "asleep, the server should hold little but its CUDA context"


def cuda_context_mib() -> float:
    """What a bare torch process holds on GPU 0 once CUDA and cuBLAS are up (NVML, less what was there)."""
    code = ("import torch,time;a=torch.ones(64,64,device='cuda');(a@a).sum().item();"
            "print('up',flush=True);time.sleep(30)")
    before = g.nvml_used()[0]
    proc = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        time.sleep(1.0)
        return g.nvml_used()[0] - before
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_keep_alive_scrapes_of_metrics_leave_it_asleep(server):
    wait_asleep(server["port"])
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    try:
        for _ in range(20):
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read()
            time.sleep(1.0)
    finally:
        conn.close()
    used = g.nvml_used()[0]
    print(f"after 20 keep-alive scrapes of /metrics: {used:,.0f} MiB")
    assert state_of(server["port"])["state"] == "asleep"
    assert used <= server["baseline_mib"] + CONTEXT_MIB + KEPT_MIB


def curl_first_byte(root: str) -> float:
    body = json.dumps({"model": g.NAME, "prompt": "Hello", "max_tokens": 16, "stream": True})
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{time_starttransfer}", "-H",
                          "Content-Type: application/json", "-d", body, root + "/v1/completions"],
                         capture_output=True, text=True, timeout=120, check=True)
    return float(out.stdout)


def sdk_first_byte(root: str) -> float:
    import openai

    client = openai.OpenAI(base_url=root + "/v1", api_key="none")
    client.models.list()  # a probe (no wake): the SDK's own first-use imports and connection are not the server's
    t0 = time.monotonic()
    stream = client.completions.create(model=g.NAME, prompt="Hello", max_tokens=16, stream=True)
    next(iter(stream))
    seconds = time.monotonic() - t0
    stream.close()
    return seconds


@pytest.mark.parametrize("client", ["curl", "openai SDK"])
def test_first_byte_from_asleep_level_1_within_1_s(server, client):
    port = str(server["port"])
    assert run_r1("sleep", "--port", port, "--level", "1", env=ONE, timeout=300).returncode == 0
    seconds = (curl_first_byte if client == "curl" else sdk_first_byte)(server["root"])
    print(f"{client}: first byte from asleep (level 1) in {seconds:.3f} s")
    assert seconds <= 1.0
    assert state_of(server["port"])["state"] == "ready"


def test_64_requests_sent_while_asleep_are_all_answered_once(server):
    assert run_r1("sleep", "--port", str(server["port"]), env=ONE, timeout=300).returncode == 0
    done_before = success_total(server["root"])
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda i: complete(server["root"], f"Request {i}:", 16), range(64)))
    seconds = time.monotonic() - t0
    print(f"64 requests sent while asleep: all answered in {seconds:.2f} s")
    assert len(answers) == 64 and all(a["choices"] and a["usage"]["completion_tokens"] >= 1 for a in answers)
    assert len({a["id"] for a in answers}) == 64
    assert success_total(server["root"]) - done_before == 64  # none lost, none doubled


def greedy(root: str) -> tuple[list, list]:
    answer = complete(root, "The capital of France is", 32, temperature=0, logprobs=1, seed=0)
    lp = answer["choices"][0]["logprobs"]
    return lp["tokens"], [round(x, 3) for x in lp["token_logprobs"]]


def test_greedy_tokens_are_the_same_after_level_1_and_level_2_wakes(server):
    port = str(server["port"])
    assert run_r1("wake", "--port", port, env=ONE, timeout=300).returncode == 0
    before = greedy(server["root"])
    for level in (1, 2):
        slept = run_r1("sleep", "--port", port, "--level", str(level), "--json", env=ONE, timeout=300)
        assert slept.returncode == 0, slept.stderr
        [result] = json.loads(slept.stdout)["servers"]
        print(slept.stderr.strip())
        assert result["level"] == level and result["gpu_mib_freed"]["0"] > 20 * 1024
        assert state_of(server["port"])["sleep"]["level"] == level
        after = greedy(server["root"])  # the request wakes it (level 2: weights reloaded from disk)
        assert after[0] == before[0], f"level {level}: tokens differ after the wake"
        print(f"level {level}: {len(after[0])} greedy tokens identical after the wake")


@pytest.mark.parametrize("method, path", [("POST", "/sleep?level=1"), ("POST", "/wake_up"), ("GET", "/is_sleeping"),
                                          ("POST", "/collective_rpc"), ("GET", "/r1/state"), ("POST", "/r1/sleep")])
def test_dev_and_control_routes_cannot_be_reached_from_another_address(server, method, path):
    """The server listens on 0.0.0.0: a client of the machine's network address reaches it as one from afar.
    With the server's secret (from its record) it is still refused; from loopback the secret opens them."""
    secret = state.load(server["port"]).secret  # the tests' R1_HOME is r1's (tests/conftest.py)
    away = own_network_address()
    # To 127.0.0.1 from the network address: the server sees a peer that is not this machine's loopback nor
    # its own address (the one it was reached at), as a client across the network. (To the network address
    # from itself is this machine: r1 on a `--host 192.168.1.5` server is such a client.)
    for headers in ({}, {devguard.SECRET_HEADER: secret}):
        conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30, source_address=(away, 0))
        try:
            conn.request(method, path, body=b"{}" if method == "POST" else None,
                         headers={"Content-Type": "application/json", **headers})
            response = conn.getresponse()
            status, body = response.status, response.read()
        finally:
            conn.close()
        assert status == 403 and json.loads(body) == devguard.REFUSAL, (status, body[:300])
    conn = http.client.HTTPConnection(away, server["port"], timeout=30, source_address=(away, 0))
    try:  # this machine, at the network address, without the secret: refused too
        conn.request(method, path, body=b"{}" if method == "POST" else None)
        assert conn.getresponse().status == 403
    finally:
        conn.close()
    if method == "GET":
        req = urllib.request.Request(server["root"] + path, headers={devguard.SECRET_HEADER: secret})
        assert urllib.request.urlopen(req, timeout=30).status == 200  # r1 here: answered


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
