"""Final answers of R1 outputs: boxed extraction, grading and voting.

Pure functions, stdlib only at import time: math-verify (and sympy under it, ~0.3 s to import) is
imported inside the functions that grade, the first time one runs.

Extraction (what ``r1 ask`` prints and what majority voting counts) follows the field's practice: the
LAST complete ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced, taken from the answer channel
(the text after ``</think>``), else from the reasoning; a box cut off by max_tokens does not count.

Grading an evaluation's sample (``grade``) is lighteval's, not r1's: math-verify reads the model's whole
generated text with the extraction configuration of lighteval's ``pass_at_k_math`` and compares it with
the reference, so r1's verdict is the one lighteval gives (see "Grading as lighteval grades" below).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

__all__ = ["FinalAnswer", "equivalent", "final_answer", "generated_text", "grade", "grade_answer",
           "last_boxed", "majority_vote"]

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
# Equivalence of two answers, for majority voting (math-verify, imported lazily). r1's own
# normalizations live here; an evaluation's verdict does not use them (see grade() below).

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
    # lighteval's NormalizationConfig(equations=True) still works in latex2sympy2_extended 1.x, which logs a
    # deprecation warning for it at every parse: one line per graded sample on stderr.
    normalization_logger = logging.getLogger("latex2sympy2_extended.math_normalization")
    if _not_equations_deprecation not in normalization_logger.filters:
        normalization_logger.addFilter(_not_equations_deprecation)
    return math_verify


def _not_equations_deprecation(record) -> bool:
    return "equations=True in NormalizationConfig is deprecated" not in record.getMessage()


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
    placed: dict[str, str] = {}  # a spelling seen before: its group (runs repeat spellings; math-verify is slow)
    for ans in answers:
        if not isinstance(ans, str) or not ans.strip():
            continue
        ans = ans.strip()
        if ans not in placed:
            placed[ans] = next((rep for rep in reps if rep == ans or equivalent(rep, ans)), ans)
            if placed[ans] == ans and ans not in counts:
                reps.append(ans)
                counts[ans] = 0
        counts[placed[ans]] += 1
    if not reps:
        return None, {}
    winner = reps[0]
    for rep in reps[1:]:
        if counts[rep] > counts[winner]:
            winner = rep
    return winner, counts


# ---------------------------------------------------------------------------------------------
# Grading as lighteval grades (issue 23): r1's verdict is the public one.
#
# The configuration is lighteval's `Metrics.pass_at_k_math`, the metric of its `aime24` and `math_500`
# tasks (https://github.com/huggingface/lighteval, read at commit 3fd15266bc84, May 2026;
# src/lighteval/metrics/metrics.py, `pass_at_k_math`;
# src/lighteval/tasks/tasks/aime.py and src/lighteval/tasks/tasks/math_500.py use it):
#
#     PassAtK(strip_strings=True, sample_scoring_function=MultilingualExtractiveMatchMetric(
#         language=Language.ENGLISH,
#         gold_extraction_target=[ExprExtractionConfig(), LatexExtractionConfig()],
#         pred_extraction_target=[ExprExtractionConfig(), LatexExtractionConfig()],
#         precision=6))
#
# with MultilingualExtractiveMatchMetric's defaults (src/lighteval/metrics/dynamic_metrics.py):
# fallback_mode="first_match", extraction_mode="any_match", timeout_seconds=5, and lighteval's
# LatexExtractionConfig defaults (src/lighteval/metrics/utils/extractive_match_utils.py):
# try_extract_without_anchor=True, boxed_match_priority=55, NormalizationConfig(basic_latex=True,
# units=True, malformed_operators=True, nits=True, boxed="all", equations=True). math-verify's own
# defaults differ (boxed_match_priority=50, equations=False), so every field is written out here.
# Comparison: precision=6 is math-verify's verify(float_rounding=6), gold first (lighteval's
# compare_gold_target(gold, pred, precision) in src/lighteval/metrics/utils/math_comparison.py).
# lighteval runs its own copy of math-verify's extraction and comparison (those two files); the
# math-verify r1 calls differs from that copy only in small details of its regexes.
#
# The text graded is the model's generated text, as lighteval gets it from vLLM: the reasoning, the
# `</think>` that closes it and the answer. The R1 distills' chat template puts `<think>` in the prompt
# (open-r1 README: the template "prefills the assistant response with `<think>`"), so the generation
# holds `</think>` alone; lighteval's remove_reasoning_tags (src/lighteval/utils/utils.py, applied in
# src/lighteval/pipeline.py `_post_process_outputs`, tags [("<think>", "</think>")]) removes a block
# only when both tags are in the text, so it leaves this text whole; the lighteval that open-r1's
# published reproduction ran (commit ebb7377, Feb 2025) had no such step at all. PassAtK then strips it.
#
# The gold: lighteval's math_500 gives the dataset's worked solution, whose last \boxed{} holds the
# answer (the MATH-500 "answer" field); its aime24 gives the bare integer, which parses the same boxed or
# not. r1's reference is that answer, so the gold text is "\boxed{reference}".
#
# r1's own steps (wrapping an unboxed answer in \boxed{}, the reasoning's box as a fallback, rewriting
# "\text{5 apples}", comparing normalized strings) are gone from grading: lighteval's extraction
# already reads an unboxed answer (its rightmost number or expression) and a box in the reasoning (the
# whole text is searched), and where r1's steps gave another verdict, lighteval's is the one kept.

_THINK_OPEN = "<think>"
LIGHTEVAL_PRECISION = 6  # pass_at_k_math's precision: verify(float_rounding=6)
LIGHTEVAL_TIMEOUT_S = 5  # MultilingualExtractiveMatchMetric's timeout_seconds


@functools.lru_cache(maxsize=1)
def lighteval_configs() -> tuple[tuple, tuple]:
    """(gold extraction targets, prediction extraction targets) of lighteval's pass_at_k_math, as
    math-verify's config objects. Both are [ExprExtractionConfig(), LatexExtractionConfig()]."""
    _math_verify()
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    latex = LatexExtractionConfig(
        try_extract_without_anchor=True,
        boxed_match_priority=55,
        normalization_config=NormalizationConfig(basic_latex=True, units=True, malformed_operators=True,
                                                 nits=True, boxed="all", equations=True),
    )
    expr = ExprExtractionConfig(try_extract_without_anchor=True)
    return (expr, latex), (expr, latex)


