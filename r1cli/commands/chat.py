"""`r1 chat`: the loop that ties the typed commands (chat_slash), the conversation (transcript),
the turn engine and the renderer together, on a terminal or over piped stdin."""


import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import config, options, rules
from r1cli.english import counted
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
turn = lazy_import("r1cli.client.turn")
transcript = lazy_import("r1cli.client.transcript")
slash = lazy_import("r1cli.commands.chat_slash")


def chat(
    ctx: typer.Context,
    hide_thinking: Annotated[bool, typer.Option("--hide-thinking", help="Hide the reasoning behind a spinner (/think show|hide).")] = False,
    math: Annotated[bool, typer.Option("--math/--no-math", help="Append the step-by-step / \\boxed{} directive (/math on|off).")] = True,
    system: options.System = None,
    temperature: options.Temperature = options.DEFAULT_TEMPERATURE,
    top_p: options.TopP = options.DEFAULT_TOP_P,
    max_tokens: options.MaxTokens = None,
    think_budget: options.ThinkBudget = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed for every answer, for repeatable chats.")] = None,
    answer_only: Annotated[bool, typer.Option("--answer-only", help="Print only each final answer, as `r1 ask` does: one line per message (for pipes).")] = False,
    timeout: options.RequestTimeout = 300.0,
    port: options.Port = None,
    base_url: options.BaseUrl = None,
    api_key: options.ApiKey = None,
    model: options.Model = None,
) -> int:
    """Chat in the terminal; with piped stdin, each line is one message (`r1 chat < questions.txt`)."""
    from r1cli.server import locate

    sampling = turn.Sampling(temperature, top_p, max_tokens, seed=seed, think_budget=think_budget)
    settings = Settings(sampling=sampling, math=math, show_thinking=not hide_thinking, system=system, timeout=timeout,
                        answer_only=answer_only)
    return run(ctx.obj, locate.target_for(ctx.obj, base_url, api_key, model, port), settings)


# ----------------------------------------------------------------------------------------------- state
@dataclass
class Settings:
    sampling: "turn.Sampling" = field(default_factory=lambda: turn.Sampling())  # /set changes it; turn loads on use
    math: bool = True
    show_thinking: bool = True
    system: str | None = None
    timeout: float = 300.0
    answer_only: bool = False  # each turn prints its final answer alone, as `r1 ask` does


def history_path() -> Path:
    """The line-editing history: what the user typed, so private like the rest of the state (0600)."""
    path = config.state_dir() / "chat_history"
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return path


# ----------------------------------------------------------------------------------------------- the loop
class _CtrlC(KeyboardInterrupt):
    def __init__(self, had_text: bool):
        super().__init__()
        self.had_text = had_text


class _Reader:
    """prompt_toolkit on a terminal: history file, Up/Down, bracketed paste as one message."""

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.formatted_text import HTML
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        kb = KeyBindings()

        @kb.add("c-c")
        def _interrupt(event) -> None:
            event.app.exit(exception=_CtrlC(bool(event.app.current_buffer.text)), style="class:aborting")

        self.session = PromptSession(history=FileHistory(str(history_path())), key_bindings=kb,
                                     enable_suspend=True)
        self.placeholder = HTML("<style fg='ansibrightblack'>Send a message (/help for help)</style>")

    def read(self, continuation: bool) -> str:
        if continuation:
            return self.session.prompt("... ", placeholder="")
        return self.session.prompt(">>> ", placeholder=self.placeholder)


