"""The middleware r1 puts into every vLLM it starts (`--middleware r1cli.server.devguard.Guard`): it keeps
vLLM's non-public routes to r1, answers r1's own control routes, and with sleep mode wakes the engine on the
request itself (server/keepalive.py).

Routes, by the path Starlette routes on (the path less `--root-path`, as starlette's get_route_path):
- the public API (PUBLIC_PATHS) passes for clients anywhere; vLLM's own API key still guards /v1.
  Of it, the probes (PROBES: /health, /metrics, /v1/models...) never wake a sleeping engine and are no
  activity; every other request is an inference request: with sleep mode it waits for a wake, and counts.
- r1's control routes (/r1/state, /r1/sleep, /r1/wake) and anything else (vLLM's development routes, which
  exist where the user set VLLM_SERVER_DEV_MODE: /collective_rpc calls any method of the workers) answer
  only a request that carries the server's secret (X-R1-Secret; r1 keeps it in the server's record, mode
  0600) from this machine: a loopback peer or the server's own address, with no forwarding header (behind
  uvicorn's --forwarded-allow-ips, X-Forwarded-For: 127.0.0.1 would make any peer look local). A web page's
  blind POST can send no such header, and a relay or a proxy is turned away.
An allow-list, not a list of the development routes: a route a later vLLM adds stays closed until listed.

r1 passes the secret (SECRET_ENV) and, with sleep mode, keepalive.CONFIG_ENV through the environment (argv is
visible to every `ps`; /proc/PID/environ only to the user). vLLM imports this module in each API server
process: it imports nothing of r1 but keepalive.py, and nothing slow.
"""

import asyncio
import hmac
import ipaddress
import json
import os
import sys
import time

from r1cli.server import keepalive

SECRET_ENV = "R1_SERVER_SECRET"
SECRET_HEADER = "x-r1-secret"
MIDDLEWARE = "r1cli.server.devguard.Guard"  # the import path vLLM's --middleware takes
CONTROL = "/r1"

# What vLLM serves without dev mode, for clients anywhere (vLLM 0.25 and 0.32). Left out on purpose, though
# vLLM serves them: /scale_elastic_ep and /fault_tolerance/apply, which change the deployment.
PUBLIC_PATHS = ("/v1", "/v2", "/health", "/ping", "/metrics", "/version", "/load", "/ready", "/readyz", "/tokenize",
                "/detokenize", "/invocations", "/pooling", "/classify", "/score", "/rerank", "/docs",
                "/openapi.json", "/redoc", "/inference/v1", "/cohere", "/generative_scoring", "/tokenizer_info",
                "/is_scaling_elastic_ep", "/fault_tolerance/status")
# Public routes that ask the engine nothing that needs it awake: they never wake it and are no activity.
PROBES = ("/health", "/metrics", "/v1/models", "/version", "/load", "/ping", "/tokenize", "/detokenize", "/ready",
          "/readyz", "/docs", "/openapi.json", "/redoc", "/tokenizer_info", "/is_scaling_elastic_ep",
          "/fault_tolerance/status")
QUIET_METHODS = ("OPTIONS", "HEAD")  # a browser's CORS preflight, a HEAD: no inference, no wake
FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")
REFUSAL = {"error": {"message": "this route answers only r1 on the server's own machine (it needs the server's "
                                "secret, which r1 keeps in the server's record)", "type": "Forbidden", "code": 403}}


def faces_network(host: str) -> bool:
    """Whether a server bound to HOST can be reached from other machines (anything but a loopback address)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: whatever it resolves to, assume the network


def _under(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def is_public(path: str) -> bool:
    return _under(path, PUBLIC_PATHS)


def is_probe(path: str) -> bool:
    return _under(path, PROBES)


def route_path(scope) -> str:
    """The path Starlette routes on: scope's path less its root_path (as starlette._utils.get_route_path;
    tests/server/test_devguard.py holds the two equal). Judging the raw path let `--root-path /v1` open
    POST /v1/sleep, routed as /sleep, to anyone."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root):] if path[len(root)] == "/" else path


def is_local(peer, own) -> bool:
    """A peer on this machine: loopback (127.0.0.0/8, ::1, IPv4-mapped too) or the server's own address."""
    if not peer:
        return False  # a Unix socket or an unknown peer: not vouched for
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if (mapped or address).is_loopback:
        return True
    return own is not None and peer == own


def _header(scope, name: bytes):
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None


