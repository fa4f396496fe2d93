"""`r1 chat`: conversation state, slash commands as typed values, and the loop that ties them to the
client and the renderer.

The pure parts (``parse_command``, ``parse_setting``, ``MultiLine``, ``Conversation``) do no I/O
beyond ``Conversation.save``/``load`` and are unit-tested on their own.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math as _math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Union

from r1cli import config, rules

# ----------------------------------------------------------------------------------------------- commands
COMMANDS: dict[str, str] = {
    "help": "/help                 this list",
    "clear": "/clear                start a new conversation",
    "retry": "/retry                regenerate the last answer",
    "system": "/system [TEXT|clear]  instructions, put before the first message (R1 takes no system prompt)",
    "math": "/math on|off          append the step-by-step / \\boxed{} directive to each message",
    "think": "/think show|hide      show the reasoning, or hide it behind a spinner",
    "set": "/set NAME VALUE       temperature (0-2), top_p (0-1], max_tokens (N or none)",
    "stats": "/stats                the last answer's figures",
    "save": "/save FILE [--force]  write the conversation as JSON",
    "load": "/load FILE            read a conversation saved by /save",
    "model": "/model [NAME]         show or switch the served model",
    "exit": "/exit                 leave (also Ctrl-D, or Ctrl-C twice on an empty line)",
}
ALIASES = {"?": "help", "quit": "exit", "bye": "exit", "new": "clear", "reset": "clear"}
SETTINGS = ("temperature", "top_p", "max_tokens")


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Exit:
    pass


@dataclass(frozen=True)
class Clear:
    pass


@dataclass(frozen=True)
class Retry:
    pass


@dataclass(frozen=True)
class Stats:
    pass


@dataclass(frozen=True)
class SetSystem:
    text: str | None  # None: show it; "" clears it


@dataclass(frozen=True)
class SetMath:
    on: bool


@dataclass(frozen=True)
class SetThink:
    show: bool


@dataclass(frozen=True)
class SetParam:
    name: str
    value: float | int | None


@dataclass(frozen=True)
class Save:
    path: str
    force: bool = False


@dataclass(frozen=True)
class Load:
    path: str


@dataclass(frozen=True)
class SwitchModel:
    name: str | None  # None: show it


@dataclass(frozen=True)
class Unknown:
    name: str
    suggestion: str | None


@dataclass(frozen=True)
class Invalid:
    """A known command used wrongly: the message says how to use it."""

    message: str


Command = Union[Help, Exit, Clear, Retry, Stats, SetSystem, SetMath, SetThink, SetParam, Save, Load, SwitchModel,
                Unknown, Invalid]


def is_command(line: str) -> bool:
    return line.lstrip().startswith("/")


def _usage(name: str) -> str:
    return "usage: " + COMMANDS[name].split("  ")[0].strip()


def _on_off(arg: str, on: tuple[str, ...], off: tuple[str, ...]) -> bool | None:
    word = arg.strip().lower()
    if word in on:
        return True
    if word in off:
        return False
    return None


def parse_command(line: str) -> Command:
    """One line starting with ``/`` -> a typed command. Never raises."""
    body = line.strip()[1:]
    name, _, arg = body.partition(" ")
    name = name.lower()
    arg = arg.strip()
    name = ALIASES.get(name, name)
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, [*COMMANDS, *ALIASES], n=1, cutoff=0.5)
        return Unknown(name, "/" + ALIASES.get(close[0], close[0]) if close else None)
    if name in ("help", "exit", "clear", "retry", "stats"):
        if arg:
            return Invalid(f"/{name} takes no argument")
        return {"help": Help(), "exit": Exit(), "clear": Clear(), "retry": Retry(), "stats": Stats()}[name]
    if name == "system":
        if not arg:
            return SetSystem(None)
        return SetSystem("" if arg.lower() in ("clear", "off", "none") else arg)
    if name == "math":
        on = _on_off(arg, ("on", "true", "yes", "1"), ("off", "false", "no", "0"))
        return Invalid(_usage("math")) if on is None else SetMath(on)
    if name == "think":
        show = _on_off(arg, ("show", "on"), ("hide", "off"))
        return Invalid(_usage("think")) if show is None else SetThink(show)
    if name == "set":
        key, _, raw = arg.partition(" ")
        key = key.lower().replace("-", "_")
        if key not in SETTINGS:
            close = difflib.get_close_matches(key, SETTINGS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close and key else ""
            return Invalid(f"/set takes one of {', '.join(SETTINGS)}{hint}")
        try:
            return SetParam(key, parse_setting(key, raw.strip()))
        except ValueError as exc:
            return Invalid(str(exc))
    if name == "save":
        words = arg.split()
        force = "--force" in words or "-f" in words
        path = " ".join(w for w in words if w not in ("--force", "-f"))
        return Save(path, force) if path else Invalid(_usage("save"))
    if name == "load":
        return Load(arg) if arg else Invalid(_usage("load"))
    if name == "model":
        return SwitchModel(arg or None)
    raise AssertionError(name)  # pragma: no cover - every name in COMMANDS is handled above


def parse_setting(name: str, raw: str) -> float | int | None:
    """Validate a /set value; ValueError says what is allowed."""
    if name == "max_tokens":
        if raw.lower() in ("none", "off", "auto", "default"):
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"max_tokens must be a whole number of tokens, or none, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"max_tokens must be at least 1, got {value}")
        return value
    lo, hi, lo_open = {"temperature": (0.0, 2.0, False), "top_p": (0.0, 1.0, True)}[name]
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if _math.isnan(value) or value > hi or value < lo or (lo_open and value == lo):
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name} must be in {bracket}{lo:g}, {hi:g}], got {raw}")
    return value


# ----------------------------------------------------------------------------------------------- input
class MultiLine:
    """ollama's ``\"\"\"`` blocks: a line starting with three quotes opens one, a line ending with them
    closes it. ``feed`` returns the whole message once complete, else None."""

    QUOTES = '"""'

    def __init__(self) -> None:
        self.lines: list[str] | None = None

    @property
    def active(self) -> bool:
        return self.lines is not None

    def feed(self, line: str) -> str | None:
        if self.lines is None:
            if not line.lstrip().startswith(self.QUOTES):
                return line
            rest = line.lstrip()[len(self.QUOTES):]
            if rest.rstrip().endswith(self.QUOTES):  # """one line"""
                return rest.rstrip()[: -len(self.QUOTES)].strip("\n")
            self.lines = [rest] if rest else []
            return None
        if line.rstrip().endswith(self.QUOTES):
            self.lines.append(line.rstrip()[: -len(self.QUOTES)])
            text = "\n".join(self.lines).strip("\n")
            self.lines = None
            return text
        self.lines.append(line)
        return None

    def reset(self) -> None:
        self.lines = None


