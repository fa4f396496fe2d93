"""r1 from Python: the turn engine `r1 ask`, `r1 chat` and `r1 eval` use, with the R1 rules applied.

    from r1cli import Client
    r1 = Client()                      # the running `r1 serve` server, as `r1 ask` finds it
    print(r1.ask("What is 2+3?").answer)
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator, Union

from r1cli import rules
from r1cli.client import stream, sync, turn
from r1cli.server import locate
from r1cli.client.turn import Answer, Sampling

__all__ = ["Answer", "AnswerText", "AsyncClient", "Client", "Conversation", "Done", "Reasoning", "Sampling"]


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's reasoning (the think block)."""

    text: str


@dataclass(frozen=True)
class AnswerText:
    """A piece of the answer (what follows the reasoning)."""

    text: str


@dataclass(frozen=True)
class Done:
    """The end of a turn, with everything about it."""

    answer: Answer


Event = Union[Reasoning, AnswerText, Done]


def _turn_args(question_or_messages: str | list, kwargs: dict) -> tuple[str, dict]:
    """A question, or OpenAI messages as their last question with the rest as history and system text."""
    if isinstance(question_or_messages, str):
        return question_or_messages, kwargs
    history, question, system = _split(question_or_messages)
    return question, {"system": system, "history": history, **kwargs}


def _split(messages: list) -> tuple[list[dict], str, str | None]:
    """OpenAI-format messages (dicts or SDK objects) as (history, last user question, system text)."""
    history, system = rules.plain_messages(messages)
    if not history or history[-1]["role"] != "user":
        raise ValueError("the last message must be the user's question")
    return history[:-1], history[-1]["content"], system


class Client:
    """A client for an R1 model served by vLLM (by `r1 serve` or any OpenAI-compatible vLLM).

    Every call applies DeepSeek's rules: no system prompt (its text is put before the first question),
    the math directive, temperature 0.6 / top_p 0.95, answers started inside <think>, only final answers
    kept in history, and the final answer extracted from the last \\boxed{}.
    """

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0):
        from r1cli import config

        # A sleeping server needs no wake from here: r1's middleware in it wakes it on the request itself.
        self.target, _ = locate.resolve(base_url or config.env_str("R1_BASE_URL"),
                                        api_key or config.env_str("R1_API_KEY"), model)
        self.timeout = timeout

    def __repr__(self) -> str:  # never the API key
        return f"{type(self).__name__}(base_url={self.target.base_url!r}, model={self.target.model!r})"

    @property
    def model(self) -> str:
        return sync.resolve_model(self.target)

    def server_info(self) -> dict:
        """What /v1/models says about the served model: id and max_model_len."""
        data = sync.get_json(self.target, self.target.base_url + "/models")
        first = (data.get("data") or [{}])[0]
        return {"base_url": self.target.base_url, "model": first.get("id"), "max_model_len": first.get("max_model_len")}

    def ask(self, question: str, *, system: str | None = None, math: bool = True, history: list | None = None,
            sampling: Sampling | None = None, on_piece=None, cancel: list | None = None,
            record_times: bool = False, **sampling_fields) -> Answer:
        """One question (after optional earlier messages) and its answer."""
        plain_history, _ = rules.plain_messages(history or [])
        return turn.run(self.target, question, Sampling.of(sampling, **sampling_fields), on_piece,
                        history=plain_history, system=system, math=math, timeout=self.timeout, cancel=cancel,
                        record_times=record_times)

    def chat(self, messages: list, *, math: bool = True, sampling: Sampling | None = None,
             **sampling_fields) -> Answer:
        """OpenAI-format messages (a system message is folded in) and the answer to the last one."""
        history, question, system = _split(messages)
        return self.ask(question, system=system, math=math, history=history, sampling=sampling, **sampling_fields)

    def stream(self, question_or_messages: str | list, **kwargs) -> Iterator[Event]:
        """Reasoning and AnswerText events as they arrive, then Done. Closing the iterator early (break)
        closes the connection, which makes the server stop generating."""
        question, kwargs = _turn_args(question_or_messages, kwargs)
        events: queue.Queue = queue.Queue()
        cancel: list = []

        def work() -> None:
            try:
                answer = self.ask(question, on_piece=lambda ch, text: events.put(
                    Reasoning(text) if ch == "reasoning" else AnswerText(text)), cancel=cancel, **kwargs)
                events.put(Done(answer))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
                events.put(exc)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while True:
                item = events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Done):
                    return
        finally:
            stream.hang_up(cancel)

    def raw(self, messages: list[dict], params: dict, *, record_times: bool = False,
            cancel: list | None = None) -> Answer:
        """One chat request exactly as given: no rules, no prompt check (benchmarks send their own shapes)."""
        sync.resolve_model(self.target)
        return turn.send(self.target, messages, _as_sampling(params), timeout=self.timeout, cancel=cancel,
                         record_times=record_times)


