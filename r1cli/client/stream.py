"""The stream layer that the blocking (sync.py) and asyncio (aio.py) transports share: what a stream's
bytes mean (Events), what a turn's request gives back (Completion, Timing), how a stream ends early
(StreamCut, hang_up, BUDGET_REACHED), and the one-line errors for a server that answers wrongly."""

from __future__ import annotations

import contextlib
import html
import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from r1cli.client.target import Target
from r1cli.errors import ExitStatus, NoServerError, R1Error, UsageError

OnPiece = Callable[[str, str], None]  # (channel, text): channel is "reasoning" or "answer"


def unreachable(target: Target, why: str) -> NoServerError:
    from urllib.parse import urlsplit

    from r1cli import machine

    return NoServerError(f"no server answers at {target.base_url} ({why})",
                         hint=machine.serve_fix(urlsplit(target.base_url).port))


def http_error(target: Target, status: int, body: bytes, headers: dict[str, str] | None = None) -> R1Error:
    """One line for an answer other than 200. An OpenAI-compatible server says what went wrong in JSON: its
    message is shown, and a request it refused as bad (400, 404, 422: a model it does not serve, a field out
    of range) is bad usage. Anything else below 500 (an HTML 404 page) comes from another kind of server.
    HEADERS: the response's, names in lower case (its Server and Content-Type say what answered)."""
    if status == 401:
        return R1Error(f"the server at {target.base_url} needs an API key",
                       hint="pass --api-key or set R1_API_KEY")
    headers = headers or {}
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, (dict, list)) and status < 500:
        server = f" (server {headers['server']})" if headers.get("server") else ""
        return not_openai(target, f"{status}{server} with {headers.get('content-type') or 'a body'} {excerpt(body)}",
                          verb="answered")
    message = text
    if isinstance(data, dict):
        err = data.get("error", data)
        message = (err.get("message") if isinstance(err, dict) else str(err)) or data.get("detail") or text
    message = " ".join(str(message).split())[:400]
    said = f"the server answered {status}: {message}" if message else f"the server answered {status}"
    if status in (400, 404, 422) and data is not None:
        return UsageError(said, hint=_bad_request_hint(target, message))
    return R1Error(said)


def _bad_request_hint(target: Target, message: str) -> str | None:
    if "does not exist" in message and "model" in message.lower():
        return "leave -m out (r1 then asks the server which model it serves), or give one the server names"
    return None


def not_openai(target: Target, what: str, *, verb: str = "sent") -> R1Error:
    """WHAT answers at the target is not an OpenAI-compatible API (a web page, a stream of something else):
    no server r1 can talk to is there (exit 3, NO_SERVER)."""
    return NoServerError(f"the server at {target.base_url} is not an OpenAI-compatible API: it {verb} {what}",
                         hint="check --base-url or --port: it should point at a vLLM (or other OpenAI-compatible) server")


_TAG = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def excerpt(body: bytes) -> str:
    """The first words of a body, quoted, for a one-line error: of an HTML page its text, not its markup."""
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        title = re.search(r"<title[^>]*>(.*?)</title\s*>", text, re.IGNORECASE | re.DOTALL)
        text = html.unescape(_TAG.sub(" ", text).strip() or (title.group(1) if title else ""))
    text = " ".join(text.split())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


@dataclass
class Timing:
    ttft_s: float | None = None  # first token (a chunk with a choice, text or not), seconds from before connecting
    answer_s: float | None = None  # first token of the answer
    total_s: float = 0.0
    # Decode speed: tokens after the first over the time from the first token to the last, as vLLM's TPOT
    # counts it; None when under 2 tokens or under MIN_RATE_WINDOW_S apart (one read: no rate to speak of).
    tokens_per_s: float | None = None
    sent_at: float = 0.0  # time.perf_counter() before connecting (vLLM's clock starts there too)
    # With record_times: when each streamed chunk with a choice arrived, text or not (s after sent_at; as
    # vLLM's own benchmark times them), and the index of the chunk with the first answer text among them.
    token_times: list[float] | None = None
    answer_index: int | None = None
    last_token_s: float | None = None  # the last chunk with a choice, seconds after sent_at


@dataclass
class Completion:
    model: str | None = None
    reasoning: str = ""
    content: str = ""
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)
    reasoning_chunks: int = 0  # streamed reasoning deltas: r1's own count, not tokens (a delta may hold several)
    # The server's count: completion_tokens (per-chunk usage) when the last reasoning text came; None when the
    # server sends no per-chunk usage (then only its final usage's completion_tokens_details may say).
    reasoning_tokens: int | None = None
    # How the thinking budget was held: "server" (vLLM's thinking_token_budget), "client" (r1 closed the stream
    # at the budget, by the server's per-chunk token count), "client-deltas" (r1 closed it by counting reasoning
    # deltas: a server without per-chunk usage); None without a budget.
    budget_mode: str | None = None

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
MIN_RATE_WINDOW_S = 0.05  # below this between the first and last token, a tokens/s figure means nothing


