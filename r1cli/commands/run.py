"""`r1 run [MODEL] [QUESTION...]`: the first run in one command, as `ollama run` is. MODEL is served (detached,
its stages shown, as `r1 serve -d` does) unless r1 already serves it, on any port: then it is reused at
once. Then QUESTION is answered as `r1 ask` answers it, or without one `r1 chat` opens. Both halves are the
serve, ask and chat commands' own code, called, not copied."""


import re
from typing import Annotated, Optional

import typer

from r1cli import completion, config, options
from r1cli.console import Environment
from r1cli.errors import HubError
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
cmdline = lazy_import("r1cli.server.cmdline")
state = lazy_import("r1cli.server.state")


def run(
    ctx: typer.Context,
    words: Annotated[Optional[list[str]], typer.Argument(
        metavar="[MODEL] [QUESTION...]", show_default=False, autocompletion=completion.models,
        help="A preset (" + " ".join([*config.PRESETS, "demo"]) + f"; default {config.DEFAULT_MODEL}), a Hugging Face "
             "id or a folder, then the question (its words are joined; a first word that is no model starts "
             "the question). No question: chat.")] = None,
    port: Annotated[int, typer.Option(envvar="R1_PORT", **options.PORT_RANGE, help="Where to serve MODEL when r1 does not serve it yet (vLLM --port).")] = config.DEFAULT_PORT,
    show_thinking: Annotated[bool, typer.Option("--show-thinking", help="Stream the reasoning to stderr (with a question).")] = False,
    temperature: options.Temperature = options.DEFAULT_TEMPERATURE,
    timeout: Annotated[float, typer.Option("--timeout", envvar="R1_TIMEOUT", min=0.1, help="Seconds to wait for the server's readiness.")] = config.DEFAULT_TIMEOUT,
) -> int:
    """Serve MODEL unless it serves already (detached), then answer QUESTION as ask does, or chat without one."""
    from r1cli.client.target import Target
    from r1cli.commands import ask as ask_cmd
    from r1cli.commands import chat as chat_cmd

    env: Environment = ctx.obj
    model, question = split_words(words or [])
    record = serving(cmdline.resolve_model(model), port)
    if record is not None:
        env.note(f"r1: {record.served_name} already serves at {record.url}")
    else:
        from r1cli.commands import serve as serve_cmd

        opts = cmdline.options_for(model, port=port)
        try:
            record = serve_cmd.run(env, opts, timeout=timeout, log_file=None, detach=True, json_out=False,
                                   print_url=False)  # stdout is the answer's
        except HubError as problem:
            _unavailable(problem, words or [], model, question)
            raise
    target = Target(record.url, config.env_str("R1_API_KEY"), record.served_name)
    if question is not None:
        text = ask_cmd.read_question(question, env.stdin, env.stdin_isatty)
        return ask_cmd.run(env, target, ask_cmd.AskOptions(question=text, temperature=temperature,
                                                           show_thinking=show_thinking))
    settings = chat_cmd.Settings(sampling=chat_cmd.turn.Sampling(temperature=temperature))
    return chat_cmd.run(env, target, settings)


def _unavailable(problem: "HubError", words: list[str], model: str, question: str | None) -> None:
    """The model to serve cannot be had: when a first word that is no model was near one ('demoo'), it began
    the question and the default was to be served: say so, and make the fix an `r1 run` of the model meant."""
    from r1cli.commands import serve as serve_cmd
    from r1cli.hub import cache

    typo = words[0] if words and model == config.DEFAULT_MODEL and not is_model(words[0]) else None
    near = cache.nearest(typo) if typo and not any(c.isspace() for c in typo) else None
    if near is not None:
        default = config.find_preset(config.DEFAULT_MODEL)[0]
        problem.details.append(f"'{typo}' is not a model r1 knows, so it began the question and the default, "
                               f"{default}, was to be served: did you mean {near}?")
        question = " ".join(words[1:]).strip() or None
    serve_cmd.fix_unavailable(problem, near=near, question=question, run=True)


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z][\w.-]*")


def is_model(word: str) -> bool:
    """Whether WORD names a model (a preset, `demo`, an existing folder, a Hugging Face `org/name` id), not
    the first word of a question."""
    from r1cli import machine

    key = word.lower()
    return key in config.PRESETS or key == "demo" or _HUB_ID.fullmatch(word) is not None \
        or (machine.is_local_path(word) and not any(c.isspace() for c in word))


def split_words(words: list[str]) -> tuple[str, str | None]:
    """(MODEL, QUESTION or None) from the words given: a first word that is no model starts the question."""
    if words and is_model(words[0]):
        model, rest = words[0], words[1:]
    else:
        model, rest = config.DEFAULT_MODEL, words
    question = " ".join(rest).strip()
    return model, question or None


def serving(model: str, port: int):
    """A live, healthy r1 server of this state directory that serves MODEL (resolved): the one on PORT
    first, else any. None when there is none."""
    from r1cli.client import http
    from r1cli.server import process

    records, _ = state.load_all()
    live = [r for r in records if r.model == model and state.is_alive(r)]
    for record in sorted(live, key=lambda r: r.port != port):
        if http.status_of(process.local_url(record.host, record.port) + "/health", timeout=2.0) == 200:
            return record
    return None