def _as_sampling(params: dict) -> Sampling:
    known = ("temperature", "top_p", "max_tokens", "seed")
    return Sampling(**{k: params[k] for k in known if k in params},
                    extra={k: v for k, v in params.items() if k not in known})


class AsyncClient:
    """The same client for asyncio: many turns at once (eval and bench use it).

    Every stream is read by the event loop itself (r1cli/client/aio.py), none by a thread, as vLLM's own benchmark
    client does; cancelling a task closes its connection, which makes vLLM abort the request. Only the small
    requests before a turn (the model's name, the prompt check) run in worker threads.
    """

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0):
        self.sync = Client(base_url, model, api_key, timeout)
        self.target = self.sync.target
        self.timeout = timeout

    @property
    def model(self) -> str:
        return self.sync.model

    async def server_info(self) -> dict:
        return await asyncio.to_thread(self.sync.server_info)

    async def ask(self, question: str, *, system: str | None = None, math: bool = True, history: list | None = None,
                  sampling: Sampling | None = None, on_piece=None, record_times: bool = False,
                  **sampling_fields) -> Answer:
        plain_history, _ = rules.plain_messages(history or [])
        return await turn.arun(self.target, question, Sampling.of(sampling, **sampling_fields), on_piece,
                               history=plain_history, system=system, math=math, timeout=self.timeout,
                               record_times=record_times)

    async def chat(self, messages: list, **kwargs) -> Answer:
        history, question, system = _split(messages)
        return await self.ask(question, system=system, history=history, **kwargs)

    async def raw(self, messages: list[dict], params: dict, *, record_times: bool = False) -> Answer:
        if not self.target.model:
            await asyncio.to_thread(sync.resolve_model, self.target)
        return await turn.asend(self.target, messages, _as_sampling(params), timeout=self.timeout,
                                record_times=record_times)

    async def stream(self, question_or_messages: str | list, **kwargs) -> AsyncIterator[Event]:
        """Reasoning and AnswerText events as they arrive, then Done; leaving early cancels the request."""
        question, kwargs = _turn_args(question_or_messages, kwargs)
        events: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(self.ask(question, on_piece=lambda ch, text: events.put_nowait(
            Reasoning(text) if ch == "reasoning" else AnswerText(text)), **kwargs))
        task.add_done_callback(lambda t: events.put_nowait(t))
        try:
            while True:
                item = await events.get()
                if isinstance(item, asyncio.Future):
                    yield Done(item.result())  # raises the turn's error, if any
                    return
                yield item
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def aclose(self) -> None:
        from r1cli.client import aio

        aio.close_idle()  # the kept-alive connections of this event loop
        await asyncio.sleep(0)  # the loop closes the sockets on its next turn: before aclose() returns

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


@dataclass
class Conversation:
    """A multi-turn chat that keeps only final answers in its history, as DeepSeek's template expects."""

    client: Client
    system: str | None = None
    math: bool = True
    history: list[dict] = field(default_factory=list)

    def ask(self, question: str, **sampling_fields) -> Answer:
        answer = self.client.ask(question, system=self.system, math=self.math, history=self.history,
                                 **sampling_fields)
        self.history += [{"role": "user", "content": question},
                         {"role": "assistant", "content": rules.final_only(answer.content)}]
        return answer