def _remove_reasoning_tags(text: str, tag_pairs=((_THINK_OPEN, _THINK_CLOSE),)) -> str:
    """lighteval's remove_reasoning_tags (src/lighteval/utils/utils.py), line for line: each
    ``<think>...</think>`` block goes, and only while both tags are in the text."""
    result = text
    for start_tag, end_tag in tag_pairs:
        while start_tag in result and end_tag in result:
            start = result.find(start_tag)
            end = result.find(end_tag, start)
            if start != -1 and end != -1:
                result = result[:start] + result[end + len(end_tag):]
            else:
                break
    return result


def generated_text(content, reasoning: str | None = None) -> str:
    """The text lighteval grades for one output: the generation as vLLM returns it without a reasoning
    parser (reasoning, ``</think>``, answer), after lighteval's think-tag removal and strip.

    ``content`` and ``reasoning`` are the two channels a reasoning parser splits the generation into
    (vLLM's deepseek_r1 parser splits at the first ``</think>``, so joining them with it restores the
    text); ``content`` may also be a whole chat message, as for final_answer. A server without a parser
    sends the whole generation as ``content``: it is then taken as it is.
    """
    if content is not None and not isinstance(content, str):
        content, reasoning = _message_channels(content, reasoning)
    content = content if isinstance(content, str) else ""
    reasoning = reasoning if isinstance(reasoning, str) else ""
    if reasoning and content:
        text = f"{reasoning}{_THINK_CLOSE}{content}"
    else:
        text = reasoning or content  # cut inside the reasoning: no </think> was generated
    return _remove_reasoning_tags(text).strip()


def _lighteval_parse(text: str, config, threaded: bool) -> list:
    mv = _math_verify()
    return mv.parse(text, extraction_config=list(config), fallback_mode="first_match",
                    extraction_mode="any_match", parsing_timeout=None if threaded else LIGHTEVAL_TIMEOUT_S)


@functools.lru_cache(maxsize=1024)
def _gold(reference: str, threaded: bool) -> tuple:
    gold_config, _ = lighteval_configs()
    text = reference if _BOX_COMMAND.search(reference) else "\\boxed{" + reference + "}"
    return tuple(_lighteval_parse(text, gold_config, threaded))


def _grade_text(reference, text: str) -> bool:
    try:
        if not isinstance(reference, str) or not reference.strip() or not text:
            return False
        threaded = threading.current_thread() is not threading.main_thread()
        gold = _gold(reference.strip(), threaded)
        _, pred_config = lighteval_configs()
        pred = _lighteval_parse(text, pred_config, threaded)
        if not gold or not pred:
            return False
        return bool(_math_verify().verify(list(gold), pred, float_rounding=LIGHTEVAL_PRECISION,
                                          timeout_seconds=None if threaded else LIGHTEVAL_TIMEOUT_S))
    except Exception:  # pragma: no cover - defensive: grading must never break a run
        return False


def grade(reference: str, content, reasoning: str | None = None) -> bool:
    """Whether an output is right, as lighteval's math tasks grade it (pass_at_k_math's configuration).

    ``content`` is the answer channel (or a whole chat message), ``reasoning`` the reasoning channel:
    the generated text they make up (generated_text) is what math-verify reads, with lighteval's
    extraction and comparison settings, against ``\\boxed{reference}``. Never raises; safe in worker
    threads (math-verify's timeouts are then off, as they use signal.alarm).
    """
    return _grade_text(reference, generated_text(content, reasoning))


def grade_answer(reference: str, answer: str | None) -> bool:
    """Whether a final answer (a box's content, as majority voting picks one) is right, graded as
    lighteval grades an output whose final box holds it: ``grade(reference, "\\boxed{answer}")``."""
    if not isinstance(answer, str) or not answer.strip():
        return False
    return _grade_text(reference, "\\boxed{" + answer.strip() + "}")
