"""The Environment: where output goes, whether it is a terminal, and whether colour is wanted."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import IO, Any


def _color_allowed(stream: IO) -> bool:
    if os.environ.get("NO_COLOR"):  # https://no-color.org: any non-empty value
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Environment:
    """Streams default to sys.* as they are when used (tests and pytest's capture replace them)."""

    _stdin: IO | None = None
    _stdout: IO | None = None
    _stderr: IO | None = None
    _err_console: Any = None
    _out_console: Any = None

    @property
    def stdin(self) -> IO:
        return self._stdin or sys.stdin

    @property
    def stdout(self) -> IO:
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> IO:
        return self._stderr or sys.stderr

    @property
    def stdin_isatty(self) -> bool:
        return _isatty(self.stdin)

    @property
    def stdout_isatty(self) -> bool:
        return _isatty(self.stdout)

    @property
    def stderr_isatty(self) -> bool:
        return _isatty(self.stderr)

    @property
    def err_color(self) -> bool:
        return _color_allowed(self.stderr)

    @property
    def out_color(self) -> bool:
        return _color_allowed(self.stdout)

    @property
    def err(self):
        """A Rich console on stderr (imported only by commands that draw)."""
        if self._err_console is None or self._err_console.file is not self.stderr:
            from rich.console import Console

            self._err_console = Console(file=self.stderr, no_color=not self.err_color,
                                        force_terminal=self.stderr_isatty and None, highlight=False,
                                        soft_wrap=True)
        return self._err_console

    @property
    def out(self):
        if self._out_console is None or self._out_console.file is not self.stdout:
            from rich.console import Console

            self._out_console = Console(file=self.stdout, no_color=not self.out_color, highlight=False,
                                        soft_wrap=True)
        return self._out_console

    def note(self, text: str) -> None:
        """A plain line on stderr (no markup, no colour): notices and warnings."""
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def dim(self, text: str) -> None:
        """A dim line on stderr where colour is allowed, plain otherwise."""
        if self.err_color:
            self.stderr.write(f"\x1b[2m{text}\x1b[0m\n")
        else:
            self.stderr.write(text + "\n")
        self.stderr.flush()
