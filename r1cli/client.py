"""The OpenAI-compatible chat API as two channels, reasoning and answer, whatever the server does."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from r1cli import config, http as r1http
from r1cli.errors import ExitStatus, NoServerError, R1Error, UsageError

OnPiece = Callable[[str, str], None]  # (channel, text): channel is "reasoning" or "answer"


@dataclass
class Target:
    base_url: str  # ends in /v1
    api_key: str | None = None
    model: str | None = None

    @property
    def root(self) -> str:
        """The server's root, where vLLM's /health, /tokenize and /metrics live."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    @property
    def headers(self) -> dict[str, str]:
        return r1http.auth_headers(self.api_key)


def resolve_target(base_url: str | None, api_key: str | None, model: str | None) -> Target:
    """--base-url / R1_BASE_URL, else the running r1 server, else the article's http://127.0.0.1:8000/v1."""
    if base_url:
        return Target(normalize_base_url(base_url), api_key, model)
    from r1cli.server import state

    records, _ = state.load_all()
    live = [r for r in records if state.is_alive(r)]
    if live:
        record = next((r for r in live if r.port == config.DEFAULT_PORT), live[0])
        return Target(record.url, api_key, model or record.served_name)
    if records:  # r1 started a server that is gone: name it, not the article's default port
        record = next((r for r in records if r.port == config.DEFAULT_PORT), records[0])
        raise NoServerError(f"the r1 server at {record.url} is no longer running (it died)",
                            hint=f"`r1 logs --port {record.port}` shows why; start it again with `r1 serve`")
    return Target(config.DEFAULT_BASE_URL, api_key, model)


def normalize_base_url(base_url: str) -> str:
    """`localhost:8000`, `http://host:8000/`, `http://host:8000/v1` all mean the same /v1 root; a URL
    with no host or a bad port is a usage error, not a connection failure."""
    from urllib.parse import urlsplit

    url = base_url.strip()
    if "://" not in url:
        url = "http://" + url  # `localhost:8000` is what a hurried user types
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url must start with http:// or https://, got {base_url!r}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--base-url {base_url!r} has a port that is not a number from 1 to 65535",
                         hint="e.g. --base-url http://127.0.0.1:8000/v1") from None
    if not parts.hostname or port == 0:
        raise UsageError(f"--base-url {base_url!r} names no host", hint="e.g. --base-url http://127.0.0.1:8000/v1")
    url = url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def _unreachable(target: Target, why: str) -> NoServerError:
    return NoServerError(f"no server answers at {target.base_url} ({why})", hint="start one with `r1 serve`")


def _http_error(target: Target, status: int, body: bytes) -> R1Error:
    if status == 401:
        return R1Error(f"the server at {target.base_url} needs an API key",
                       hint="pass --api-key or set R1_API_KEY")
    message = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(message)
        err = data.get("error", data)
        message = err.get("message") if isinstance(err, dict) else str(err)
        message = message or data.get("detail") or body.decode()
    except (ValueError, AttributeError):
        pass
    message = " ".join(str(message).split())[:400]
    return R1Error(f"the server answered {status}: {message}" if message else f"the server answered {status}")


def get_json(target: Target, url: str, timeout: float = 5.0):
    try:
        resp = r1http.request("GET", url, headers=target.headers, timeout=timeout)
    except r1http.Unreachable as exc:
        raise _unreachable(target, str(exc)) from None
    if resp.status != 200:
        raise _http_error(target, resp.status, resp.body)
    return _json_object(target, resp)