class Chat:
    def __init__(self, env, target, settings: "Settings", interactive: bool):
        self.env = env
        self.target = target
        self.settings = settings
        self.interactive = interactive
        self.conversation = transcript.Conversation(system=settings.system, math=settings.math, model=target.model)
        self.last_stats: str | None = None
        self.failed: str | None = None  # a question whose answer never came: /retry asks it again
        self.failures = 0
        self.last_error = None
        self.blocks = 0  # answers printed so far
        self.left_out = 0  # oldest exchanges no longer sent: they did not fit the context window

    # -- messages
    def say(self, text: str) -> None:
        self.env.note(text)

    def dim(self, text: str) -> None:
        self.env.dim(text)

    # -- one turn
    def ask(self, question: str) -> None:
        from r1cli import render
        from r1cli.client import stream, sync
        from r1cli.errors import NoServerError, R1Error

        conv, s = self.conversation, self.settings
        conv.system, conv.math = s.system, s.math
        cancel: list = []
        view_cls = render.TerminalView if self.interactive else render.PlainView
        if s.answer_only:
            view_cls = render.AnswerOnlyView
        view = None
        try:
            if not self.interactive and not s.answer_only and self.blocks:
                self.env.stdout.write("\n")  # a blank line between answer blocks
            view = view_cls(self.env, s.show_thinking)
            history = conv.history()[2 * self.left_out:]
            answer = turn.run(self.target, question, s.sampling, view, history=history, system=s.system,
                              math=s.math, timeout=s.timeout, cancel=cancel)
        except sync.PromptTooLong as exc:
            view.abort()
            self._failed(question, exc.message, "shorten the question, or serve with a larger --max-model-len",
                         status=exc.status)
            return
        except KeyboardInterrupt:
            if view is not None:
                view.interrupt()
                conv.turns.append(transcript.Turn(question, view.answer, view.reasoning, None, interrupted=True))
                self.last_stats = render.stats_line(view.pieces, view.t_first, None, "interrupted",
                                                    total_s=_elapsed(view))
            else:
                self.env.note("[interrupted]")
            self.failed = None
            return
        except stream.StreamCut as cut:
            if view is not None:
                view.abort()
            self._failed(question, f"the answer was cut off mid-stream ({cut.message.split('(', 1)[-1].rstrip(')')})")
            return
        except NoServerError as exc:
            if view is not None:
                view.abort()
            self._failed(question, exc.message.replace("no server answers", "the server does not answer"),
                         status=exc.status)
            return
        except R1Error as exc:
            if view is not None:
                view.abort()
            self._failed(question, exc.message, exc.hint, status=exc.status)
            return
        finally:
            stream.hang_up(cancel)  # vLLM stops generating
        view.finish()
        if answer.truncated or not answer.answer:
            self._no_answer(question, answer)
            return
        if s.answer_only:
            self.env.stdout.write(answer.answer + "\n")
            self.env.stdout.flush()
        conv.turns.append(transcript.Turn(question, answer.content, answer.reasoning, answer.finish_reason))
        self.blocks += 1
        if answer.history_dropped:
            # Left out for good: trying them again every turn would cost a /tokenize each.
            self.left_out += answer.history_dropped
            self.say(f"r1: the {answer.history_dropped} oldest exchange(s) no longer fit the context window: "
                     f"the model now sees the last {len(conv.turns) - self.left_out - 1} (/clear starts afresh)")
        t = answer.timing
        self.last_stats = render.stats_line(answer.completion_tokens or view.pieces, t.ttft_s,
                                            t.tokens_per_s, answer.finish_reason, total_s=t.total_s)
        if answer.budget_forced:
            self.last_stats += f", answer forced after {answer.budget_spent} (thinking budget)"
        self.failed = None
        if self.interactive or self.env.stderr_isatty:
            self.dim(self.last_stats)

    def _no_answer(self, question: str, answer: "turn.Answer") -> None:
        """A turn that ended without an answer, as `r1 ask` judges one: said on stderr, and the piped
        run exits 4 (NO_ANSWER). --answer-only keeps line N for message N: an empty line."""
        from r1cli.errors import ExitStatus

        shown = question if len(question) <= 60 else question[:57] + "..."
        if answer.truncated:
            why = f"the reasoning was cut by the token limit after {answer.completion_tokens or 'all the'} tokens"
            hint = "raise --max-tokens (or /set max_tokens), or set --think-budget"
        else:
            why = f"the model ended without answer text (finish reason {answer.finish_reason})"
            # A pipe has no later /retry to type: the fix is the question asked afresh, on its own.
            hint = "/retry asks again" if self.interactive else f"ask it afresh, on its own: r1 ask {shlex.quote(question)}"
        if self.settings.answer_only:
            self.env.stdout.write("\n")
            self.env.stdout.flush()
        self._failed(question, f"no answer to {shown!r}: {why}", hint, status=ExitStatus.NO_ANSWER)

    def _failed(self, question: str, message: str, hint: str | None = None, status=None) -> None:
        from r1cli.errors import R1Error

        self.failed = question
        self.failures += 1
        self.last_error = R1Error(message, status=status)
        self.say(f"r1: {message}")
        if hint:
            self.say(f"  fix: {hint}")
        if self.interactive:
            self.say("r1: the conversation is kept; send a message (or /retry) to try again")
        else:
            self.say(f"r1: the conversation is kept; the next line goes on from it (exit status "
                     f"{int(self.last_error.status)} at the end)")

    # -- commands
    def command(self, cmd: "slash.Command") -> bool:
        """Run one command; False means leave."""
        s, conv = self.settings, self.conversation
        if isinstance(cmd, slash.Exit):
            return False
        if isinstance(cmd, slash.Help):
            self.env.stdout.write("\n".join(slash.COMMANDS.values()) + '\n"""  starts and ends a multi-line message\n')
            self.env.stdout.flush()
        elif isinstance(cmd, slash.Clear):
            self.conversation = transcript.Conversation(system=s.system, math=s.math, model=self.target.model)
            self.failed = None
            self.left_out = 0
            self.say("r1: new conversation")
        elif isinstance(cmd, slash.Retry):
            question = self.failed
            if question is None:
                if not conv.turns:
                    self.say("r1: nothing to retry yet")
                    return True
                question = conv.turns.pop().user
            self.ask(question)
        elif isinstance(cmd, slash.Stats):
            self.say(self.last_stats or "r1: no answer yet")
        elif isinstance(cmd, slash.SetSystem):
            if cmd.text is None:
                self.say(f"r1: system text: {s.system!r}" if s.system else "r1: no system text")
            elif cmd.text == "":
                s.system = None
                self.say("r1: system text cleared")
            else:
                s.system = cmd.text
                self.say("r1: R1 models take no system prompt: this text is put before the first message")
        elif isinstance(cmd, slash.SetMath):
            s.math = cmd.on
            self.say(f"r1: math directive {'on' if cmd.on else 'off'}")
        elif isinstance(cmd, slash.SetThink):
            s.show_thinking = cmd.show
            self.say(f"r1: reasoning {'shown' if cmd.show else 'hidden'}")
        elif isinstance(cmd, slash.SetParam):
            setattr(s.sampling, cmd.name, cmd.value)
            self.say(f"r1: {cmd.name} = {'none' if cmd.value is None else f'{cmd.value:g}'}")
            if cmd.name == "temperature":
                warning = rules.temperature_warning(cmd.value)
                if warning:
                    self.say(f"r1: warning: {warning}")
        elif isinstance(cmd, slash.Save):
            conv.system, conv.math, conv.model = s.system, s.math, self.target.model
            try:
                path = conv.save(cmd.path, cmd.force)
            except FileExistsError:
                self.say(f"r1: {cmd.path} exists: `/save {cmd.path} --force` overwrites it")
            except OSError as exc:
                self.say(f"r1: cannot write {cmd.path}: {exc.strerror or exc}")
            else:
                self.say(f"r1: saved {counted(len(conv.turns), 'turn')} to {path}")
        elif isinstance(cmd, slash.Load):
            try:
                loaded = transcript.Conversation.load(cmd.path)
            except OSError as exc:
                self.say(f"r1: cannot read {cmd.path}: {exc.strerror or exc}")
            except transcript.ConversationFileError as exc:
                self.say(f"r1: cannot load {cmd.path}: {exc}")
            else:
                self.conversation, self.left_out = loaded, 0
                s.system, s.math = loaded.system, loaded.math
                self.failed = None
                self._replay(loaded)
                self.say(f"r1: loaded {counted(len(loaded.turns), 'turn')} from {cmd.path}")
        elif isinstance(cmd, slash.SwitchModel):
            self._model(cmd.name)
        elif isinstance(cmd, slash.Unknown):
            maybe = f"; did you mean {cmd.suggestion}?" if cmd.suggestion else ""
            self.say(f"r1: unknown command /{cmd.name}{maybe} (/help lists them)")
        elif isinstance(cmd, slash.Invalid):
            self.say(f"r1: {cmd.message}")
        return True

    def _replay(self, conv: "transcript.Conversation") -> None:
        out = self.env.stdout
        for past in conv.turns:
            out.write(f">>> {past.user}\n{past.assistant.strip()}\n")
            if past.interrupted:
                out.write("[interrupted]\n")
        out.flush()

    def _model(self, name: str | None) -> None:
        from r1cli.client import sync
        from r1cli.errors import R1Error

        if name is None:
            self.say(f"r1: model {self.target.model} at {self.target.base_url}")
            return
        try:
            data = sync.get_json(self.target, self.target.base_url + "/models")
        except R1Error as exc:
            self.say(f"r1: {exc.message}")
            return
        names = [m.get("id") for m in data.get("data") or []]
        if name not in names:
            self.say(f"r1: the server serves {', '.join(map(str, names)) or 'no model'}, not {name}")
            return
        self.target.model = name
        self.say(f"r1: model {name}")

    # -- input
    def handle(self, text: str) -> bool:
        if not text.strip():
            return True
        if slash.is_command(text) and "\n" not in text.strip():
            return self.command(slash.parse_command(text))
        self.ask(text)
        return True

    def loop_terminal(self) -> int:
        reader = _Reader()
        multi = slash.MultiLine()
        ctrl_c = 0
        self.dim(f"r1 chat · {self.target.model} at {self.target.base_url} · /help for commands, Ctrl-D to leave")
        while True:
            try:
                line = reader.read(multi.active)
            except _CtrlC as exc:
                multi.reset()
                if exc.had_text:
                    ctrl_c = 0
                    continue
                ctrl_c += 1
                if ctrl_c >= 2:
                    return 0
                self.dim("(Ctrl-C again or Ctrl-D to leave)")
                continue
            except EOFError:
                if multi.active:  # Ctrl-D ends an open block: send what was typed
                    text = "\n".join(multi.lines or []).strip("\n")
                    multi.reset()
                    if not self.handle(text):
                        return 0
                    continue
                return 0
            ctrl_c = 0
            text = multi.feed(line)
            if text is None:
                continue
            if not self.handle(text):
                return 0

    def loop_piped(self) -> int:
        multi = slash.MultiLine()
        for raw in self.env.stdin:
            text = multi.feed(raw.rstrip("\r\n"))
            if text is None:
                continue
            if not self.handle(text):
                break
        if multi.active and multi.lines:
            self.handle("\n".join(multi.lines).strip("\n"))
        return int(self.last_error.status) if self.failures and self.last_error is not None else 0


def _elapsed(view) -> float:
    import time

    return time.monotonic() - view.t0


def run(env, target, settings: "Settings") -> int:
    """The `r1 chat` command: a terminal REPL, or one turn per line of piped stdin."""
    from r1cli.client import sync

    sync.resolve_model(target)
    interactive = env.stdin_isatty and env.stdout_isatty
    chat = Chat(env, target, settings, interactive)
    if settings.system:
        env.note("r1: R1 models take no system prompt: your --system text is put before the first message")
    warning = rules.temperature_warning(settings.sampling.temperature)
    if warning:
        env.note(f"r1: warning: {warning}")
    if interactive:
        return chat.loop_terminal()
    return chat.loop_piped()
