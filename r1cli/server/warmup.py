"""The warm-up r1 sends before it calls a server ready: the first users must not pay for it.

Measured on one H200 (../shared/gpu/README.md): the first burst of 64 requests after /health answered ran
at 7,407 tok/s with p99 TTFT 2,348 ms, the same burst again at 15,944 tok/s and 160 ms. So before "ready",
r1 sends what users will: short requests at the batch sizes they hit (1, 8, 64, 256 at once, times the
replicas, so that each engine sees each size), half through the chat endpoint (template, reasoning
parser, streaming) and half through completions (what `vllm bench serve` sends), every one generating
its full few tokens (ignore_eos), and one long prefill per replica near the context window (long
attention, chunked prefill). On the CPU demo it is two tiny requests: the demo starts in a minute on
two cores and has no kernels to warm.

`rounds_for` is pure; `run` sends them with r1's own stdlib HTTP client, one thread per request.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from r1cli.client import http

GPU_BATCHES = (1, 8, 64, 256)
SHORT_PROMPT = 128  # tokens, as `vllm bench serve --random-input-len 128` (the measurements)
SHORT_OUTPUT = 16
LONG_MARGIN = 16  # tokens the long prefill leaves free in the window (its one generated token and slack)
CPU_OUTPUT = 2
MAX_AT_ONCE = 1024  # requests (threads) in one round, whatever the replicas: 8 replicas get 128 each at most


@dataclass(frozen=True)
class Request:
    endpoint: str  # "chat" or "completions"
    prompt_tokens: int
    max_tokens: int


@dataclass(frozen=True)
class Round:
    """Requests sent at once; the next round starts when all of them answered."""
    requests: tuple[Request, ...]
    what: str  # for the stage line: "64 at once", "a 32,752-token prefill"


@dataclass
class Result:
    sent: int
    failed: int
    seconds: float
    first_error: str | None = None
    rounds: list[str] = field(default_factory=list)


def rounds_for(window: int, *, cpu: bool, replicas: int = 1) -> list[Round]:
    """What to send: GPU_BATCHES at once (each times REPLICAS) and one long prefill per replica; on the
    CPU two tiny requests (one per endpoint)."""
    if cpu:
        return [Round((Request("chat", 8, CPU_OUTPUT), Request("completions", 8, CPU_OUTPUT)), "2 at once")]
    short = min(SHORT_PROMPT, max(1, window // 4))
    out = []
    for batch in GPU_BATCHES:
        n = min(batch * replicas, MAX_AT_ONCE)
        reqs = tuple(Request("chat" if i % 2 == 0 else "completions", short, SHORT_OUTPUT) for i in range(n))
        out.append(Round(reqs, f"{n} at once"))
    long = window - LONG_MARGIN
    if long > short:
        out.append(Round(tuple(Request("completions", long, 1) for _ in range(replicas)),
                         f"{'a' if replicas == 1 else replicas} {long:,}-token prefill{'s' if replicas > 1 else ''}"))
    return out


def describe(rounds: list[Round]) -> str:
    """`1, 8, 64, 256 at once + a 32,752-token prefill`."""
    batches = [r.what.removesuffix(" at once") for r in rounds if r.what.endswith(" at once")]
    others = [r.what for r in rounds if not r.what.endswith(" at once")]
    text = ", ".join(batches) + " at once" if batches else ""
    return " + ".join([t for t in [text, *others] if t])


def token_ids(count: int, vocab_size: int | None, salt: int = 0) -> list[int]:
    """COUNT ordinary token ids: from the middle of the vocabulary's first part, away from the byte tokens
    at its start and the special tokens at its end. SALT varies them, so that prefix caching does not
    turn every prompt after the first into a cache hit."""
    vocab = vocab_size or 32_000
    base = min(1000, vocab // 4)
    span = max(1, min(5000, vocab - base - 300))
    return [base + (i * 7 + salt * 131) % span for i in range(count)]


def _body(req: Request, model: str, vocab_size: int | None, salt: int) -> tuple[str, dict]:
    common = {"model": model, "max_tokens": req.max_tokens, "ignore_eos": True, "temperature": 0.6}
    if req.endpoint == "chat":
        # One short word per token, roughly; the chat template adds its own few.
        words = " ".join(("warm", "up", "the", "server", "now")[(i + salt) % 5] for i in range(req.prompt_tokens))
        return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": words}], "stream": True,
                                        "stream_options": {"include_usage": True}}
    return "/v1/completions", {**common, "prompt": token_ids(req.prompt_tokens, vocab_size, salt)}


def run(root: str, model: str, rounds: list[Round], *, api_key: str | None = None, vocab_size: int | None = None,
        timeout: float = 120.0, deadline: float | None = None) -> Result:
    """Send ROUNDS to the server at ROOT (no /v1), one round at a time; never raises for a failed request
    (counted, the first one named). DEADLINE (time.monotonic()) bounds the whole warm-up."""
    headers = http.auth_headers(api_key)
    t0 = time.monotonic()
    result = Result(0, 0, 0.0)
    salt = 0
    for rnd in rounds:
        remaining = (deadline - time.monotonic()) if deadline is not None else timeout
        if remaining <= 0:
            break
        jobs = []
        for req in rnd.requests:
            salt += 1
            jobs.append(_body(req, model, vocab_size, salt))
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            errors = list(pool.map(lambda job: _send(root + job[0], job[1], headers, min(timeout, remaining)), jobs))
        result.sent += len(jobs)
        result.rounds.append(rnd.what)
        for error in errors:
            if error is not None:
                result.failed += 1
                result.first_error = result.first_error or error
    result.seconds = time.monotonic() - t0
    return result


def _send(url: str, body: dict, headers: dict, timeout: float) -> str | None:
    """None when the server answered 200, else one line saying what went wrong."""
    try:
        resp = http.request("POST", url, body=body, headers=headers, timeout=timeout)
    except http.Unreachable as exc:
        return f"{url.rsplit('/v1', 1)[-1]}: {exc}"
    if resp.status != 200:
        return f"{url.rsplit('/v1', 1)[-1]}: HTTP {resp.status} {resp.body[:200].decode('utf-8', 'replace')}"
    return None
