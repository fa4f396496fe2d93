"""`r1 chat`'s input: slash commands parsed into typed values, and multi-line messages. Pure."""

from __future__ import annotations

import difflib
import math as _math
from dataclasses import dataclass
from typing import Union

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
