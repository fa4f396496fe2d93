"""Final answers of R1 outputs: boxed extraction, grading and voting.

Pure functions, stdlib only at import time: math-verify (and sympy under it, ~0.3 s to import) is
imported inside the functions that grade, the first time one runs.

Extraction follows the field's practice: the LAST complete ``\\boxed{...}`` (or ``\\fbox{...}``),
braces balanced, taken from the answer channel (the text after ``</think>``), else from the
reasoning; a box cut off by max_tokens does not count. Grading is math-verify's
``verify(parse(gold), parse(pred))``, gold first.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

__all__ = ["FinalAnswer", "equivalent", "final_answer", "last_boxed", "majority_vote"]

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_THINK_CLOSE = "</think>"


def _match_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of its ``}``, skipping escaped ``\\{`` ``\\}`` ``\\\\``.

    One pass with a stack, so a text full of unclosed boxes costs linear time, not quadratic.
    Unclosed ``{`` are absent from the result; stray ``}`` are ignored.
    """
    match: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            match[stack.pop()] = i
        i += 1
    return match


def _box_content(text: str, start: int, match: dict[int, int]) -> str | None:
    """Content of the box whose command ends at ``start``; None if incomplete or empty."""
    n = len(text)
    k = start
    while k < n and text[k].isspace():
        k += 1
    if k >= n:
        return None
    if text[k] == "{":
        close = match.get(k)
        if close is None:  # truncated: never closed
            return None
        content = text[k + 1 : close]
    elif k > start:
        # "\boxed 5": one token, up to whitespace, "$" or the end; a {group} inside is taken whole.
        p = k
        while p < n:
            c = text[p]
            if c.isspace() or c == "$" or c == "}":
                break
            if c == "\\":
                p += 2
                continue
            if c == "{":
                close = match.get(p)
                if close is None:
                    return None
                p = close + 1
                continue
            p += 1
        content = text[k : min(p, n)]
    else:  # "\boxedx" is another command; "\boxed" right before "$" or "}" boxes nothing
        return None
    content = content.strip()
    return content or None


