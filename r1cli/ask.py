"""`r1 ask`: one question, one answer on stdout. The CLI parses flags; this does the work."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
from dataclasses import dataclass

from r1cli import client, rules
from r1cli.answers import Answer, final_answer
from r1cli.console import Environment
from r1cli.errors import NoAnswerError, UsageError

STDIN_LIMIT = 1 << 20  # 1 MiB: far beyond any R1 context window, small enough to refuse at once


@dataclass
class AskOptions:
    question: str
    system: str | None = None
    math: bool = True
    temperature: float = rules.DEFAULT_TEMPERATURE
    top_p: float = rules.DEFAULT_TOP_P
    max_tokens: int | None = None
    samples: int = 1
    show_thinking: bool = False
    json: bool = False
    timeout: float = 300.0
    seed: int | None = None


def read_question(arg: str | None, stdin, stdin_isatty: bool) -> str:
    """The argument, with stdin appended when stdin is piped (or the argument is `-`), as llm and ollama do."""
    parts = []
    if arg and arg != "-":
        parts.append(arg)
    if arg == "-" or not stdin_isatty:
        raw = stdin.buffer.read(STDIN_LIMIT + 1) if hasattr(stdin, "buffer") else stdin.read(STDIN_LIMIT + 1).encode()
        if len(raw) > STDIN_LIMIT:
            raise UsageError(f"stdin is larger than {STDIN_LIMIT >> 20} MiB: too long for a question",
                             hint="send the part the model needs; R1 context windows hold a few thousand words")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"stdin is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                             hint="convert it first, e.g. iconv -f latin1 -t utf-8") from None
        if text.strip():
            parts.append(text.strip("\n"))
    question = "\n\n".join(parts)
    if not question.strip():
        raise UsageError("the question is empty", hint='r1 ask "What is 2+3?"  or  echo "What is 2+3?" | r1 ask')
    return question


@dataclass
class Outcome:
    completion: client.Completion
    answer: Answer


def prepare(env: Environment, target: client.Target, opts: AskOptions) -> tuple[list[dict], dict]:
    """Messages and request fields after the R1 rules and the served template's check."""
    if opts.system:
        env.note("r1: R1 models take no system prompt: your --system text is put before the question")
    warning = rules.temperature_warning(opts.temperature)
    if warning:
        env.note(f"r1: warning: {warning}")
    messages, extras = client.fit_prompt(
        target, lambda prefill: rules.build_messages([], opts.question, system=opts.system, math=opts.math,
                                                       prefill_think=prefill))
    params = {**client.sampling_params(opts.temperature, opts.top_p, opts.max_tokens, opts.seed), **extras}
    return messages, params


def _one(target, messages, params, opts, on_piece, cancel) -> Outcome:
    completion = client.stream_chat(target, messages, params, on_piece, timeout=opts.timeout, cancel=cancel)
    return Outcome(completion, final_answer(completion.content, completion.reasoning))


def run(env: Environment, target: client.Target, opts: AskOptions) -> int:
    client.resolve_model(target)
    messages, params = prepare(env, target, opts)
    cancel: list = []
    try:
        if opts.samples > 1:
            outcomes = _sampled(target, messages, params, opts, cancel)
            return _report_samples(env, opts, outcomes)
        outcome = _single(env, target, messages, params, opts, cancel)
    finally:
        for conn in cancel:  # Ctrl-C or an error: closing the socket makes vLLM abort the generation
            with contextlib.suppress(Exception):
                conn.close()
    return _report(env, opts, outcome)


def _single(env, target, messages, params, opts, cancel) -> Outcome:
    thinking = _ThinkingView(env, opts.show_thinking)
    try:
        return _one(target, messages, params, opts, thinking, cancel)
    except client.StreamCut as cut:
        thinking.close()
        if cut.partial.content:  # what arrived is the user's: print it, the error says it is incomplete
            env.stdout.write(cut.partial.content + "\n")
            env.stdout.flush()
        raise
    finally:
        thinking.close()


