"""Split a streamed R1 output into reasoning and answer when the server leaves the tags in.

Without ``--reasoning-parser deepseek_r1``, vLLM streams ``<think>...</think>`` as plain content.
:class:`ThinkSplitter` turns those chunks into ("reasoning" | "answer", text) pieces as they arrive.
Pure, stdlib only.

Rules:
- ``</think>`` ends reasoning; ``<think>`` starts it. The tags themselves are never emitted.
- With ``in_think=True`` (the prompt already ended with ``<think>\\n``, as DeepSeek's current chat
  template does) the output starts as reasoning; otherwise as answer.
- Whitespace at the very start of the answer (the start of the output, or right after
  ``</think>``) is held until something else arrives: if that is ``<think>`` the whitespace is
  dropped, otherwise it is emitted with the answer. Whitespace-only answers are dropped at flush.
- A tag split across chunks (``"</th"`` + ``"ink>"``) is recognised: only a chunk's ending that
  could be the beginning of a tag is held back, everything else is emitted at once.
- Chunking never changes the result: for any split of a text into chunks, the pieces joined per
  channel equal those of feeding the whole text at once.
"""

from __future__ import annotations

REASONING = "reasoning"
ANSWER = "answer"

_OPEN = "<think>"
_CLOSE = "</think>"
_TAGS = (_OPEN, _CLOSE)
_MAX_PARTIAL = len(_CLOSE) - 1


def _partial_tag_len(buf: str) -> int:
    """Length of the longest ending of ``buf`` that is a proper beginning of a tag."""
    for k in range(min(len(buf), _MAX_PARTIAL), 0, -1):
        end = buf[-k:]
        if _OPEN.startswith(end) or _CLOSE.startswith(end):
            return k
    return 0


class ThinkSplitter:
    """Incremental ``<think>`` / ``</think>`` splitter for raw streamed content."""

    def __init__(self, in_think: bool = False) -> None:
        self.channel = REASONING if in_think else ANSWER
        self._buf = ""  # unprocessed text: at most a possible partial tag between calls
        self._held = ""  # whitespace at the start of an answer, not emitted yet
        self._answer_start = not in_think

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Process one chunk; return the pieces it completes, adjacent same-channel pieces merged."""
        if not text:
            return []
        self._buf += text
        out: list[tuple[str, str]] = []
        self._drain(out, final=False)
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of stream: emit whatever was held back (a partial tag is just text after all)."""
        out: list[tuple[str, str]] = []
        self._drain(out, final=True)
        self._held = ""
        return out

    @staticmethod
    def _emit(out: list[tuple[str, str]], channel: str, piece: str) -> None:
        if not piece:
            return
        if out and out[-1][0] == channel:
            out[-1] = (channel, out[-1][1] + piece)
        else:
            out.append((channel, piece))

    def _drain(self, out: list[tuple[str, str]], final: bool) -> None:
        buf = self._buf
        while buf:
            if self.channel == ANSWER and self._answer_start:
                stripped = buf.lstrip()
                self._held += buf[: len(buf) - len(stripped)]
                buf = stripped
                if not buf:
                    break
                if buf.startswith(_OPEN):
                    buf = buf[len(_OPEN) :]
                    self._held = ""
                    self.channel = REASONING
                    continue
                if buf.startswith(_CLOSE):  # nothing to close: drop it, still at the start
                    buf = buf[len(_CLOSE) :]
                    continue
                if not final and any(tag.startswith(buf) for tag in _TAGS):
                    break  # could still become a tag: wait for more
                self._emit(out, ANSWER, self._held)
                self._held = ""
                self._answer_start = False
                continue
            hits = [(i, tag) for tag in _TAGS if (i := buf.find(tag)) >= 0]
            if hits:
                i, tag = min(hits)
                self._emit(out, self.channel, buf[:i])
                buf = buf[i + len(tag) :]
                if tag == _CLOSE:
                    self.channel = ANSWER
                    self._answer_start = True
                else:
                    self.channel = REASONING
                continue
            keep = 0 if final else _partial_tag_len(buf)
            self._emit(out, self.channel, buf[: len(buf) - keep])
            buf = buf[len(buf) - keep :]
            break
        self._buf = buf