def last_boxed(text: str | None) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, else None.

    Nested braces are balanced (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``) and escaped braces
    ``\\{ \\}`` do not count. The space form ``\\boxed 5`` takes one token. A box that is never
    closed (output cut mid-box) or empty (``\\boxed{}``, as when the model quotes the directive)
    is skipped in favour of an earlier complete one. The content is stripped. Never raises.
    """
    if not isinstance(text, str) or "\\" not in text:
        return None
    try:
        candidates = list(_BOX_COMMAND.finditer(text))
        if not candidates:
            return None
        match = _match_braces(text)
        for m in reversed(candidates):
            content = _box_content(text, m.end(), match)
            if content is not None:
                return content
    except Exception:  # pragma: no cover - defensive: extraction must never break a run
        return None
    return None


@dataclass(frozen=True)
class FinalAnswer:
    """A final answer: its text, whether it came from a box, and where it was found.

    ``source`` is "content" (box in the answer), "reasoning" (box in the reasoning only),
    "text" (no box anywhere: the answer text itself) or "none" (nothing at all).
    """

    text: str
    boxed: bool
    source: str


def final_answer(content: str | None, reasoning: str | None = None) -> FinalAnswer:
    """The final answer of one output, given its answer channel and its reasoning channel.

    ``content`` may also be a whole chat message (a dict or an openai SDK message object), whose
    ``reasoning`` / ``reasoning_content`` field is then the reasoning. The last box of the answer; else the last box of the reasoning; else the answer text stripped;
    else ``FinalAnswer("", False, "none")``. If ``content`` still holds a raw ``</think>`` (a server
    without a reasoning parser), only the text after the last one is the answer, the rest reasoning.
    """
    if content is not None and not isinstance(content, str):
        content, reasoning = _message_channels(content, reasoning)
    content = content if isinstance(content, str) else None
    reasoning = reasoning if isinstance(reasoning, str) else None
    if content is not None and _THINK_CLOSE in content:
        head, content = content.rsplit(_THINK_CLOSE, 1)
        reasoning = head if reasoning is None else f"{reasoning}\n{head}"
    box = last_boxed(content)
    if box is not None:
        return FinalAnswer(box, True, "content")
    box = last_boxed(reasoning)
    if box is not None:
        return FinalAnswer(box, True, "reasoning")
    text = (content or "").strip()
    if text:
        return FinalAnswer(text, False, "text")
    return FinalAnswer("", False, "none")


def _message_channels(message, reasoning):
    """A chat message (dict or openai SDK object) as (content, reasoning): vLLM puts the parsed
    reasoning in `reasoning` (older servers: `reasoning_content`)."""
    def get(name):
        if isinstance(message, dict):
            return message.get(name)
        value = getattr(message, name, None)
        if value is None:  # openai SDK objects keep fields they do not know in model_extra
            value = (getattr(message, "model_extra", None) or {}).get(name)
        return value

    return get("content"), reasoning or get("reasoning") or get("reasoning_content")


# ---------------------------------------------------------------------------------------------
# Grading (math-verify, imported lazily)

_WHOLE_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_SPACING = re.compile(r"\\[,;:!]|\\ |\\left|\\right|\s+")


def _normalize(x: str) -> str:
    """A plain-string form for the fallback comparison: no spacing, $, outer box or \\dfrac."""
    s = x.strip()
    while True:
        s = s.strip().strip("$").strip()
        m = _WHOLE_BOX.match(s)
        if not m or _match_braces(s).get(m.end() - 1) != len(s) - 1:
            break
        s = s[m.end() : -1]
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _SPACING.sub("", s)
    return s.rstrip(".")


def _math_verify():
    import logging

    import math_verify  # noqa: F401  (sympy + latex2sympy: ~0.3 s, only when grading)

    logger = logging.getLogger("math_verify")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        # its "timeout disabled" warning would otherwise land on the CLI's stderr
        logger.addHandler(logging.NullHandler())
    return math_verify


# "\text{5 apples}" parses as the symbol "5apples"; "5\text{ apples}" parses as 5 (units dropped).
_TEXT_NUMBER_UNIT = re.compile(r"\\(?:text|mathrm|textbf)\{\s*(-?\d[\d,]*(?:\.\d+)?)\s+([^{}\\]*)\}")


@functools.lru_cache(maxsize=4096)
def _parse(x: str, threaded: bool) -> tuple:
    """math-verify's parse of an answer, wrapped so a bare ``1/2`` or ``\\frac12`` parses."""
    mv = _math_verify()
    # math-verify's timeout uses signal.alarm, which only works in the main thread.
    timeout = None if threaded else 5
    x = _TEXT_NUMBER_UNIT.sub(r"\1\\text{ \2}", x)
    if "\\boxed" in x or "\\fbox" in x:
        forms = [x]
    else:
        forms = ["\\boxed{" + x + "}", f"${x}$", x]
    for form in forms:
        try:
            parsed = mv.parse(form, parsing_timeout=timeout)
        except Exception:
            parsed = []
        if parsed:
            return tuple(parsed)
    return ()


def equivalent(a: str, b: str) -> bool:
    """Whether answer ``b`` is mathematically equal to reference ``a`` (math-verify, gold first).

    ``\\frac{1}{2}`` = ``0.5``, ``5`` = ``5.0``, ``\\boxed{5}`` = ``5``, ``50\\%`` = ``0.5``.
    Falls back to comparing normalized strings when math-verify parses nothing. Empty answers
    equal nothing. Never raises. Safe in worker threads (math-verify's timeout is then off).
    """
    try:
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        a, b = a.strip(), b.strip()
        if not a or not b:
            return False
        na, nb = _normalize(a), _normalize(b)
        if na and na == nb:
            return True
        threaded = threading.current_thread() is not threading.main_thread()
        gold, pred = _parse(a, threaded), _parse(b, threaded)
        if not gold or not pred:
            return False
        mv = _math_verify()
        return bool(
            mv.verify(list(gold), list(pred), timeout_seconds=None if threaded else 5)
        )
    except Exception:
        return False


def majority_vote(answers: list[str]) -> tuple[str | None, dict[str, int]]:
    """The most common answer, grouping math-verify-equivalent spellings.

    Returns ``(winner, {representative: count})`` where a group's representative is its first-seen
    spelling (stripped) and groups are in first-seen order. Ties go to the group seen first.
    Empty (or None) answers are ignored; with none left the result is ``(None, {})``.
    """
    reps: list[str] = []
    counts: dict[str, int] = {}
    for ans in answers:
        if not isinstance(ans, str) or not ans.strip():
            continue
        ans = ans.strip()
        for rep in reps:
            if rep == ans or equivalent(rep, ans):
                counts[rep] += 1
                break
        else:
            reps.append(ans)
            counts[ans] = 1
    if not reps:
        return None, {}
    winner = reps[0]
    for rep in reps[1:]:
        if counts[rep] > counts[winner]:
            winner = rep
    return winner, counts