def is_r1(scope, secret) -> bool:
    """The request comes from this machine, unforwarded, with the server's secret."""
    if not secret:
        return False
    if any(_header(scope, h) is not None for h in FORWARDING_HEADERS):
        return False
    if not is_local((scope.get("client") or (None,))[0], (scope.get("server") or (None,))[0]):
        return False
    given = _header(scope, SECRET_HEADER.encode()) or b""
    return hmac.compare_digest(given, secret.encode())


def _authorized(scope, api_key) -> bool:
    """Whether vLLM's key check (inside this middleware) will let an inference request through: one it will
    refuse wakes nothing."""
    if not api_key or not route_path(scope).startswith("/v1"):
        return True
    given = _header(scope, b"authorization") or b""
    return hmac.compare_digest(given, f"Bearer {api_key}".encode())


async def _answer(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _refuse(scope, send, status: int, body: dict) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008 if status == 403 else 1013})
    else:
        await _answer(send, status, body)


def _say(text: str) -> None:
    sys.stderr.write(f"r1 keep-alive: {time.strftime('%H:%M:%S')} {text}\n")
    sys.stderr.flush()


def _query(scope) -> dict:
    from urllib.parse import parse_qs

    return {k: v[-1] for k, v in parse_qs((scope.get("query_string") or b"").decode()).items()}


class Guard:
    """`--middleware r1cli.server.devguard.Guard`: vLLM adds a class with app.add_middleware(); the engine client
    is found on the app Starlette puts in the scope (app.state.engine_client) at the first request."""

    def __init__(self, app):
        self.app = app
        self.secret = os.environ.get(SECRET_ENV) or None
        self.api_key = os.environ.get("VLLM_API_KEY") or None
        config = os.environ.get(keepalive.CONFIG_ENV)
        self.config = json.loads(config) if config else None
        self.keeper: keepalive.KeepAlive | None = None

    def _keeper(self, scope):
        if self.keeper is None and self.config is not None:
            engine = getattr(getattr(scope.get("app"), "state", None), "engine_client", None)
            if engine is None:
                return None
            c = self.config
            self.keeper = keepalive.KeepAlive(engine, keepalive.SharedClock(c["clock"]), c.get("idle_s"),
                                              c.get("weights_bytes"), c.get("replicas") or 1, say=_say)
        if self.keeper is not None:
            self.keeper.start()  # again if its task ended (it restarts itself on failures)
        return self.keeper

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        keeper = self._keeper(scope)
        if path == CONTROL or path.startswith(CONTROL + "/"):
            if scope["type"] != "http" or not is_r1(scope, self.secret):
                await _refuse(scope, send, 403, REFUSAL)
            else:
                await self._control(path, scope, send, keeper)
            return
        if not is_public(path):
            if is_r1(scope, self.secret):
                await self.app(scope, receive, send)
            else:
                await _refuse(scope, send, 403, REFUSAL)
            return
        if (keeper is None or is_probe(path) or scope.get("method") in QUIET_METHODS
                or not _authorized(scope, self.api_key)):
            await self.app(scope, receive, send)
            return
        try:
            await keeper.admit()
        except keepalive.WakeFailed as exc:
            await _refuse(scope, send, 503, {"error": {"message": str(exc), "type": "ServiceUnavailable",
                                                       "code": 503}})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            keeper.done()

    async def _control(self, path: str, scope, send, keeper) -> None:
        """GET /r1/state, POST /r1/sleep?level=L&wait=S, POST /r1/wake: JSON, from r1 only."""
        if keeper is None:
            why = "this server was started without sleep mode" if self.config is None else "its engine is not up yet"
            await _answer(send, 409, {"error": {"message": why, "type": "Conflict", "code": 409}})
            return
        method = scope.get("method", "GET")
        try:
            if path == CONTROL + "/state" and method == "GET":
                await _answer(send, 200, await keeper.state())
            elif path == CONTROL + "/sleep" and method == "POST":
                query = _query(scope)
                level = int(query["level"]) if query.get("level") else None
                if level not in (None, 1, 2):
                    await _answer(send, 422, {"error": {"message": "level is 1 or 2", "code": 422}})
                    return
                done = await asyncio.shield(keeper.sleep(level, float(query.get("wait") or 0)))
                await _answer(send, 200, done)
            elif path == CONTROL + "/wake" and method == "POST":
                await _answer(send, 200, await asyncio.shield(keeper.wake()))
            else:
                await _answer(send, 404, {"error": {"message": f"no {method} {path}", "code": 404}})
        except keepalive.Busy as exc:
            await _answer(send, 409, {"error": {"message": str(exc), "type": "Busy", "code": 409,
                                                "in_flight": keeper.inflight}})
        except keepalive.WakeFailed as exc:
            await _answer(send, 503, {"error": {"message": str(exc), "type": "ServiceUnavailable", "code": 503}})