def _json_object(target: Target, resp: r1http.Response) -> dict:
    """The body as a JSON object, or one line naming the server and what it sent instead."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise not_openai(target, f"{resp.headers.get('content-type') or 'a body'} {_excerpt(resp.body)}")
    return data


def not_openai(target: Target, what: str) -> R1Error:
    return R1Error(f"the server at {target.base_url} is not an OpenAI-compatible API: it sent {what}",
                   hint="check --base-url: it should point at a vLLM (or other OpenAI-compatible) server")


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


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
        raise _unreachable(target, str(exc)) from None
    if resp.status == 401:
        raise _http_error(target, 401, resp.body)
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
        raise _unreachable(target, str(exc)) from None
    if resp.status != 200:
        raise _http_error(target, resp.status, resp.body)
    tokens = _json_object(target, resp).get("tokens")
    if not isinstance(tokens, list):
        raise not_openai(target, "a /tokenize answer without tokens")
    return tokens


def _detok(token: str) -> str:
    """Byte-level BPE token strings show a space as 'Ġ' and a newline as 'Ċ'."""
    return token.replace("Ġ", " ").replace("Ċ", "\n")


@dataclass
class Timing:
    ttft_s: float | None = None  # first token (a chunk with a choice, text or not), seconds from before connecting
    answer_s: float | None = None  # first token of the answer
    total_s: float = 0.0
    tokens_per_s: float | None = None
    sent_at: float = 0.0  # time.perf_counter() before connecting (vLLM's clock starts there too)
    # With record_times: when each streamed chunk with a choice arrived, text or not (s after sent_at; as
    # vLLM's own benchmark times them), and the index of the chunk with the first answer text among them.
    token_times: list[float] | None = None
    answer_index: int | None = None


@dataclass
class Completion:
    model: str | None = None
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)
    reasoning_chunks: int = 0  # one streamed delta is one token for vLLM

    @property
    def completion_tokens(self) -> int | None:
        return self.usage.get("completion_tokens")


class StreamCut(R1Error):
    """The stream ended before the server said it was done."""

    def __init__(self, partial: Completion, why: str):
        super().__init__(f"the answer was cut off mid-stream ({why})", status=ExitStatus.ERROR,
                         hint="run it again; `r1 logs` shows what the server said")
        self.partial = partial


def hang_up(cancel: list) -> None:
    """Close every socket in `cancel`: vLLM aborts a request whose client went away. shutdown() first,
    so that a thread blocked reading it (ask --samples, the library's workers) wakes up at once: close()
    alone leaves the descriptor open while the response's reader still holds it."""
    for sock in cancel:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


# finish_reason of a stream r1 closed itself because the reasoning reached the thinking budget
BUDGET_REACHED = "think_budget"


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


class _Events:
    """What a stream's bytes mean, whoever reads them (the blocking reader here, the asyncio one in aclient):
    SSE lines -> chunks -> the two channels, usage, finish reason, the thinking budget, token times."""

    def __init__(self, target: Target, on_piece: OnPiece | None, *, opens_think: bool, think_budget: int | None,
                 record_times: bool, started: Timing | None):
        self.target, self.on_piece, self.opens_think, self.think_budget = target, on_piece, opens_think, think_budget
        self.out = Completion(model=target.model)
        if started is not None:
            self.out.timing = Timing(ttft_s=started.ttft_s, sent_at=started.sent_at,
                                     token_times=started.token_times if record_times else None)
        elif record_times:
            self.out.timing.token_times = []
        self.started = started
        self.t0 = 0.0
        self.splitter = None
        self.parsed_by_server = False
        self.budget_hit = False
        self.done = False
        self.pending = b""

    def sent(self) -> None:
        """The request goes out now: times count from here (or from the stream this one continues)."""
        self.t0 = self.started.sent_at if self.started is not None else time.perf_counter()
        self.out.timing.sent_at = self.t0

    def emit(self, channel: str, text: str) -> None:
        if not text:
            return
        out, timing = self.out, self.out.timing
        if channel == "answer":
            out.content += text
            if timing.answer_s is None:
                timing.answer_s = time.perf_counter() - self.t0
                if timing.token_times is not None:
                    timing.answer_index = len(timing.token_times) - 1
        else:
            out.reasoning += text
            out.reasoning_chunks += 1
            if self.think_budget is not None and out.reasoning_chunks >= self.think_budget and not out.content:
                self.budget_hit = True
        if self.on_piece:
            self.on_piece(channel, text)

    def feed(self, block: bytes) -> bool:
        """One network read; True once the stream is over ([DONE], or the thinking budget reached)."""
        target, out = self.target, self.out
        *lines, self.pending = (self.pending + block).split(b"\n")
        events = [line[5:].strip() for line in lines if line.startswith(b"data:")]
        if b"[DONE]" in events:
            self.done = True
            events = events[: events.index(b"[DONE]")]
        # One parse per network read, not per token: a fast server packs hundreds of events in one.
        for chunk in json.loads(b"[" + b",".join(events) + b"]") if events else ():
            if not isinstance(chunk, dict):
                raise not_openai(target, f"a stream event that is not an object: {_excerpt(json.dumps(chunk).encode())}")
            if "error" in chunk:
                err = chunk["error"]
                raise R1Error("the server reported an error mid-answer: "
                              + str(err.get("message", err) if isinstance(err, dict) else err))
            if isinstance(chunk.get("usage"), dict):
                out.usage = chunk["usage"]
            choices = chunk.get("choices") or ()
            if choices:
                # A token came, whether or not it has text yet (vLLM opens a chat stream with a role chunk
                # when the first token is out; a token may decode to nothing until the next): vLLM's TTFT,
                # and its benchmark times every such chunk, as r1 bench does.
                now = time.perf_counter() - self.t0
                if out.timing.ttft_s is None:
                    out.timing.ttft_s = now
                if out.timing.token_times is not None:
                    out.timing.token_times.append(now)
            for choice in choices:
                if not isinstance(choice, dict):
                    raise not_openai(target, f"a stream choice that is not an object: {_excerpt(json.dumps(choice).encode())}")
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning") or delta.get("reasoning_content")
                if reasoning:
                    self.parsed_by_server = True
                    self.emit("reasoning", reasoning)
                text = delta.get("content") or choice.get("text")  # chat delta, or completions text
                if text:
                    if self.parsed_by_server:
                        self.emit("answer", text)
                    else:
                        if self.splitter is None:
                            from r1cli.channels import ThinkSplitter

                            self.splitter = ThinkSplitter(in_think=self.opens_think)
                        for channel, piece in self.splitter.feed(text):
                            self.emit(channel, piece)
                if choice.get("finish_reason"):
                    out.finish_reason = choice["finish_reason"]
            if self.budget_hit:
                # The caller closes the connection, which aborts the request in vLLM; the turn goes on without it.
                out.finish_reason = BUDGET_REACHED
                self.done = True
                break
        return self.done

    def finish(self) -> Completion:
        """After the last read: the rest of a raw think split, the totals; StreamCut if it ended early."""
        out = self.out
        if self.splitter is not None and not self.budget_hit:
            for channel, piece in self.splitter.flush():
                self.emit(channel, piece)
        if not self.done:
            raise StreamCut(out, "the connection closed before the end")
        out.timing.total_s = time.perf_counter() - self.t0
        tokens = out.completion_tokens
        if self.budget_hit and not tokens:
            tokens = out.reasoning_chunks
            out.usage = {**out.usage, "completion_tokens": tokens}
        if tokens and out.timing.ttft_s is not None and out.timing.total_s > out.timing.ttft_s:
            out.timing.tokens_per_s = tokens / (out.timing.total_s - out.timing.ttft_s)
        return out


def stream_body(body: dict) -> dict:
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


def silent(target: Target, timeout: float) -> R1Error:
    return R1Error(f"the server at {target.base_url} accepted the request but sent nothing for {round(timeout, 1):g} s",
                   hint="raise --timeout, or see what the server is doing: `r1 status`, `r1 logs`")


def _stream(target: Target, path_tail: str, body: dict, on_piece: OnPiece | None, *, opens_think: bool,
            timeout: float, cancel, think_budget: int | None = None, record_times: bool = False,
            started: Timing | None = None) -> Completion:
    events = _Events(target, on_piece, opens_think=opens_think, think_budget=think_budget,
                     record_times=record_times, started=started)
    conn, path = r1http.connect(target.base_url + path_tail, timeout=min(timeout, 5.0))
    events.sent()  # before connecting: the wait for a connection is part of what the user waits (and of vLLM's TTFT)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise _unreachable(target, r1http.describe(exc)) from None
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
            raise _unreachable(target, r1http.describe(exc)) from None
        if resp.status != 200:
            raise _http_error(target, resp.status, resp.read())
        content_type = resp.getheader("content-type") or ""
        if "event-stream" not in content_type:
            raise not_openai(target, f"{content_type or 'no content type'} {_excerpt(resp.read(200))} to a streamed request")
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
