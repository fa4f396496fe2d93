"""The OpenAI-compatible chat API over blocking sockets, as two channels, reasoning and answer, whatever
the server does. What the stream's bytes mean is stream.py's, shared with the asyncio transport (aio.py)."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

from r1cli.client import http as r1http
from r1cli.client.stream import (Completion, Events, OnPiece, StreamCut, Timing, excerpt, http_error, not_openai,
                                 silent, stream_body, unreachable)
from r1cli.client.target import Target
from r1cli.errors import R1Error, UsageError


def get_json(target: Target, url: str, timeout: float = 5.0):
    try:
        resp = r1http.request("GET", url, headers=target.headers, timeout=timeout)
    except r1http.Unreachable as exc:
        raise unreachable(target, str(exc)) from None
    if resp.status != 200:
        raise http_error(target, resp.status, resp.body, resp.headers)
    return _json_object(target, resp)


def _json_object(target: Target, resp: r1http.Response) -> dict:
    """The body as a JSON object, or one line naming the server and what it sent instead."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise not_openai(target, f"{resp.headers.get('content-type') or 'a body'} {excerpt(resp.body)}")
    return data


def resolve_model(target: Target, timeout: float = 5.0) -> str:
    if target.model:
        return target.model
    data = get_json(target, target.base_url + "/models", timeout=timeout)
    models = data.get("data")
    if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models):
        raise not_openai(target, "a /models answer without a list of model ids")
    if not models:
        raise R1Error(f"the server at {target.base_url} serves no model")
    target.model = models[0]["id"]
    return target.model


@dataclass
class PromptInfo:
    tokens: int
    max_model_len: int | None
    opens_think: bool


def inspect_prompt(target: Target, messages: list[dict], timeout: float = 10.0) -> PromptInfo | None:
    """vLLM's /tokenize renders the prompt a chat request would produce: its length, and whether the
    template already opened <think>. None when the server has no such endpoint."""
    from r1cli import rules

    body = {"model": target.model, "messages": messages, "add_generation_prompt": True, "return_token_strs": True}
    try:
        resp = r1http.request("POST", target.root + "/tokenize", body=body, headers=target.headers, timeout=timeout)
    except r1http.Unreachable as exc:
        raise unreachable(target, str(exc)) from None
    if resp.status == 401:
        raise http_error(target, 401, resp.body)
    if resp.status != 200:
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    rendered = "".join(_detok(s) for s in data.get("token_strs") or [])
    return PromptInfo(int(data.get("count", 0)), data.get("max_model_len"), rules.template_opens_think(rendered))


class PromptTooLong(UsageError):
    pass


def fit_prompt(target: Target, build: Callable[[bool], list[dict]], timeout: float = 10.0) -> tuple[list[dict], dict]:
    """The messages to send and the request fields they need, after checking the served template.

    build(prefill_think) makes the messages. The current R1 template opens <think> itself; an older
    one does not, and then the answer is made to start inside a think block by prefilling it.
    """
    from r1cli import rules

    messages = build(False)
    info = inspect_prompt(target, messages, timeout)
    if info is None:
        return messages, {}
    if info.max_model_len and info.tokens >= info.max_model_len:
        raise PromptTooLong(f"the prompt has {info.tokens:,} tokens; the context window is {info.max_model_len:,}",
                            hint="shorten it, or serve with a larger --max-model-len")
    if info.opens_think:
        return messages, {}
    return build(True), rules.request_extras(True)


def tokenize(target: Target, body: dict, timeout: float = 10.0) -> list[int]:
    """Token ids from vLLM's /tokenize: `{"prompt": text}` or `{"messages": [...], ...}` rendered by the
    served chat template."""
    try:
        resp = r1http.request("POST", target.root + "/tokenize", body={"model": target.model, **body},
                              headers=target.headers, timeout=timeout)
    except r1http.Unreachable as exc:
        raise unreachable(target, str(exc)) from None
    if resp.status != 200:
        raise http_error(target, resp.status, resp.body, resp.headers)
    tokens = _json_object(target, resp).get("tokens")
    if not isinstance(tokens, list):
        raise not_openai(target, "a /tokenize answer without tokens")
    return tokens


