"""Small HTTP over the stdlib: `import http.client` costs ~10 ms where httpx costs 150+ ms (issue 4)."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class Unreachable(Exception):
    """Connection refused, timed out, reset, or the name did not resolve."""


def connect(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return conn, path


def request(method: str, url: str, *, body: dict | None = None, headers: dict[str, str] | None = None,
            timeout: float = 5.0) -> Response:
    conn, path = connect(url, timeout)
    hdrs = {"Accept": "application/json", **(headers or {})}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(describe(exc)) from exc
    finally:
        conn.close()


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed by the server"
    return str(exc) or exc.__class__.__name__


def status_of(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        return request("GET", url, timeout=timeout).status
    except Unreachable:
        return None


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Dechunker:
    """HTTP/1.1's chunked transfer coding undone over whole reads (sans-IO: the blocking and the asyncio
    readers both feed it). ValueError on a malformed chunk header."""

    def __init__(self) -> None:
        self.buf = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The payload of every complete chunk in what has arrived so far, in one piece."""
        buf = self.buf + data
        out = []
        pos = 0
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(buf[pos:end].split(b";", 1)[0], 16)
            if size == 0:  # the last chunk (trailers, if any, are not read)
                self.done = True
                pos = len(buf)
                break
            start, stop = end + 2, end + 2 + size
            if len(buf) < stop + 2:
                break
            out.append(buf[start:stop])
            pos = stop + 2
        self.buf = buf[pos:]
        return b"".join(out)


def iter_body(resp: http.client.HTTPResponse, block: int = 1 << 16):
    """The body as it arrives, in large blocks.

    http.client decodes chunked bodies a few bytes at a time (a readline costs ~7 us); vLLM sends
    one chunk per token, so at hundreds of tokens/s that alone was half of r1 chat's time. Here the
    chunk framing is undone over whole socket reads instead: a reader that fell behind a fast server
    catches up in one step instead of one step per token.
    """
    if not resp.chunked:
        while True:
            data = resp.read1(block)
            if not data:
                return
            yield data
    raw = resp.fp
    dechunk = Dechunker()
    while True:
        more = raw.read1(block)
        if not more:
            raise http.client.IncompleteRead(dechunk.buf)
        data = dechunk.feed(more)
        if data:
            yield data
        if dechunk.done:
            resp.chunked = False  # done: close() must not try to drain
            return
