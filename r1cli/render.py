"""A streamed answer on screen: reasoning dim and apart (or a spinner), the answer as it arrives.

Two views share one interface (``view(channel, text)`` per piece, then ``finish``/``interrupt``/``abort``):

- :class:`TerminalView` (stdin and stdout are terminals): reasoning dim on stdout, or hidden behind a
  spinner on stderr that counts tokens and seconds. The answer is written as plain text the moment it
  arrives, O(1) work per token (no re-layout of what came before, no live region that flickers or
  repeats lines). At the end, if the answer uses Markdown and all of it is still on screen, it is
  replaced in one write by its Markdown rendering; an answer taller than the screen stays as streamed
  (plain Markdown reads well), so nothing is ever printed twice.
- :class:`PlainView` (piped): the answer on stdout as plain text, reasoning on stderr.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import time

from r1cli.console import Environment

DIM = "\x1b[2m"
RESET = "\x1b[0m"
ERASE_LINE = "\r\x1b[2K"

# Control characters a model could emit (ESC sequences above all) never reach the terminal raw:
# everything in C0 but tab and newline, DEL, and the C1 range.
_CONTROLS = {c: None for c in [*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0)]}
_MARKDOWN = re.compile(r"(^\s{0,3}#{1,6}\s|\*\*|__|`|^\s*[-*+]\s+\S|^\s*\d+[.)]\s+\S|^\s{0,3}>|^\|.*\|\s*$)", re.M)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)", re.M)
_TEX_ESCAPE = re.compile(r"\\(?=[!-/:-@\[-`{-~])")


def sanitize(text: str) -> str:
    return text.translate(_CONTROLS)


def looks_like_markdown(text: str) -> bool:
    return _MARKDOWN.search(text) is not None


def protect_tex(text: str) -> str:
    """Double the backslash of ``\\[``, ``\\(``, ``\\{``... outside code fences, so that Markdown keeps
    LaTeX as written (CommonMark would otherwise eat the backslash of ``\\[ x^2 \\]``)."""
    parts = _FENCE.split(text)
    out, in_code, i = [], False, 0
    while i < len(parts):
        part = parts[i]
        if i % 2 == 1:  # a fence marker
            out.append(part)
            in_code = not in_code
        else:
            out.append(part if in_code else _TEX_ESCAPE.sub(r"\\\\", part))
        i += 1
    return "".join(out)


class Cursor:
    """Where the cursor is relative to where the text started: rows down and the column, for a
    terminal that wraps at ``width``. O(len(text)) per piece, and O(1) C-level calls for ASCII text."""

    def __init__(self, width: int):
        self.width = max(1, width)
        self.rows = 0
        self.col = 0

    def advance(self, text: str) -> None:
        w = self.width
        first = True
        for part in text.split("\n"):
            if not first:
                self.rows += 1
                self.col = 0
            first = False
            if not part:
                continue
            if part.isascii() and "\t" not in part:
                total = self.col + len(part)
                if total <= w:
                    self.col = total
                else:
                    self.rows += (total - 1) // w
                    self.col = (total - 1) % w + 1
                continue
            from rich.cells import cell_len

            for ch in part:
                cw = (8 - self.col % 8) if ch == "\t" else cell_len(ch)
                if self.col + cw > w:
                    self.rows += 1
                    self.col = 0
                    if ch == "\t":
                        continue
                self.col += cw


class Spinner:
    """``⠋ thinking · 120 tokens · 3.2 s`` on stderr, redrawn ten times a second by a thread; the
    stream only bumps a counter."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, stream, label: str = "thinking"):
        self.stream = stream
        self.label = label
        self.count = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> "Spinner":
        self._thread = threading.Thread(target=self._run, name="r1-spinner", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    break
                tokens = f" · {self.count} tokens" if self.count else ""
                self.stream.write(f"{ERASE_LINE}{self.FRAMES[i % len(self.FRAMES)]} {self.label}{tokens}"
                                  f" · {time.monotonic() - self.t0:.1f} s")
                self.stream.flush()
            i += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        if self._thread is None:
            return
        with self._lock:
            self._stop.set()
            self.stream.write(ERASE_LINE)
            self.stream.flush()
        self._thread.join()
        self._thread = None


class _Batched:
    """A stream whose writes are joined until flush(): one system call per network read, not per token."""

    def __init__(self, stream):
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        if self.parts:
            self.stream.write("".join(self.parts))
            self.parts.clear()
        self.stream.flush()


class _Base:
    def __init__(self, env: Environment, show_thinking: bool):
        self.env = env
        self.show_thinking = show_thinking
        self.reasoning_parts: list[str] = []
        self.answer_parts: list[str] = []
        self.pieces = 0
        self.t0 = time.monotonic()
        self.t_first: float | None = None
        self.done = False

    @property
    def answer(self) -> str:
        return "".join(self.answer_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    def flush(self) -> None:
        """Called by the client when it has caught up with the server (and at least every 50 ms)."""
        self.out.flush()
        if self.err is not self.out:
            self.err.flush()

    def _count(self) -> None:
        self.pieces += 1
        if self.t_first is None:
            self.t_first = time.monotonic() - self.t0


class TerminalView(_Base):
    def __init__(self, env: Environment, show_thinking: bool):
        super().__init__(env, show_thinking)
        self.out = self.err = _Batched(env.stdout)
        self.color = env.out_color
        size = shutil.get_terminal_size((80, 24))
        self.width, self.height = size.columns, size.lines
        self.cursor = Cursor(self.width)
        self.state = "waiting"  # -> "reasoning" -> "answer"
        self.reasoning_col = 0  # 0 when the reasoning text ended with a newline
        self.spinner: Spinner | None = None
        if env.stderr_isatty:
            self.spinner = Spinner(env.stderr, "thinking" if not show_thinking else "waiting").start()

    def _stop_spinner(self) -> None:
        if self.spinner is not None:
            self.spinner.stop()
            self.spinner = None

    def __call__(self, channel: str, text: str) -> None:
        self._count()
        if channel == "reasoning":
            self.reasoning_parts.append(text)
            if not self.show_thinking:
                if self.spinner is not None:
                    self.spinner.count += 1
                return
            text = sanitize(text)
            if self.state == "waiting":
                self._stop_spinner()
                self.state = "reasoning"
                text = text.lstrip("\n")
                if self.color:
                    text = DIM + text
            if text:
                self.reasoning_col = 0 if text.endswith("\n") else 1
                self.out.write(text)
            return
        self.answer_parts.append(text)
        text = sanitize(text)
        if self.state != "answer":
            text = text.lstrip("\n")
            if not text:
                return
            self._stop_spinner()
            lead = ""
            if self.state == "reasoning":
                lead = (RESET if self.color else "") + ("\n\n" if self.reasoning_col else "\n")
            self.state = "answer"
            self.out.write(lead)
        self.cursor.advance(text)
        self.out.write(text)

    def _close_line(self) -> str:
        if self.state == "reasoning":
            return (RESET if self.color else "") + ("\n" if self.reasoning_col else "")
        if self.state == "answer" and self.cursor.col:
            return "\n"
        return ""

    def finish(self) -> None:
        """The answer is complete: render it as Markdown where that is safe, end the line."""
        if self.done:
            return
        self.done = True
        self._stop_spinner()
        if self.state != "answer":
            self.out.write(self._close_line())
            self.out.flush()
            return
        text = self.answer.strip()
        width = shutil.get_terminal_size((self.width, self.height)).columns
        fits = self.cursor.rows < self.height - 2 and width == self.width
        if self.color and fits and looks_like_markdown(text):
            rendered = render_markdown(text, width)
            back = f"\x1b[{self.cursor.rows}A" if self.cursor.rows else ""
            self.out.write("\r" + back + "\x1b[J" + rendered)
            if not rendered.endswith("\n"):
                self.out.write("\n")
        else:
            self.out.write(self._close_line())
        self.out.flush()

    def interrupt(self, note: str = "interrupted") -> None:
        """Ctrl-C: keep what arrived, mark it, and leave the terminal in its normal style."""
        if self.done:
            return
        self.done = True
        self._stop_spinner()
        self.out.write(self._close_line())
        self.out.write((f"{DIM}[{note}]{RESET}" if self.color else f"[{note}]") + "\n")
        self.out.flush()

    def abort(self) -> None:
        """An error ends the stream: stop drawing, end the line; the caller says what happened."""
        if self.done:
            return
        self.done = True
        self._stop_spinner()
        self.out.write(self._close_line())
        self.out.flush()


class PlainView(_Base):
    """Piped: the answer streamed plainly to stdout, the reasoning (when shown) to stderr."""

    def __init__(self, env: Environment, show_thinking: bool):
        super().__init__(env, show_thinking)
        self.out = _Batched(env.stdout)
        self.err = _Batched(env.stderr)
        self.err_dim = env.err_color
        self.started = False
        self.reasoning_started = False
        self.last = ""

    def __call__(self, channel: str, text: str) -> None:
        self._count()
        if channel == "reasoning":
            self.reasoning_parts.append(text)
            if self.show_thinking:
                text = sanitize(text)
                if not self.reasoning_started:
                    text = text.lstrip("\n")
                    if self.err_dim and text:
                        text = DIM + text
                self.reasoning_started = self.reasoning_started or bool(text)
                self.err.write(text)
            return
        self.answer_parts.append(text)
        text = sanitize(text)
        if not self.started:
            text = text.lstrip("\n")
            if not text:
                return
            self.started = True
            self._end_reasoning()
        self.out.write(text)
        self.last = text

    def _end_reasoning(self) -> None:
        if self.reasoning_started:
            self.err.write((RESET if self.err_dim else "") + "\n")
            self.err.flush()
            self.reasoning_started = False

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._end_reasoning()
        if self.started and not self.last.endswith("\n"):
            self.out.write("\n")
        self.out.flush()

    def interrupt(self, note: str = "interrupted") -> None:
        self.finish()
        self.err.write(f"[{note}]\n")
        self.err.flush()

    def abort(self) -> None:
        self.finish()


class AnswerOnlyView(PlainView):
    """`r1 chat --answer-only`: nothing streams and no reasoning shows; the chat then prints the turn's
    final answer, what `r1 ask` prints, one line per question."""

    def __init__(self, env: Environment, show_thinking: bool = False):
        import io

        super().__init__(env, False)
        self.out = _Batched(io.StringIO())


def render_markdown(text: str, width: int) -> str:
    from rich.console import Console
    from rich.markdown import Markdown

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, highlight=False, soft_wrap=False)
    console.print(Markdown(protect_tex(text)))
    return buf.getvalue()


def stats_line(tokens: int | None, ttft_s: float | None, tokens_per_s: float | None, finish: str | None,
               total_s: float | None = None) -> str:
    bits = []
    if tokens is not None:
        bits.append(f"{tokens} tokens")
    if ttft_s is not None:
        bits.append(f"TTFT {ttft_s:.2f} s")
    if tokens_per_s:
        bits.append(f"{tokens_per_s:.1f} tok/s")
    if total_s is not None:
        bits.append(f"{total_s:.2f} s")
    bits.append(finish or "no finish reason")
    return " · ".join(bits)
