"""One turn, the same for `r1 ask`, `r1 chat`, `r1 eval` and Python users: fit the prompt (R1 rules,
context check, think prefill, oldest history dropped when it does not fit), send, stream the two
channels, force an answer when a thinking budget runs out, extract the final answer, account tokens
and timing. Closing the connection (Ctrl-C, a cancelled task) makes vLLM abort the request.

Stdlib only at import time: this is on the CLI's hot path.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from r1cli import rules
from r1cli.answers import final_answer
from r1cli.client import stream, sync
from r1cli.client.stream import OnPiece, Timing
from r1cli.client.target import Target
from r1cli.errors import R1Error

__all__ = ["Answer", "Fitted", "Sampling", "Timing", "arun", "asend", "fit", "prepare", "run", "send"]


@dataclass
class Sampling:
    """What a caller may set for one request. The defaults are DeepSeek's (rules.DEFAULT_*)."""

    temperature: float = rules.DEFAULT_TEMPERATURE
    top_p: float = rules.DEFAULT_TOP_P
    max_tokens: int | None = None
    seed: int | None = None
    think_budget: int | None = None  # reasoning tokens before r1 closes the think block itself
    extra: dict = field(default_factory=dict)  # other request fields, sent as they are

    def params(self) -> dict:
        params: dict = {"temperature": self.temperature, "top_p": self.top_p}
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.seed is not None:
            params["seed"] = self.seed
        return {**params, **self.extra}

    @classmethod
    def of(cls, sampling: "Sampling | None" = None, **fields) -> "Sampling":
        """A Sampling from an optional base and keyword overrides (None means: keep the base's)."""
        base = sampling or cls()
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown sampling field(s): {', '.join(sorted(unknown))}")
        return cls(**{**asdict(base), **{k: v for k, v in fields.items() if v is not None}})


@dataclass
class Answer:
    """One finished turn."""

    answer: str  # the final answer: the last \\boxed{} content, else the answer text; "" if none
    boxed: bool
    source: str  # where the answer was found: "content", "reasoning", "text" or "none"
    reasoning: str
    content: str
    finish_reason: str | None
    usage: dict
    timing: Timing
    model: str | None = None
    budget_forced: bool = False
    reasoning_chunks: int = 0  # streamed reasoning deltas: r1's own count, not tokens
    history_dropped: int = 0  # earlier turns left out so the prompt fits the context window
    server_reasoning_tokens: int | None = None  # the server's count (stream.Completion.reasoning_tokens)
    budget_mode: str | None = None  # stream.Completion.budget_mode: how a thinking budget was held

    @property
    def prompt_tokens(self) -> int | None:
        return self.usage.get("prompt_tokens")

    @property
    def completion_tokens(self) -> int | None:
        return self.usage.get("completion_tokens")

    @property
    def reasoning_tokens(self) -> int | None:
        """Tokens spent reasoning, by the server's count (its per-chunk usage; tokens without text count too);
        None where it gives none."""
        if self.server_reasoning_tokens is not None:
            return self.server_reasoning_tokens
        return 0 if not self.reasoning else None

    @property
    def budget_spent(self) -> str:
        """What the thinking took before the budget closed it, in the server's tokens where it counts them."""
        if self.server_reasoning_tokens is not None:
            return f"{self.server_reasoning_tokens} reasoning tokens"
        return f"{self.reasoning_chunks} reasoning deltas (the server sends no per-token count)"

    @property
    def truncated(self) -> bool:
        """The token limit cut the output before any answer text came."""
        return self.finish_reason == "length" and not self.content.strip()

    def __str__(self) -> str:
        """The final answer: `print(client.ask(...))` prints it; repr() keeps the dataclass's fields."""
        return self.answer

    def to_dict(self) -> dict:
        t = self.timing
        return {
            "answer": self.answer, "boxed": self.boxed, "source": self.source,
            "content": self.content or None, "reasoning": self.reasoning or None,
            "finish_reason": self.finish_reason, "model": self.model, "budget_forced": self.budget_forced,
            "budget_mode": self.budget_mode,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                      "reasoning_tokens": self.reasoning_tokens},
            "timing": {"ttft_s": _round(t.ttft_s), "answer_s": _round(t.answer_s), "total_s": _round(t.total_s),
                       "tokens_per_s": _round(t.tokens_per_s)},
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@dataclass
class Fitted:
    """Messages ready to send and what the fit found out."""

    messages: list[dict]
    extras: dict  # request fields the messages need (the think prefill's continue_final_message)
    history_dropped: int = 0


