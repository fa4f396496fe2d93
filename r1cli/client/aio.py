"""Streams over asyncio: one event loop reads every stream, no thread per request (as vLLM's own
benchmark client does). The bytes mean what they mean to the blocking reader: stream.Events reads
both. Imported by the library's AsyncClient only, never on a command's start.

A thread per stream measured badly on the lent H100 (gVisor): at 16 streams `r1 bench` saw a mean time
to first token of 273 ms where `vllm bench serve` saw 50 ms on the same server, tokens arriving in
bunches 118 ms apart; `r1 eval` reached 75% of vLLM's output tokens/s at 64 streams.

Connections are kept alive and reused, as aiohttp does for vLLM's client: TTFT counts from before
connecting (vLLM's clock), so a connection per request would charge every r1 request a connect (a TLS
handshake to a remote server) that vLLM's client pays once per stream slot.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import weakref
from urllib.parse import urlsplit

from r1cli.client import http as r1http
from r1cli.client.stream import (Completion, Events, OnPiece, StreamCut, Timing, excerpt, http_error, not_openai,
                                 silent, stream_body, unreachable)
from r1cli.client.target import Target


async def stream_chat(target: Target, messages: list[dict], params: dict, on_piece: OnPiece | None = None, *,
                      timeout: float = 300.0, think_budget: int | None = None,
                      record_times: bool = False) -> Completion:
    """sync.stream_chat, awaited. Cancelling the task closes the connection: vLLM aborts the request."""
    body = {"model": target.model, "messages": messages, **params}
    return await _stream(target, "/chat/completions", body, on_piece, opens_think=True, timeout=timeout,
                         think_budget=think_budget, record_times=record_times)


async def stream_completion(target: Target, prompt: list[int] | str, params: dict, on_piece: OnPiece | None = None,
                            *, timeout: float = 300.0, record_times: bool = False,
                            started: Timing | None = None) -> Completion:
    """sync.stream_completion, awaited."""
    body = {"model": target.model, "prompt": prompt, **params}
    return await _stream(target, "/completions", body, on_piece, opens_think=False, timeout=timeout,
                         record_times=record_times, started=started)


async def _stream(target: Target, path_tail: str, body: dict, on_piece: OnPiece | None, *, opens_think: bool,
                  timeout: float, think_budget: int | None = None, record_times: bool = False,
                  started: Timing | None = None) -> Completion:
    loop = asyncio.get_running_loop()
    events = Events(target, on_piece, opens_think=opens_think, think_budget=think_budget,
                     record_times=record_times, started=started)
    parts = urlsplit(target.base_url + path_tail)
    https = parts.scheme == "https"
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if https else 80)
    payload = json.dumps(stream_body(body)).encode()
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json", "Accept": "text/event-stream",
               "Content-Length": str(len(payload)), **target.headers}
    request = (f"POST {parts.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
               + "\r\n").encode() + payload
    key = (host, port, https)
    events.sent()  # before connecting: the wait for a connection is part of what the user waits (and of vLLM's TTFT)
    conn = _idle(loop).pop(key)
    reused, clean = conn is not None, False
    try:
        while True:
            if conn is None:
                try:
                    _, conn = await asyncio.wait_for(
                        loop.create_connection(lambda: _Conn(loop, key), host, port,
                                               ssl=ssl.create_default_context() if https else None),
                        min(timeout, 5.0))
                except (OSError, asyncio.TimeoutError) as exc:
                    raise unreachable(target, r1http.describe(exc)) from None
            reply = _Reply(loop, events)
            conn.start(reply, request)
            # One timer for the whole stream, not one per read: silence longer than `timeout` ends it.
            while not reply.over.done():
                left = reply.last + timeout - loop.time()
                if left <= 0:
                    reply.timed_out = True
                    break
                await asyncio.wait([reply.over], timeout=left)
            if reply.over.done() and reply.over.exception() is not None:
                raise reply.over.exception()
            if reused and reply.status is None and not reply.head and not reply.timed_out:
                # The server closed the kept-alive connection as the request went out: again on a fresh one.
                conn.close()
                conn, reused = None, False
                continue
            break
        if reply.status is None:
            if reply.timed_out:
                raise silent(target, timeout)
            raise unreachable(target, "connection closed by the server")
        if reply.error_body is not None:
            data = reply.dechunk.feed(reply.error_body) if reply.dechunk else reply.error_body
            if reply.status != 200:
                raise http_error(target, reply.status, data, reply.headers)
            kind = reply.headers.get("content-type") or "no content type"
            raise not_openai(target, f"{kind} {excerpt(data[:200])} to a streamed request")
        if reply.timed_out:
            raise StreamCut(events.out, f"no data for {round(timeout, 1):g} s")
        clean = reply.ended
        return events.finish()
    finally:
        if conn is not None:
            if clean:
                conn.finish()  # kept for the next request once the rest of the response has come
            else:
                conn.close()  # at once, also when the task is cancelled: vLLM sees the client go


class _Idle:
    """Kept-alive connections of one event loop, by (host, port, https)."""

    def __init__(self) -> None:
        self.conns: dict[tuple, list[_Conn]] = {}
        self.draining: set[_Conn] = set()  # their request is over, the end of its response not yet read

    def pop(self, key: tuple) -> _Conn | None:
        conns = self.conns.get(key, [])
        while conns:
            conn = conns.pop()
            if not conn.transport.is_closing():
                return conn
        return None

    def put(self, conn: _Conn) -> None:
        self.conns.setdefault(conn.key, []).append(conn)

    def close(self) -> None:
        for conn in [c for conns in self.conns.values() for c in conns] + list(self.draining):
            conn.transport.abort()
        self.conns.clear()
        self.draining.clear()


_IDLE: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Idle] = weakref.WeakKeyDictionary()


def _idle(loop: asyncio.AbstractEventLoop) -> _Idle:
    pool = _IDLE.get(loop)
    if pool is None:
        # A loop closed without aclose() stays alive through its own connections: let it and them go.
        for closed in [other for other in _IDLE if other.is_closed()]:
            del _IDLE[closed]
        pool = _IDLE[loop] = _Idle()
    return pool


def close_idle() -> None:
    """Close this event loop's kept-alive connections (AsyncClient.aclose)."""
    pool = _IDLE.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        pool.close()