def _detok(token: str) -> str:
    """Byte-level BPE token strings show a space as 'Ġ' and a newline as 'Ċ'."""
    return token.replace("Ġ", " ").replace("Ċ", "\n")


def stream_chat(target: Target, messages: list[dict], params: dict, on_piece: OnPiece | None = None, *,
                opens_think: bool = True, timeout: float = 300.0, cancel=None, think_budget: int | None = None,
                record_times: bool = False) -> Completion:
    """POST /v1/chat/completions with stream=True; calls on_piece for each piece of either channel.

    Reasoning comes as delta.reasoning (vLLM with a reasoning parser), delta.reasoning_content (older
    servers), or raw <think> tags in the content (no parser): the first delta decides which.
    With think_budget, the stream is closed once that many reasoning deltas came and no answer yet
    (finish_reason BUDGET_REACHED). Closing the connection (Ctrl-C, `cancel`) makes vLLM abort the request.
    """
    body = {"model": target.model, "messages": messages, **params}
    return _stream(target, "/chat/completions", body, on_piece, opens_think=opens_think, timeout=timeout,
                   cancel=cancel, think_budget=think_budget, record_times=record_times)


def stream_completion(target: Target, prompt: list[int] | str, params: dict, on_piece: OnPiece | None = None, *,
                      timeout: float = 300.0, cancel=None, record_times: bool = False,
                      started: Timing | None = None) -> Completion:
    """POST /v1/completions with stream=True: raw text, all of it the answer channel (no template, no parser).

    `started`: the timing of an earlier stream this one continues; times stay relative to its start."""
    body = {"model": target.model, "prompt": prompt, **params}
    return _stream(target, "/completions", body, on_piece, opens_think=False, timeout=timeout, cancel=cancel,
                   record_times=record_times, started=started)


def _stream(target: Target, path_tail: str, body: dict, on_piece: OnPiece | None, *, opens_think: bool,
            timeout: float, cancel, think_budget: int | None = None, record_times: bool = False,
            started: Timing | None = None) -> Completion:
    events = Events(target, on_piece, opens_think=opens_think, think_budget=think_budget,
                     record_times=record_times, started=started)
    conn, path = r1http.connect(target.base_url + path_tail, timeout=min(timeout, 5.0))
    events.sent()  # before connecting: the wait for a connection is part of what the user waits (and of vLLM's TTFT)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise unreachable(target, r1http.describe(exc)) from None
        if cancel is not None:
            # The socket itself: http.client drops conn.sock once a response says it will close the
            # connection, while the response goes on reading from it.
            cancel.append(conn.sock)
        conn.sock.settimeout(timeout)  # a short connect timeout, a long read timeout
        try:
            conn.request("POST", path, body=json.dumps(stream_body(body)).encode(),
                         headers={"Content-Type": "application/json", "Accept": "text/event-stream", **target.headers})
            resp = conn.getresponse()
        except (socket.timeout, TimeoutError):
            raise silent(target, timeout) from None
        except (OSError, http.client.HTTPException) as exc:
            raise unreachable(target, r1http.describe(exc)) from None
        if resp.status != 200:
            raise http_error(target, resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        content_type = resp.getheader("content-type") or ""
        if "event-stream" not in content_type:
            raise not_openai(target, f"{content_type or 'no content type'} {excerpt(resp.read(200))} to a streamed request")
        flush = getattr(on_piece, "flush", None)  # views that buffer their writes
        last_flush = 0.0
        try:
            for block in r1http.iter_body(resp):
                if events.feed(block):
                    break
                # Flush when caught up with the server (nothing more to read right now) or every 50 ms:
                # a reader behind a fast server writes to the terminal in batches, never lagging visibly.
                if flush is not None:
                    now = time.monotonic()
                    if now - last_flush > 0.05 or not select.select([resp.fp], [], [], 0)[0]:
                        flush()
                        last_flush = now
        except (socket.timeout, TimeoutError):
            raise StreamCut(events.out, f"no data for {round(timeout, 1):g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise StreamCut(events.out, r1http.describe(exc)) from None
        return events.finish()
    finally:
        conn.close()