# ----------------------------------------------------------------------------------------------- state
@dataclass
class Settings:
    temperature: float = rules.DEFAULT_TEMPERATURE
    top_p: float = rules.DEFAULT_TOP_P
    max_tokens: int | None = None
    think_budget: int | None = None
    math: bool = True
    show_thinking: bool = True
    system: str | None = None
    timeout: float = 300.0

    def sampling(self):
        from r1cli import turn

        return turn.Sampling(self.temperature, self.top_p, self.max_tokens, think_budget=self.think_budget)


@dataclass
class Turn:
    user: str
    assistant: str = ""  # the answer channel only; the reasoning is kept apart
    reasoning: str = ""
    finish_reason: str | None = None
    interrupted: bool = False


FORMAT = "r1-chat"
VERSION = 1


class ConversationFileError(ValueError):
    pass


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    system: str | None = None
    math: bool = True
    model: str | None = None

    def history(self) -> list[dict]:
        """Earlier turns as chat messages: user texts and the assistant's final answers only. A turn
        interrupted before any answer text is left out (its question would dangle unanswered)."""
        out: list[dict] = []
        for turn in self.turns:
            if turn.interrupted and not turn.assistant.strip():
                continue
            out.append({"role": "user", "content": turn.user})
            out.append({"role": "assistant", "content": turn.assistant})
        return out

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model": self.model, "system": self.system,
                "math": self.math, "turns": [asdict(t) for t in self.turns]}

    @classmethod
    def from_json(cls, data: object) -> "Conversation":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConversationFileError(f"not an r1 chat file (no \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise ConversationFileError(f"unsupported version {data.get('version')!r} (this r1 reads {VERSION})")
        turns = []
        for i, raw in enumerate(data.get("turns") or []):
            if not isinstance(raw, dict) or not isinstance(raw.get("user"), str):
                raise ConversationFileError(f"turn {i + 1} has no \"user\" text")
            try:
                turns.append(Turn(**raw))
            except TypeError as exc:
                raise ConversationFileError(f"turn {i + 1}: {exc}") from None
        system = data.get("system")
        return cls(turns=turns, system=system if isinstance(system, str) else None,
                   math=bool(data.get("math", True)), model=data.get("model"))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n"

    def save(self, path: str | Path, force: bool = False) -> Path:
        path = Path(path).expanduser()
        if path.exists() and not force:
            raise FileExistsError(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Conversation":
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConversationFileError(f"not JSON: {exc}") from None
        return cls.from_json(data)


def history_path() -> Path:
    return config.state_dir() / "chat_history"


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
    def __init__(self, env, target, settings: Settings, interactive: bool):
        self.env = env
        self.target = target
        self.settings = settings
        self.interactive = interactive
        self.conversation = Conversation(system=settings.system, math=settings.math, model=target.model)
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
        from r1cli import client, render
        from r1cli.errors import NoServerError, R1Error

        from r1cli import turn

        conv, s = self.conversation, self.settings
        conv.system, conv.math = s.system, s.math
        cancel: list = []
        view_cls = render.TerminalView if self.interactive else render.PlainView
        view = None
        try:
            if not self.interactive and self.blocks:
                self.env.stdout.write("\n")  # a blank line between answer blocks
            view = view_cls(self.env, s.show_thinking)
            history = conv.history()[2 * self.left_out:]
            answer = turn.run(self.target, question, s.sampling(), view, history=history, system=s.system,
                              math=s.math, timeout=s.timeout, cancel=cancel)
        except client.PromptTooLong as exc:
            view.abort()
            self._failed(question, exc.message, "shorten the question, or serve with a larger --max-model-len",
                         status=exc.status)
            return
        except KeyboardInterrupt:
            if view is not None:
                view.interrupt()
                conv.turns.append(Turn(question, view.answer, view.reasoning, None, interrupted=True))
                self.last_stats = render.stats_line(view.pieces, view.t_first, None, "interrupted",
                                                    total_s=_elapsed(view))
            else:
                self.env.note("[interrupted]")
            self.failed = None
            return
        except client.StreamCut as cut:
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
            for conn in cancel:  # closing the socket makes vLLM abort the generation
                with contextlib.suppress(Exception):
                    conn.close()
        view.finish()
        conv.turns.append(Turn(question, answer.content, answer.reasoning, answer.finish_reason))
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
            self.last_stats += f", answer forced after {answer.reasoning_chunks} reasoning tokens (thinking budget)"
        self.failed = None
        if self.interactive or self.env.stderr_isatty:
            self.dim(self.last_stats)

    def _failed(self, question: str, message: str, hint: str | None = None, status=None) -> None:
        from r1cli.errors import R1Error

        self.failed = question
        self.failures += 1
        self.last_error = R1Error(message, status=status)
        self.say(f"r1: {message}")
        if hint:
            self.say(f"  fix: {hint}")
        self.say("r1: the conversation is kept; send a message (or /retry) to try again")

    # -- commands
    def command(self, cmd: Command) -> bool:
        """Run one command; False means leave."""
        s, conv = self.settings, self.conversation
        if isinstance(cmd, Exit):
            return False
        if isinstance(cmd, Help):
            self.env.stdout.write("\n".join(COMMANDS.values()) + '\n"""  starts and ends a multi-line message\n')
            self.env.stdout.flush()
        elif isinstance(cmd, Clear):
            self.conversation = Conversation(system=s.system, math=s.math, model=self.target.model)
            self.failed = None
            self.left_out = 0
            self.say("r1: new conversation")
        elif isinstance(cmd, Retry):
            question = self.failed
            if question is None:
                if not conv.turns:
                    self.say("r1: nothing to retry yet")
                    return True
                question = conv.turns.pop().user
            self.ask(question)
        elif isinstance(cmd, Stats):
            self.say(self.last_stats or "r1: no answer yet")
        elif isinstance(cmd, SetSystem):
            if cmd.text is None:
                self.say(f"r1: system text: {s.system!r}" if s.system else "r1: no system text")
            elif cmd.text == "":
                s.system = None
                self.say("r1: system text cleared")
            else:
                s.system = cmd.text
                self.say("r1: R1 models take no system prompt: this text is put before the first message")
        elif isinstance(cmd, SetMath):
            s.math = cmd.on
            self.say(f"r1: math directive {'on' if cmd.on else 'off'}")
        elif isinstance(cmd, SetThink):
            s.show_thinking = cmd.show
            self.say(f"r1: reasoning {'shown' if cmd.show else 'hidden'}")
        elif isinstance(cmd, SetParam):
            setattr(s, cmd.name, cmd.value)
            self.say(f"r1: {cmd.name} = {'none' if cmd.value is None else f'{cmd.value:g}'}")
            if cmd.name == "temperature":
                warning = rules.temperature_warning(cmd.value)
                if warning:
                    self.say(f"r1: warning: {warning}")
        elif isinstance(cmd, Save):
            conv.system, conv.math, conv.model = s.system, s.math, self.target.model
            try:
                path = conv.save(cmd.path, cmd.force)
            except FileExistsError:
                self.say(f"r1: {cmd.path} exists: `/save {cmd.path} --force` overwrites it")
            except OSError as exc:
                self.say(f"r1: cannot write {cmd.path}: {exc.strerror or exc}")
            else:
                self.say(f"r1: saved {len(conv.turns)} turns to {path}")
        elif isinstance(cmd, Load):
            try:
                loaded = Conversation.load(cmd.path)
            except OSError as exc:
                self.say(f"r1: cannot read {cmd.path}: {exc.strerror or exc}")
            except ConversationFileError as exc:
                self.say(f"r1: cannot load {cmd.path}: {exc}")
            else:
                self.conversation, self.left_out = loaded, 0
                s.system, s.math = loaded.system, loaded.math
                self.failed = None
                self._replay(loaded)
                self.say(f"r1: loaded {len(loaded.turns)} turns from {cmd.path}")
        elif isinstance(cmd, SwitchModel):
            self._model(cmd.name)
        elif isinstance(cmd, Unknown):
            maybe = f"; did you mean {cmd.suggestion}?" if cmd.suggestion else ""
            self.say(f"r1: unknown command /{cmd.name}{maybe} (/help lists them)")
        elif isinstance(cmd, Invalid):
            self.say(f"r1: {cmd.message}")
        return True

    def _replay(self, conv: Conversation) -> None:
        out = self.env.stdout
        for turn in conv.turns:
            out.write(f">>> {turn.user}\n{turn.assistant.strip()}\n")
            if turn.interrupted:
                out.write("[interrupted]\n")
        out.flush()

    def _model(self, name: str | None) -> None:
        from r1cli import client
        from r1cli.errors import R1Error

        if name is None:
            self.say(f"r1: model {self.target.model} at {self.target.base_url}")
            return
        try:
            data = client.get_json(self.target, self.target.base_url + "/models")
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
        if is_command(text) and "\n" not in text.strip():
            return self.command(parse_command(text))
        self.ask(text)
        return True

    def loop_terminal(self) -> int:
        reader = _Reader()
        multi = MultiLine()
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
        multi = MultiLine()
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


def run(env, target, settings: Settings) -> int:
    """The `r1 chat` command: a terminal REPL, or one turn per line of piped stdin."""
    from r1cli import client

    client.resolve_model(target)
    interactive = env.stdin_isatty and env.stdout_isatty
    chat = Chat(env, target, settings, interactive)
    if settings.system:
        env.note("r1: R1 models take no system prompt: your --system text is put before the first message")
    warning = rules.temperature_warning(settings.temperature)
    if warning:
        env.note(f"r1: warning: {warning}")
    if interactive:
        return chat.loop_terminal()
    return chat.loop_piped()