def fit(target: Target, question: str, *, history: list[dict] | None = None, system: str | None = None,
        math: bool = True, timeout: float = 10.0) -> Fitted:
    """The R1 rules applied, checked against the served template and window.

    When the prompt is too long and there is history, the oldest exchanges are left out until it fits
    (chat keeps going instead of failing every later turn); the question alone too long is PromptTooLong.
    """
    history = list(history or [])
    dropped = 0
    while True:
        try:
            messages, extras = sync.fit_prompt(
                target, lambda prefill: rules.build_messages(history, question, system=system, math=math,
                                                             prefill_think=prefill), timeout=timeout)
            return Fitted(messages, extras, dropped)
        except sync.PromptTooLong:
            if not history:
                raise
            cut = _first_exchange(history)
            del history[:cut]
            dropped += 1


def _first_exchange(history: list[dict]) -> int:
    """How many messages the oldest user+assistant exchange spans."""
    n = 1
    while n < len(history) and history[n].get("role") != "user":
        n += 1
    return n


def prepare(target: Target, question: str, *, history: list[dict] | None, system: str | None, math: bool,
            deadline: float) -> Fitted:
    """The model's name and the fitted prompt: the small requests before a turn's stream."""
    sync.resolve_model(target, timeout=max(0.1, min(10.0, deadline - time.monotonic())))
    return fit(target, question, history=history, system=system, math=math,
               timeout=max(0.1, min(10.0, deadline - time.monotonic())))


def run(target: Target, question: str, sampling: Sampling | None = None, on_piece: OnPiece | None = None, *,
        history: list[dict] | None = None, system: str | None = None, math: bool = True, timeout: float = 300.0,
        cancel: list | None = None, record_times: bool = False) -> Answer:
    """One question after optional history, under the R1 rules; the whole turn within `timeout` seconds
    (model lookup, prompt check and the stream's silences share that one deadline)."""
    deadline = time.monotonic() + timeout
    fitted = prepare(target, question, history=history, system=system, math=math, deadline=deadline)
    answer = send(target, fitted.messages, sampling or Sampling(), on_piece, extras=fitted.extras,
                  timeout=max(0.1, deadline - time.monotonic()), cancel=cancel, record_times=record_times)
    answer.history_dropped = fitted.history_dropped
    return answer


async def arun(target: Target, question: str, sampling: Sampling | None = None, on_piece: OnPiece | None = None, *,
               history: list[dict] | None = None, system: str | None = None, math: bool = True,
               timeout: float = 300.0, record_times: bool = False) -> Answer:
    """run() for asyncio: the small requests before the stream in a worker thread, the stream on the loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    fitted = await asyncio.to_thread(prepare, target, question, history=history, system=system, math=math,
                                     deadline=deadline)
    answer = await asend(target, fitted.messages, sampling or Sampling(), on_piece, extras=fitted.extras,
                         timeout=max(0.1, deadline - time.monotonic()), record_times=record_times)
    answer.history_dropped = fitted.history_dropped
    return answer


def _budget_fields(target: Target, sampling: Sampling) -> dict:
    """vLLM's own per-request thinking budget, unless this server refused it before."""
    if sampling.think_budget is None or target.server_budget is False:
        return {}
    return {"thinking_token_budget": sampling.think_budget}


def _budget_refused(target: Target, exc: R1Error, sent: dict) -> bool:
    """A server that answers 400 to thinking_token_budget (vLLM 0.25's V2 model runner: "not yet supported
    by the V2 model runner"): remember it, so this and later turns hold the budget on the client."""
    if sent and "thinking_token_budget" in exc.message:
        target.server_budget = False
        return True
    return False


def _held_by(completion: stream.Completion, sent: dict) -> stream.Completion:
    if completion.budget_mode is None and sent:
        completion.budget_mode = "server"
    return completion


# send() and asend() differ only in their I/O: _send_steps is the logic, written once. It yields what to do
# next, ("chat", params), ("tokenize", reasoning) or ("completion", token ids, params, first completion), and
# is sent the result (or thrown the R1Error it raised); its return value is the Answer.


def _send_steps(target: Target, messages: list[dict], sampling: Sampling, extras: dict):
    """Stream one chat request as it is (no rules), then force an answer if the thinking budget ran out."""
    while True:
        budget = _budget_fields(target, sampling)
        try:
            completion = yield ("chat", {**sampling.params(), **extras, **budget})
            break
        except R1Error as exc:
            if not _budget_refused(target, exc, budget):
                raise
    completion = _held_by(completion, budget)
    if completion.finish_reason != stream.BUDGET_REACHED:
        return _answer(completion)
    prompt, forced = yield ("tokenize", completion.reasoning)
    rest = yield ("completion", prompt + forced, _continuation_params(sampling, completion), completion)
    return _answer(_joined(completion, rest, len(prompt)), forced=True)


