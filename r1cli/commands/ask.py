"""`r1 ask`: one question, one answer on stdout. The CLI parses flags; this does the work."""


import json
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from r1cli import options, rules
from r1cli.console import Environment
from r1cli.english import counted
from r1cli.errors import NoAnswerError, UsageError
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
stream = lazy_import("r1cli.client.stream")
turn = lazy_import("r1cli.client.turn")
sync = lazy_import("r1cli.client.sync")


def ask(
    ctx: typer.Context,
    question: Annotated[Optional[list[str]], typer.Argument(
        metavar="[QUESTION]...", show_default=False,
        help="The question; its words are joined, so quote only for the shell (? * ' ( ; &). `-` or piped stdin is read too.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    show_thinking: Annotated[bool, typer.Option("--show-thinking", help="Stream the reasoning to stderr.")] = False,
    math: Annotated[bool, typer.Option("--math/--no-math", help="Append the step-by-step / \\boxed{} directive.")] = True,
    samples: Annotated[int, typer.Option("--samples", min=1, max=64, help="Ask N times in parallel, majority vote (no -n: that is `r1 logs -n`).")] = 1,
    system: options.System = None,
    temperature: options.Temperature = options.DEFAULT_TEMPERATURE,
    top_p: options.TopP = options.DEFAULT_TOP_P,
    max_tokens: options.MaxTokens = None,
    think_budget: options.ThinkBudget = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed, for repeatable answers.")] = None,
    timeout: options.RequestTimeout = 300.0,
    port: options.Port = None,
    base_url: options.BaseUrl = None,
    api_key: options.ApiKey = None,
    model: options.Model = None,
) -> int:
    """Answer one question; stdout gets the final (boxed) answer only."""
    from r1cli.server import locate

    env: Environment = ctx.obj
    text = read_question(" ".join(question) if question else None, env.stdin, env.stdin_isatty)
    opts = AskOptions(question=text, system=system, math=math, temperature=temperature, top_p=top_p,
                      max_tokens=max_tokens, samples=samples, show_thinking=show_thinking, json=json_out,
                      timeout=timeout, seed=seed, think_budget=think_budget)
    return run(env, locate.target_for(env, base_url, api_key, model, port), opts)


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
    think_budget: int | None = None


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


def sampling(opts: "AskOptions") -> "turn.Sampling":
    return turn.Sampling(opts.temperature, opts.top_p, opts.max_tokens, opts.seed, opts.think_budget)


def notices(env: Environment, system: str | None, temperature: float) -> None:
    """What the R1 rules change about the user's settings, said once on stderr (ask and chat)."""
    if system:
        env.note("r1: R1 models take no system prompt: your --system text is put before the question")
    warning = rules.temperature_warning(temperature)
    if warning:
        env.note(f"r1: warning: {warning}")


def run(env: Environment, target: "sync.Target", opts: "AskOptions") -> int:
    notices(env, opts.system, opts.temperature)
    cancel: list = []
    try:
        if opts.samples > 1:
            return _report_samples(env, opts, _sampled(target, opts, cancel))
        answer = _single(env, target, opts, cancel)
    finally:
        stream.hang_up(cancel)  # Ctrl-C or an error: vLLM stops generating
    return _report(env, opts, answer)


def _turn(target, opts: "AskOptions", on_piece, cancel) -> "turn.Answer":
    return turn.run(target, opts.question, sampling(opts), on_piece, system=opts.system, math=opts.math,
                    timeout=opts.timeout, cancel=cancel)


def _single(env, target, opts, cancel) -> "turn.Answer":
    thinking = _ThinkingView(env, opts.show_thinking)
    try:
        return _turn(target, opts, thinking, cancel)
    except stream.StreamCut as cut:
        thinking.close()
        if cut.partial.content:  # what arrived is the user's: print it, the error says it is incomplete
            env.stdout.write(cut.partial.content + "\n")
            env.stdout.flush()
        raise
    finally:
        thinking.close()


def _sampled(target, opts, cancel) -> "list[turn.Answer]":
    sync.resolve_model(target)  # once, not once per thread
    import concurrent.futures  # only for --samples

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(opts.samples, 32))
    futures = [pool.submit(_turn, target, opts, None, cancel) for _ in range(opts.samples)]
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


def _stats_line(a: "turn.Answer") -> str:
    bits = []
    if a.completion_tokens is not None:
        bits.append(f"{a.completion_tokens} tokens")
    if a.budget_forced:
        bits.append(f"thinking budget reached after {a.budget_spent}")
    bits.append(f"{a.timing.total_s:.2f} s")
    if a.timing.tokens_per_s:
        bits.append(f"{a.timing.tokens_per_s:.1f} tok/s")
    return ", ".join(bits)


def _check_answered(a: "turn.Answer", opts: "AskOptions") -> None:
    if a.truncated:
        used = a.completion_tokens or "all the"
        raise NoAnswerError(f"no answer: the reasoning was cut by the token limit after {used} tokens",
                            hint="raise --max-tokens (or leave it unset: the rest of the context window), "
                                 "or serve with a larger --max-model-len, or set --think-budget")
    if not a.answer:
        raise NoAnswerError("no answer: the model produced no text",
                            hint=f"finish reason: {a.finish_reason}; try again or check `r1 logs`")


def to_json(opts: "AskOptions", a: "turn.Answer") -> dict:
    data = {"question": opts.question, **a.to_dict()}
    del data["source"]
    return data


def _report(env: Environment, opts: "AskOptions", a: "turn.Answer") -> int:
    if opts.json:
        env.stdout.write(json.dumps(to_json(opts, a), ensure_ascii=False) + "\n")
        env.stdout.flush()
        _check_answered(a, opts)
        return 0
    _check_answered(a, opts)
    env.stdout.write(a.answer + "\n")
    env.stdout.flush()
    if a.budget_forced:
        env.note(f"r1: the thinking budget ({opts.think_budget} tokens) ran out: the answer was forced from the reasoning so far")
    if env.stderr_isatty:
        env.dim(_stats_line(a))
    return 0


def _report_samples(env: Environment, opts: "AskOptions", outcomes: "list[turn.Answer]") -> int:
    from r1cli.answers import majority_vote

    answered = [o for o in outcomes if o.answer and not o.truncated]
    winner, votes = majority_vote([o.answer for o in answered])
    if opts.json:
        best = next((o for o in answered if o.answer == winner), outcomes[0])
        data = to_json(opts, best)
        data["answer"] = winner
        data["votes"] = votes
        data["samples"] = [{"answer": o.answer, "boxed": o.boxed, "finish_reason": o.finish_reason,
                            "completion_tokens": o.completion_tokens} for o in outcomes]
        env.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        env.stdout.flush()
    if winner is None:
        raise NoAnswerError(f"no answer in {counted(len(outcomes), 'sample')}: "
                            "each was cut by the token limit or empty", hint="raise --max-tokens")
    if not opts.json:
        env.stdout.write(winner + "\n")
        env.stdout.flush()
        if env.stderr_isatty:
            env.dim("votes: " + ", ".join(f"{a}: {n}" for a, n in votes.items()))
    return 0