class Events:
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
        self.per_chunk_usage = False  # the server counts tokens on every chunk (continuous_usage_stats)
        # Where the server's reasoning parser has the stream: None before its first reasoning delta, then
        # "reasoning", then "answer" from its first content delta. A delta with the key counts, text or not:
        # vLLM 0.25 sends `{"reasoning": ""}` for each token that decodes to nothing (random weights: most).
        self.server_phase: str | None = None
        self.tokens_so_far: int | None = None  # its completion_tokens as of the latest chunk
        self.last_token_at: float | None = None

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
                raise not_openai(target, f"a stream event that is not an object: {excerpt(json.dumps(chunk).encode())}")
            if "error" in chunk:
                err = chunk["error"]
                raise R1Error("the server reported an error mid-answer: "
                              + str(err.get("message", err) if isinstance(err, dict) else err))
            usage = chunk.get("usage")
            choices = chunk.get("choices") or ()
            if isinstance(usage, dict):
                out.usage = usage
                if choices and isinstance(usage.get("completion_tokens"), int):
                    self.per_chunk_usage = True
                    self.tokens_so_far = usage["completion_tokens"]
            if choices:
                # A token came, whether or not it has text yet (vLLM opens a chat stream with a role chunk
                # when the first token is out; a token may decode to nothing until the next): vLLM's TTFT,
                # and its benchmark times every such chunk, as r1 bench does.
                now = time.perf_counter() - self.t0
                self.last_token_at = now
                if out.timing.ttft_s is None:
                    out.timing.ttft_s = now
                if out.timing.token_times is not None:
                    out.timing.token_times.append(now)
            for choice in choices:
                if not isinstance(choice, dict):
                    raise not_openai(target, f"a stream choice that is not an object: {excerpt(json.dumps(choice).encode())}")
                delta = choice.get("delta") or {}
                reasoning_key = "reasoning" if "reasoning" in delta else "reasoning_content"
                if delta.get(reasoning_key) is not None and self.server_phase != "answer":
                    self.parsed_by_server = True
                    self.server_phase = "reasoning"
                    self.emit("reasoning", delta[reasoning_key])
                if self.server_phase == "reasoning" and delta.get("content") is not None:
                    self.server_phase = "answer"  # the parser closed the thinking, with text or not yet
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
            if choices and self._thinking():
                if self.per_chunk_usage:
                    out.reasoning_tokens = self.tokens_so_far
                if self.think_budget is not None and self._thinking_tokens() >= self.think_budget:
                    self.budget_hit = True
            if self.budget_hit:
                # The caller closes the connection, which aborts the request in vLLM; the turn goes on without it.
                out.finish_reason = BUDGET_REACHED
                self.done = True
                break
        return self.done

    def _thinking(self) -> bool:
        """Whether the model is still reasoning as of this chunk: by the server's parser where it has one
        (every token counts, text or not), else by r1's own split of the text (no answer text yet)."""
        if self.parsed_by_server:
            return self.server_phase == "reasoning"
        return not self.out.content and bool(self.out.reasoning)

    def _thinking_tokens(self) -> int:
        """Tokens spent thinking so far: the server's own count where it sends one per chunk, else r1's
        count of reasoning deltas (which undercounts merged or textless tokens: budget_mode says so)."""
        return self.tokens_so_far if self.per_chunk_usage else self.out.reasoning_chunks

    def finish(self) -> Completion:
        """After the last read: the rest of a raw think split, the totals; StreamCut if it ended early."""
        out = self.out
        if self.splitter is not None and not self.budget_hit:
            for channel, piece in self.splitter.flush():
                self.emit(channel, piece)
        if not self.done:
            raise StreamCut(out, "the connection closed before the end")
        out.timing.total_s = time.perf_counter() - self.t0
        if self.budget_hit:
            out.budget_mode = "client" if self.per_chunk_usage else "client-deltas"
            if not out.completion_tokens or not self.per_chunk_usage:
                # The stream was closed before its final usage: the server's count so far, else the deltas.
                out.usage = {**out.usage, "completion_tokens": self._thinking_tokens()}
        if out.reasoning_tokens is None and out.reasoning:
            reported = (out.usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
            out.reasoning_tokens = reported or None  # vLLM 0.32 reports 0 even after parsing reasoning
        out.timing.last_token_s = self.last_token_at
        out.timing.tokens_per_s = decode_rate(out.completion_tokens, out.timing)
        return out


def decode_rate(tokens: int | None, timing: Timing) -> float | None:
    """Tokens after the first over the time from the first to the last (vLLM's TPOT, inverted); None when
    there is no window to measure: fewer than 2 tokens, or all of them in under MIN_RATE_WINDOW_S (a short
    stream read in one go gave 13,000-550,000 tokens/s before)."""
    first, last = timing.ttft_s, timing.last_token_s
    if not tokens or tokens < 2 or first is None or last is None or last - first < MIN_RATE_WINDOW_S:
        return None
    return (tokens - 1) / (last - first)


def stream_body(body: dict) -> dict:
    # continuous_usage_stats: vLLM counts the tokens on every chunk, so the thinking budget and the reasoning
    # token count are the server's own, not a count of text deltas.
    return {**body, "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}


def silent(target: Target, timeout: float) -> R1Error:
    return R1Error(f"the server at {target.base_url} accepted the request but sent nothing for {round(timeout, 1):g} s",
                   hint="raise --timeout, or see what the server is doing: `r1 status`, `r1 logs`")