def send(target: Target, messages: list[dict], sampling: Sampling, on_piece: OnPiece | None = None, *,
         extras: dict | None = None, timeout: float = 300.0, cancel: list | None = None,
         record_times: bool = False) -> Answer:
    """Stream one chat request as it is (no rules), then force an answer if the thinking budget ran out."""
    extras = extras or {}

    def do(step):
        if step[0] == "chat":
            return sync.stream_chat(target, messages, step[1], on_piece, timeout=timeout, cancel=cancel,
                                    think_budget=sampling.think_budget, record_times=record_times)
        if step[0] == "tokenize":
            return continuation_prompt(target, messages, extras, step[1], timeout)
        return sync.stream_completion(target, step[1], step[2], on_piece, timeout=timeout, cancel=cancel,
                                      record_times=record_times, started=step[3].timing)

    steps = _send_steps(target, messages, sampling, extras)
    step = next(steps)
    while True:
        try:
            result = do(step)
        except R1Error as exc:
            step = steps.throw(exc)  # the steps decide: try again, or the error goes on up
            continue
        try:
            step = steps.send(result)
        except StopIteration as done:
            return done.value


async def asend(target: Target, messages: list[dict], sampling: Sampling, on_piece: OnPiece | None = None, *,
                extras: dict | None = None, timeout: float = 300.0, record_times: bool = False) -> Answer:
    """send() for asyncio: the streams on the event loop (aio), cancelled with the task."""
    import asyncio

    from r1cli.client import aio

    extras = extras or {}

    async def do(step):
        if step[0] == "chat":
            return await aio.stream_chat(target, messages, step[1], on_piece, timeout=timeout,
                                         think_budget=sampling.think_budget, record_times=record_times)
        if step[0] == "tokenize":
            return await asyncio.to_thread(continuation_prompt, target, messages, extras, step[1], timeout)
        return await aio.stream_completion(target, step[1], step[2], on_piece, timeout=timeout,
                                           record_times=record_times, started=step[3].timing)

    steps = _send_steps(target, messages, sampling, extras)
    step = next(steps)
    while True:
        try:
            result = await do(step)
        except R1Error as exc:
            step = steps.throw(exc)
            continue
        try:
            step = steps.send(result)
        except StopIteration as done:
            return done.value


def _answer(completion: stream.Completion, forced: bool = False) -> Answer:
    extracted = final_answer(completion.content, completion.reasoning)
    return Answer(extracted.text, extracted.boxed, extracted.source, completion.reasoning, completion.content,
                  completion.finish_reason, completion.usage, completion.timing, completion.model, forced,
                  completion.reasoning_chunks, server_reasoning_tokens=completion.reasoning_tokens,
                  budget_mode=completion.budget_mode)


# After the budget, the reasoning is closed the way the model closes it itself, so what follows is its answer.
FORCED_CLOSE = "\n</think>\n\n"


def continuation_prompt(target: Target, messages: list[dict], extras: dict, reasoning: str,
                        timeout: float) -> tuple[list[int], list[int]]:
    """Token ids of the rendered prompt, and of the reasoning so far with its think block closed.

    Budget forcing goes through the completions API, because DeepSeek's chat template drops everything
    before `</think>` of an assistant message, so a chat continuation cannot carry the reasoning. The prompt
    is rendered by the server itself (/tokenize with the chat messages), so the template in use is the one
    applied.
    """
    prefilled = bool(extras.get("continue_final_message"))
    render = {"messages": messages, "add_generation_prompt": not prefilled}
    if prefilled:
        render["continue_final_message"] = True
    prompt = sync.tokenize(target, render, timeout=timeout)
    forced = sync.tokenize(target, {"prompt": reasoning.rstrip() + FORCED_CLOSE, "add_special_tokens": False},
                             timeout=timeout)
    return prompt, forced


def _continuation_params(sampling: Sampling, first: stream.Completion) -> dict:
    params = sampling.params()
    if sampling.max_tokens is not None:
        params["max_tokens"] = max(1, sampling.max_tokens - (first.completion_tokens or first.reasoning_chunks))
    return params


def _joined(first: stream.Completion, rest: stream.Completion, prompt_tokens: int) -> stream.Completion:
    """The forced answer with the reasoning before it: one completion, both parts counted (the server's counts
    where it gave them: the first stream's tokens up to the cut, then the continuation's)."""
    thought = first.completion_tokens or first.reasoning_chunks
    used = thought + (rest.completion_tokens or 0)
    rest.reasoning = first.reasoning
    rest.reasoning_chunks = first.reasoning_chunks
    rest.reasoning_tokens = first.reasoning_tokens
    rest.budget_mode = first.budget_mode
    rest.usage = {**rest.usage, "prompt_tokens": prompt_tokens, "completion_tokens": used,
                  "completion_tokens_details": {"reasoning_tokens": first.reasoning_tokens}}
    rest.timing.tokens_per_s = stream.decode_rate(used, rest.timing)
    return rest