class _Conn(asyncio.Protocol):
    """One connection, kept alive across requests: each network read goes to the current request's _Reply."""

    DRAIN_S = 1.0  # the end of a response (its last chunk) must come this soon after its last event

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple):
        self.loop, self.key = loop, key
        self.transport = None
        self.reply: _Reply | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def start(self, reply: _Reply, request: bytes) -> None:
        self.reply, reply.transport = reply, self.transport
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if self.reply is not None:
            self.reply.data_received(data)
            if self.reply.drained and self.timer is not None:
                self._keep()
        elif data.strip():  # nothing is asked: a server speaking out of turn is not to be trusted again
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        if self.reply is not None:
            self.reply.connection_lost(exc)
        self._undrain()

    def finish(self) -> None:
        """The request is over and its stream was whole: keep the connection once its response has ended."""
        if self.reply.drained:
            self._keep()
        elif not self.transport.is_closing():
            self.timer = self.loop.call_later(self.DRAIN_S, self.close)
            _idle(self.loop).draining.add(self)

    def _keep(self) -> None:
        self._undrain()
        self.reply = None
        if not self.transport.is_closing():
            _idle(self.loop).put(self)

    def close(self) -> None:
        self._undrain()
        self.transport.abort()

    def _undrain(self) -> None:
        """No longer waiting for the end of a response: its timer off, out of the draining set (a pool that
        close_idle() already let go is not made again for it)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pool = _IDLE.get(self.loop)
        if pool is not None:
            pool.draining.discard(self)


class _Reply:
    """A response read as it arrives: each network read goes straight to Events (no task per read)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, events: Events):
        self.loop, self.events = loop, events
        self.over = loop.create_future()
        self.last = loop.time()
        self.head = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.dechunk: r1http.Dechunker | None = None
        self.error_body: bytes | None = None  # a response that is not an event stream, kept whole
        self.timed_out = False
        self.ended = False  # the stream said it was over ([DONE]): not cut, nor hung up on at the budget
        self.transport = None

    @property
    def drained(self) -> bool:
        """The stream ended and so did its response, on a connection the server keeps open."""
        return (self.ended and self.dechunk is not None and self.dechunk.done
                and "close" not in self.headers.get("connection", ""))

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if self.over.done():
            if self.ended and self.dechunk is not None and not self.dechunk.done:
                try:
                    self.dechunk.feed(data)
                except ValueError:
                    self.transport.abort()
            return
        try:
            if self.status is None:
                self.head += data
                self.head = self.head.lstrip(b"\r\n")  # the previous response's last CRLF, read late
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    return
                self._parse_head(self.head[:end])
                data = self.head[end + 4:]
            if self.error_body is not None:
                self.error_body += data
                return
            payload = self.dechunk.feed(data) if self.dechunk else data
            if payload and self.events.feed(payload):
                self.ended = not self.events.budget_hit  # [DONE]; at the budget the rest is not wanted: hang up
                self._end()
            elif self.dechunk and self.dechunk.done:
                self._end()
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task, which raises it
            if isinstance(exc, ValueError):
                exc = StreamCut(self.events.out, r1http.describe(exc))
            self.over.set_exception(exc)
            self.transport.abort()

    def _parse_head(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                self.headers[name.strip().lower()] = value.strip()
        if "chunked" in self.headers.get("transfer-encoding", ""):
            self.dechunk = r1http.Dechunker()
        if self.status != 200 or "event-stream" not in self.headers.get("content-type", ""):
            self.error_body = b""

    def _end(self) -> None:
        if not self.over.done():
            self.over.set_result(None)
        if not self.ended:
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        if not self.over.done():
            self.over.set_result(None)  # the awaiting task looks at what arrived: whole, cut or an error body
