"""Final-answer extraction, grading and voting (r1cli.answers)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1cli.answers import FinalAnswer, _match_braces, equivalent, final_answer, last_boxed, majority_vote

DEMO_OUTPUTS = Path(__file__).parent / "data" / "demo_outputs.jsonl"


def balanced(s: str) -> bool:
    """Braces balanced, with backslash escapes (\\{ \\} \\\\) not counting, as in LaTeX."""
    depth, i = 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


# --- last_boxed -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{5}", "5"),
        ("The answer is $\\boxed{42}$.", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{x^{2}+2x+1}", "x^{2}+2x+1"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not count
        ("\\boxed{\\}}", "\\}"),
        ("\\boxed{2} and later \\boxed{3}", "3"),
        ("\\boxed{2}, \\fbox{7}", "7"),
        ("\\fbox{7}", "7"),
        ("\\fbox{7} then \\boxed{8}", "8"),
        ("\\boxed{ 5 }", "5"),
        ("\\boxed {5}", "5"),
        ("so \\boxed 5", "5"),
        ("so $\\boxed 5$.", "5"),
        ("so \\boxed 5 is it", "5"),
        ("\\boxed \\frac{1}{2} done", "\\frac{1}{2}"),
        ("\\text{answer: \\boxed 5}", "5"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("\\\\boxed{5}", "5"),  # doubled backslash (markdown-escaped) still read
        ("\\boxed{3} ... wait, \\boxed{\\frac{1}{", "3"),  # truncated last box: earlier one wins
        ("\\boxed{\\frac{1}{", None),
        ("put the final answer in \\boxed{}", None),  # the directive quoted: empty box
        ("\\boxed{7} (as asked: \\boxed{})", "7"),
        ("\\boxedx{5}", None),  # another command
        ("\\boxed", None),
        ("\\boxed$", None),
        ("no box here", None),
        ("", None),
        (None, None),
        ("\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"),
        ("{ stray open \\boxed{9}", "9"),
        ("stray close } \\boxed{9} }", "9"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


_fragments = st.sampled_from(
    ["\\boxed", "\\fbox", "\\boxed{", "{", "}", "\\", "\\{", "\\}", " ", "\n", "$", "a", "1", "\\frac", "x^"]
)
_boxy_text = st.lists(_fragments, max_size=40).map("".join)


@given(st.one_of(st.text(), _boxy_text))
def test_last_boxed_never_raises_and_is_balanced(text):
    result = last_boxed(text)
    if result is not None:
        assert isinstance(result, str)
        assert result and result == result.strip()
        assert result in text
        assert balanced(result)


@st.composite
def _balanced_content(draw, depth=0):
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["word", "group", "escaped"] if depth < 3 else ["word", "escaped"]))
        if kind == "word":
            parts.append(draw(st.sampled_from(["1", "x", "+", "\\frac", "\\pi", " ", "^", "2", ",", "\\\\"])))
        elif kind == "escaped":
            parts.append(draw(st.sampled_from(["\\{", "\\}", "\\$"])))
        else:
            parts.append("{" + draw(_balanced_content(depth=depth + 1)) + "}")
    return "".join(parts)


_plain = st.text(alphabet=st.sampled_from(list("ab1 \n.$=")), max_size=20)


@given(_plain, _balanced_content(), _plain, st.sampled_from(["\\boxed", "\\fbox"]))
def test_last_boxed_recovers_any_balanced_content(prefix, content, suffix, command):
    text = f"{prefix}{command}{{{content}}}{suffix}"
    expected = content.strip() or None
    assert last_boxed(text) == expected


@given(_balanced_content(), st.integers(min_value=1))
def test_last_boxed_truncated_box_falls_back_to_earlier(content, cut):
    full = f"first \\boxed{{7}} then \\boxed{{{{{content}}}}}"
    truncated = full[: len(full) - 1 - (cut % (len(content) + 2))]  # cut somewhere inside the last box
    assert last_boxed(truncated) == "7"


def test_last_boxed_is_linear_on_degenerate_output():
    # a model stuck in a loop of unclosed boxes until max_tokens
    text = "\\boxed{\\frac{1}{" * 20000
    assert last_boxed(text) is None
    assert _match_braces("{" * 10 + "}" * 10) == {9 - i: 10 + i for i in range(10)}


# --- final_answer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, reasoning, expected",
    [
        ("So \\boxed{5}.", "I think \\boxed{4}", FinalAnswer("5", True, "content")),
        ("The answer is 5.", "so it is \\boxed{5}", FinalAnswer("5", True, "reasoning")),
        (None, "Okay... the answer is \\boxed{12}", FinalAnswer("12", True, "reasoning")),
        ("  The answer is 5.  ", "no box", FinalAnswer("The answer is 5.", False, "text")),
        ("", "no box", FinalAnswer("", False, "none")),
        (None, None, FinalAnswer("", False, "none")),
        ("   \n", None, FinalAnswer("", False, "none")),
        # cut by max_tokens: everything is reasoning, the last box unfinished
        (None, "Let me compute. So the answer is \\boxed{\\frac{3}{", FinalAnswer("", False, "none")),
        # server without a reasoning parser: raw tags in content
        ("<think>\nmaybe \\boxed{4}\n</think>\n\nIt is 5.", None, FinalAnswer("4", True, "reasoning")),
        ("<think>\nmaybe \\boxed{4}\n</think>\n\n\\boxed{5}", None, FinalAnswer("5", True, "content")),
        ("hmm \\boxed{4}</think>", None, FinalAnswer("4", True, "reasoning")),
    ],
)
def test_final_answer(content, reasoning, expected):
    assert final_answer(content, reasoning) == expected


# Hand-checked R1-style outputs (reasoning, content) -> answer, in the shapes the distills produce.
R1_OUTPUTS = [
    pytest.param(
        "Okay, so I need to convert the point $(0,3)$ to polar coordinates. r = \\sqrt{0^2+3^2} = 3."
        " The angle is \\frac{\\pi}{2} since the point is on the positive y-axis.\n",
        "To convert $(0, 3)$ to polar coordinates:\n\n1. $r = \\sqrt{0^2 + 3^2} = 3$\n"
        "2. $\\theta = \\frac{\\pi}{2}$\n\n**Final FinalAnswer**\n\\[\n\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}\n\\]",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        id="polar-nested",
    ),
    pytest.param(
        "First, 3/4 of 8 is 6... wait, the question asks for the probability. Let me recount: 3 of 4.\n",
        "The probability is\n\n$$\n\\boxed{\\dfrac{3}{4}}\n$$",
        "\\dfrac{3}{4}",
        id="dfrac-display",
    ),
    pytest.param(
        "Hmm, x = \\sqrt{2} + \\frac{\\sqrt{6}}{3}? Let me verify: \\boxed{wrong} no.\n",
        "Thus $x = \\boxed{\\sqrt{2}+\\frac{\\sqrt{6}}{3}}$.",
        "\\sqrt{2}+\\frac{\\sqrt{6}}{3}",
        id="sqrt-in-frac",
    ),
    pytest.param(
        "The solutions of x^2-3x+2=0 are 1 and 2. The answer should be put in \\boxed{}.\n",
        "The solution set is $\\boxed{\\{1, 2\\}}$.",
        "\\{1, 2\\}",
        id="escaped-set-braces",
    ),
    pytest.param(
        "嗯，我需要比较选项。A 不对，C 也不对，所以是 B。\n",
        "综上所述，答案是 $\\boxed{\\text{B}}$。",
        "\\text{B}",
        id="zh-text-choice",
    ),
    pytest.param(
        "Let's compute step by step. First part gives \\boxed{2}. Second part...\n",
        "(a) $\\boxed{2}$\n\n(b) $\\boxed{x^{2}+\\frac{1}{x^{2}}}$",
        "x^{2}+\\frac{1}{x^{2}}",
        id="several-boxes-last-wins",
    ),
    pytest.param(
        "The matrix is [[1,2],[3,4]].\n",
        "$$\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}$$",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        id="matrix-row-separator",
    ),
    pytest.param(
        "So the final answer is \\boxed{18}.\n\nWait, did I subtract the muffins? 16-3-4=9, 9*2=18. Yes.\n"
        "**Final FinalAnswer**\nThe answer is \\(\\boxed{18}\\).",
        None,
        "18",
        id="box-only-in-reasoning",
    ),
]


@pytest.mark.parametrize("reasoning, content, expected", R1_OUTPUTS)
def test_final_answer_on_r1_style_outputs(reasoning, content, expected):
    answer = final_answer(content, reasoning)
    assert answer.text == expected
    assert answer.boxed


# --- real outputs of the served demo model ---------------------------------------------------------


def _demo_rows():
    if not DEMO_OUTPUTS.is_file():
        return [pytest.param(None, id="demo_outputs.jsonl-missing")]
    rows = [json.loads(line) for line in DEMO_OUTPUTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return [pytest.param(None, id="demo_outputs.jsonl-empty")]
    return [pytest.param(row, id=f"{i}-{row.get('finish_reason')}") for i, row in enumerate(rows)]


@pytest.mark.parametrize("row", _demo_rows())
def test_final_answer_on_real_demo_model_outputs(row):
    if row is None:
        pytest.fail(
            f"{DEMO_OUTPUTS} is missing or empty: it must hold real outputs of the served demo model, one JSON "
            'object a line with "question", "expected", "reasoning", "content", "finish_reason"'
        )
    answer = final_answer(row["content"], row["reasoning"])
    if row["finish_reason"] == "stop":
        assert answer.text == row["expected"], row
    elif row["finish_reason"] == "length":
        assert not answer.boxed, row
    else:
        pytest.fail(f"unexpected finish_reason {row['finish_reason']!r}")


# --- equivalent ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "0.5"),
        ("\\dfrac{1}{2}", "\\frac12"),
        ("5", "5.0"),
        ("5", "\\boxed{5}"),
        ("\\boxed{5}", "5"),
        ("$5$", "5"),
        ("50\\%", "0.5"),
        ("50\\%", "50"),
        ("5", "5\\text{ apples}"),
        ("5", "\\text{5 apples}"),  # math-verify alone reads the symbol "5apples"
        ("\\boxed{\\text{12 cm}}", "12"),
        ("\\text{5}", "5"),
        ("1,000", "1000"),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt2/2"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
        ("\\{1,2\\}", "\\{2,1\\}"),
        ("x=5", "5"),
        ("\\text{B}", "B"),
        ("18", "18"),
        ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
        ("hello world", "hello  world"),  # nothing to parse as math: normalized strings
    ],
)
def test_equivalent(gold, pred):
    assert equivalent(gold, pred)


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("\\frac{1}{2}", "0.6"),
        ("5", "6"),
        ("\\pi", "3.14159"),
        ("6", "\\text{5 apples}"),
        ("\\frac{1}{3}", "0.3333"),
        ("A", "B"),
        ("5", ""),
        ("", ""),
        ("  ", "5"),
        ("\\frac{1}{2}", "\\boxed{\\frac{1}{"),
    ],
)
def test_not_equivalent(gold, pred):
    assert not equivalent(gold, pred)


@given(st.one_of(st.text(max_size=30), _boxy_text), st.one_of(st.text(max_size=30), _boxy_text))
def test_equivalent_never_raises(a, b):
    assert equivalent(a, b) in (True, False)


def test_equivalent_in_a_worker_thread_is_quiet(capfd):
    # math-verify's timeout uses signal.alarm, which raises outside the main thread
    results = []
    t = threading.Thread(target=lambda: results.append((equivalent("\\frac{1}{2}", "0.5"), equivalent("1", "2"))))
    t.start()
    t.join()
    assert results == [(True, False)]
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_importing_the_pure_modules_does_not_import_math_verify():
    code = (
        "import sys, r1cli.answers, r1cli.rules, r1cli.channels;"
        "bad = [m for m in ('math_verify', 'sympy', 'latex2sympy2_extended') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# --- majority_vote -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answers, winner, counts",
    [
        ([], None, {}),
        (["", "  ", None], None, {}),
        (["5"], "5", {"5": 1}),
        (["5", "6", "5"], "5", {"5": 2, "6": 1}),
        (["6", "5", "5"], "5", {"6": 1, "5": 2}),
        (["\\frac{1}{2}", "0.5", "1/2", "3"], "\\frac{1}{2}", {"\\frac{1}{2}": 3, "3": 1}),
        (["0.5", "\\frac{1}{2}", "3", "3", "3"], "3", {"0.5": 2, "3": 3}),
        (["7", "8"], "7", {"7": 1, "8": 1}),  # tie: first seen
        (["8", "7", "7", "8"], "8", {"8": 2, "7": 2}),  # tie: first seen group
        (["", "4", "", "4.0", "5"], "4", {"4": 2, "5": 1}),
        ([" 5 ", "5"], "5", {"5": 2}),
    ],
)
def test_majority_vote(answers, winner, counts):
    got_winner, got_counts = majority_vote(answers)
    assert got_winner == winner
    assert got_counts == counts
    assert list(got_counts) == list(counts)  # groups in first-seen order