def _sampled(target, messages, params, opts, cancel) -> list[Outcome]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(opts.samples, 32))
    futures = [pool.submit(_one, target, messages, params, opts, None, cancel) for _ in range(opts.samples)]
    try:
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class _ThinkingView:
    """--show-thinking streams reasoning to stderr (dim on a terminal); otherwise a terminal gets
    chat's spinner, counting tokens, until the answer is complete."""

    def __init__(self, env: Environment, show: bool):
        from r1cli import render

        self.env, self.show = env, show
        self.sanitize = render.sanitize
        self.spinner = render.Spinner(env.stderr).start() if not show and env.stderr_isatty else None
        self.started = False

    def __call__(self, channel: str, text: str) -> None:
        if self.spinner is not None:
            self.spinner.count += 1
        elif channel == "reasoning" and self.show:
            text = self.sanitize(text)  # no raw escape sequences from the model reach the terminal
            if self.env.err_color:
                text = f"\x1b[2m{text}\x1b[0m"
            self.env.stderr.write(text)
            self.env.stderr.flush()
            self.started = True

    def close(self) -> None:
        if self.spinner is not None:
            self.spinner.stop()
            self.spinner = None
        if self.started:
            self.env.stderr.write("\n")
            self.started = False


def _stats_line(c: client.Completion) -> str:
    bits = []
    if c.completion_tokens is not None:
        bits.append(f"{c.completion_tokens} tokens")
    bits.append(f"{c.timing.total_s:.2f} s")
    if c.timing.tokens_per_s:
        bits.append(f"{c.timing.tokens_per_s:.1f} tok/s")
    return ", ".join(bits)


def _check_answered(outcome: Outcome, opts: AskOptions) -> None:
    c = outcome.completion
    if c.finish_reason == "length" and not c.content.strip():
        used = c.completion_tokens or "all the"
        raise NoAnswerError(f"no answer: the reasoning was cut by the token limit after {used} tokens",
                            hint="raise --max-tokens (or leave it unset: the rest of the context window), "
                                 "or serve with a larger --max-model-len")
    if not outcome.answer.text:
        raise NoAnswerError("no answer: the model produced no text",
                            hint=f"finish reason: {c.finish_reason}; try again or check `r1 logs`")


def to_json(opts: AskOptions, outcome: Outcome) -> dict:
    c = outcome.completion
    return {
        "question": opts.question,
        "answer": outcome.answer.text,
        "boxed": outcome.answer.boxed,
        "content": c.content or None,
        "reasoning": c.reasoning or None,
        "finish_reason": c.finish_reason,
        "model": c.model,
        "usage": {"prompt_tokens": c.usage.get("prompt_tokens"), "completion_tokens": c.completion_tokens,
                  "reasoning_tokens": c.reasoning_tokens},
        "timing": {"ttft_s": _round(c.timing.ttft_s), "total_s": _round(c.timing.total_s),
                   "tokens_per_s": _round(c.timing.tokens_per_s)},
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _report(env: Environment, opts: AskOptions, outcome: Outcome) -> int:
    if opts.json:
        env.stdout.write(json.dumps(to_json(opts, outcome), ensure_ascii=False) + "\n")
        env.stdout.flush()
        _check_answered(outcome, opts)
        return 0
    _check_answered(outcome, opts)
    env.stdout.write(outcome.answer.text + "\n")
    env.stdout.flush()
    if env.stderr_isatty:
        env.dim(_stats_line(outcome.completion))
    return 0


def _report_samples(env: Environment, opts: AskOptions, outcomes: list[Outcome]) -> int:
    from r1cli.answers import majority_vote

    answered = [o for o in outcomes if o.answer.text and not (o.completion.finish_reason == "length" and not o.completion.content.strip())]
    winner, votes = majority_vote([o.answer.text for o in answered])
    if opts.json:
        best = next((o for o in answered if o.answer.text == winner), outcomes[0])
        data = to_json(opts, best)
        data["answer"] = winner
        data["votes"] = votes
        data["samples"] = [{"answer": o.answer.text, "boxed": o.answer.boxed, "finish_reason": o.completion.finish_reason,
                            "completion_tokens": o.completion.completion_tokens} for o in outcomes]
        env.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        env.stdout.flush()
    if winner is None:
        raise NoAnswerError(f"no answer in {len(outcomes)} samples: each was cut by the token limit or empty",
                            hint="raise --max-tokens")
    if not opts.json:
        env.stdout.write(winner + "\n")
        env.stdout.flush()
        if env.stderr_isatty:
            env.dim("votes: " + ", ".join(f"{a}: {n}" for a, n in votes.items()))
    return 0
