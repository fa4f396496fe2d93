"""vLLM's development routes answer this machine only: an ASGI middleware r1 hands vLLM (`--middleware`).

With VLLM_SERVER_DEV_MODE=1 (which sleep mode needs, and which a user may have set for their own reasons: r1
passes its environment on) vLLM adds routes that no API key guards: /collective_rpc (calls any method of the
workers), /sleep, /wake_up, /pause, /reset_prefix_cache, the weight-update routes, /server_info, and more
with each release (16 in 0.25, 24 in 0.32). A server r1 starts on a network address gets this middleware:
a client of another machine reaches the public API below and gets 403 for anything else; a client of this
machine (a loopback peer, or one whose address is the server's own, as when r1 reaches `--host 192.168.1.5`
from that host) reaches everything, as r1's own sleep and wake must.

An allow-list, not a list of the development routes: a route a later vLLM adds stays closed to the network
until it is listed here. The peer is uvicorn's (it reads X-Forwarded-For only from a proxy on 127.0.0.1).
vLLM imports this module in each API server process: it imports nothing of r1 and nothing slow.
"""

import ipaddress
import json

# What vLLM serves without dev mode, for clients anywhere (the API key, if set, still guards /v1).
PUBLIC_PATHS = ("/v1", "/v2", "/health", "/ping", "/metrics", "/version", "/load", "/ready", "/readyz", "/tokenize",
                "/detokenize", "/invocations", "/pooling", "/classify", "/score", "/rerank", "/docs",
                "/openapi.json", "/redoc")
REFUSAL = {"error": {"message": "this route answers only clients on the server's own machine (r1 serve: vLLM's "
                                "development routes are not for the network)", "type": "Forbidden", "code": 403}}
MIDDLEWARE = "r1cli.server.devguard.LocalOnly"  # the import path vLLM's --middleware takes


def faces_network(host: str) -> bool:
    """Whether a server bound to HOST can be reached from other machines (anything but a loopback address)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: whatever it resolves to, assume the network


def is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def is_local(peer: str | None, own: str | None) -> bool:
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


def allowed(path: str, peer: str | None, own: str | None) -> bool:
    return is_public(path) or is_local(peer, own)


class LocalOnly:
    """`--middleware r1cli.server.devguard.LocalOnly`: vLLM adds a class with app.add_middleware()."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            peer = (scope.get("client") or (None,))[0]
            own = (scope.get("server") or (None,))[0]
            if not allowed(scope.get("path", ""), peer, own):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = json.dumps(REFUSAL).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
