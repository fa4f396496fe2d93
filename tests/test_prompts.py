"""The R1 prompt rules (r1cli.rules): pure functions, parametrized cases and properties."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1cli.rules import (
    MATH_DIRECTIVE_EN,
    MATH_DIRECTIVE_ZH,
    THINK_PREFIX,
    add_directive,
    build_messages,
    final_only,
    fold_system,
    is_chinese,
    request_extras,
    temperature_warning,
    template_opens_think,
)

EN = MATH_DIRECTIVE_EN
ZH = MATH_DIRECTIVE_ZH
BOS = "<｜begin▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
EOS = "<｜end▁of▁sentence｜>"


def test_constants_are_deepseeks_exact_text():
    assert EN == "Please reason step by step, and put your final answer within \\boxed{}."
    assert ZH == "请逐步推理，并将最终答案放在\\boxed{}内。"
    assert THINK_PREFIX == "<think>\n"


# --- is_chinese ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1+1等于几？", True),
        ("请计算 $\\frac{1}{2}+\\frac{1}{3}$ 的值", True),
        ("已知 f(x)=ax^2+bx+c，f(1)=2，f(2)=3，f(3)=5，求 a+b+c。", True),
        ("解方程 x^2 - 5x + 6 = 0", True),
        ("小明有 3 个苹果，又买了 5 个。他现在有几个苹果？", True),
        ("What is 1+1?", False),
        ("Solve $x^2 - 5x + 6 = 0$.", False),
        ("Translate 你好 into English, please.", False),
        ("How many strokes does the character 龍 have?", False),
        ("Compute \\frac{1}{2} + \\sqrt{3}", False),
        ("", False),
        ("12345 + 678", False),
        ("x^2", False),
    ],
)
def test_is_chinese(text, expected):
    assert is_chinese(text) is expected


# --- add_directive --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What is 2+3?", "What is 2+3?\n" + EN),
        ("2+3等于几？", "2+3等于几？\n" + ZH),
        ("What is 2+3?\n\n  ", "What is 2+3?\n" + EN),
        ("", EN),
        ("   ", EN),
        ("已知 f(x)=ax^2+bx+c，求 a+b+c。", "已知 f(x)=ax^2+bx+c，求 a+b+c。\n" + ZH),
    ],
    ids=["en", "zh", "trailing-space", "empty", "blank", "zh-formula"],
)
def test_add_directive_in_the_questions_language(question, expected):
    assert add_directive(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "What is 2+3?\n" + EN,
        "2+3等于几？\n" + ZH,
        EN + "\nWhat is 2+3?",  # directive first: still there, left alone
        "What is 2+3? " + ZH,  # the other language's directive also counts
        "2+3等于几？" + EN,
    ],
)
def test_add_directive_never_doubles(question):
    assert add_directive(question) == question


@given(st.text())
def test_add_directive_is_idempotent_and_adds_exactly_one(question):
    once = add_directive(question)
    assert add_directive(once) == once
    if EN not in question and ZH not in question:
        assert once.count(EN) + once.count(ZH) == 1
        assert once.endswith(EN) or once.endswith(ZH)
        assert once.startswith(question.rstrip())


# --- fold_system / final_only ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "system, user, expected",
    [
        (None, "Hi", "Hi"),
        ("", "Hi", "Hi"),
        ("  \n", "Hi", "Hi"),
        ("You are terse.", "Hi", "You are terse.\n\nHi"),
        ("You are terse.\n", "Hi", "You are terse.\n\nHi"),
        ("你是一个数学老师。", "1+1=?", "你是一个数学老师。\n\n1+1=?"),
    ],
)
def test_fold_system(system, user, expected):
    assert fold_system(system, user) == expected


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, ""),
        ("", ""),
        ("The answer is 5.", "The answer is 5."),
        ("<think>\nhmm\n</think>\n\nThe answer is 5.", "\n\nThe answer is 5."),
        ("hmm</think>5", "5"),  # template-opened think: no opening tag in the output
        ("a</think>b</think>c", "c"),
        ("<think>\nnever closed", "<think>\nnever closed"),
    ],
)
def test_final_only_keeps_what_the_template_keeps(content, expected):
    assert final_only(content) == expected


# --- build_messages -------------------------------------------------------------------------------


def test_build_messages_single_question_math():
    msgs = build_messages([], "What is 2+3?")
    assert msgs == [{"role": "user", "content": "What is 2+3?\n" + EN}]


def test_build_messages_system_is_folded_never_a_role():
    msgs = build_messages([], "What is 2+3?", system="Answer briefly.")
    assert msgs == [{"role": "user", "content": "Answer briefly.\n\nWhat is 2+3?\n" + EN}]


def test_build_messages_history():
    turns = [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "<think>\n2+3 is 5.\n</think>\n\n$\\boxed{5}$"},
        {"role": "user", "content": "那么 5 的平方是多少？"},
        {"role": "assistant", "content": "5 squared...</think>\\boxed{25}", "reasoning": "ignored"},
    ]
    before = copy.deepcopy(turns)
    msgs = build_messages(turns, "And times 2?", system="Be brief.")
    assert turns == before  # the caller's history is not modified
    assert msgs == [
        {"role": "user", "content": "Be brief.\n\nWhat is 2+3?\n" + EN},
        {"role": "assistant", "content": "\n\n$\\boxed{5}$"},
        {"role": "user", "content": "那么 5 的平方是多少？\n" + ZH},
        {"role": "assistant", "content": "\\boxed{25}"},
        {"role": "user", "content": "And times 2?\n" + EN},
    ]


def test_build_messages_system_only_in_first_user_message():
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
    ]
    msgs = build_messages(turns, "c", system="SYS", math=False)
    assert [m["content"] for m in msgs] == ["SYS\n\na", "b", "c"]


def test_build_messages_without_math_adds_no_directive():
    msgs = build_messages([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "bye", math=False)
    assert msgs == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "bye"},
    ]


def test_build_messages_history_with_directive_already_sent_is_not_doubled():
    first = build_messages([], "What is 2+3?")[0]["content"]
    msgs = build_messages([{"role": "user", "content": first}, {"role": "assistant", "content": "5"}], "x?")
    assert msgs[0]["content"] == first
    assert msgs[0]["content"].count(EN) == 1


def test_build_messages_prefill_think():
    msgs = build_messages([], "1+1等于几？", prefill_think=True)
    assert msgs == [
        {"role": "user", "content": "1+1等于几？\n" + ZH},
        {"role": "assistant", "content": "<think>\n"},
    ]
    assert request_extras(True) == {"continue_final_message": True, "add_generation_prompt": False}
    assert request_extras(False) == {}


@pytest.mark.parametrize("role", ["system", "tool", "developer", None])
def test_build_messages_rejects_other_roles(role):
    with pytest.raises(ValueError, match="role"):
        build_messages([{"role": role, "content": "x"}], "q")


_turn_text = st.text(max_size=40)


@st.composite
def _histories(draw):
    n = draw(st.integers(0, 4))
    turns = []
    for _ in range(n):
        turns.append({"role": "user", "content": draw(_turn_text)})
        turns.append({"role": "assistant", "content": draw(st.one_of(st.none(), _turn_text))})
    return turns


@given(_histories(), _turn_text, st.one_of(st.none(), st.text(min_size=1, max_size=20)), st.booleans(), st.booleans())
def test_build_messages_properties(turns, question, system, math, prefill):
    msgs = build_messages(turns, question, system=system, math=math, prefill_think=prefill)
    assert all(m["role"] in ("user", "assistant") for m in msgs)
    assert len(msgs) == len(turns) + 1 + prefill
    users = [m for m in msgs if m["role"] == "user"]
    if system is not None and system.strip():
        assert users[0]["content"].startswith(system.strip() + "\n\n")
    if math:
        assert all(m["content"].count(EN) + m["content"].count(ZH) >= 1 for m in users)
    assistants = msgs[:-1] if prefill else msgs
    for m in assistants:
        if m["role"] == "assistant":
            assert "</think>" not in m["content"]
    if prefill:
        assert msgs[-1] == {"role": "assistant", "content": THINK_PREFIX}


# --- template_opens_think ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rendered, expected",
    [
        # DeepSeek's current template: the generation prompt ends with <think>\n
        (f"{BOS}{USER}hi{ASSISTANT}<think>\n", True),
        # the same as /tokenize token_strs joined: byte-level BPE spells "\n" as "Ċ"
        (f"{BOS}{USER}hi{ASSISTANT}<think>Ċ", True),
        (f"{BOS}{USER}hi{ASSISTANT}<think>\n\n", True),
        (f"{BOS}{USER}hi{ASSISTANT}<think>ĊĊ", True),
        (f"{BOS}{USER}hi{ASSISTANT}<think>ĠĊ", True),
        # the prefilled assistant message rendered with continue_final_message
        (f"{BOS}{USER}hi\n{EN}{ASSISTANT}<think>\n", True),
        # the original (January 2025) template: no think prefix
        (f"{BOS}{USER}hi{ASSISTANT}", False),
        (f"{BOS}{USER}hi{ASSISTANT}\n", False),
        # a think block opened in an earlier turn does not count
        (f"{BOS}{USER}a{ASSISTANT}<think>\nx</think>y{EOS}{USER}b{ASSISTANT}", False),
        (f"{BOS}{USER}a{ASSISTANT}<think>\nthinking already", False),
        (f"{BOS}{USER}a{ASSISTANT}<think>\nx</think>", False),
        (f"{BOS}{USER}hi", False),
        ("<think>\n", False),  # no assistant marker at all
        ("", False),
    ],
)
def test_template_opens_think(rendered, expected):
    assert template_opens_think(rendered) is expected


# --- temperature ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.5, 0.55, 0.6, 0.65, 0.7, 0.1 + 0.6])
def test_temperature_in_range_no_warning(t):
    assert temperature_warning(t) is None


@pytest.mark.parametrize("t", [0.0, 0.2, 0.49, 0.71, 0.8, 1.0, 1.5, 2.0, float("nan"), float("inf")])
def test_temperature_out_of_range_warns_on_one_line(t):
    msg = temperature_warning(t)
    assert msg is not None
    assert "\n" not in msg
    assert "0.6" in msg and "0.5-0.7" in msg


def test_temperature_warning_says_what_happens():
    assert "repeat" in temperature_warning(0.0)
    assert "ramble" in temperature_warning(1.0)


def test_template_opens_think_on_the_demo_tokenizers_token_strings():
    """The demo model's real byte-level BPE tokenizer, as /tokenize's token_strs would spell it."""
    from pathlib import Path

    import tokenizers  # a test dependency (pyproject's test extra), and vLLM's

    tok = tokenizers.Tokenizer.from_file(str(Path(__file__).parent.parent / "r1cli" / "demo_model" / "tokenizer.json"))
    # what the demo model's chat template renders for build_messages([...], "What is 2+3?", system="Be brief.")
    rendered = (
        f"{BOS}{USER}Be brief.\n\nhi\n{EN}{ASSISTANT}\n\n5{EOS}{USER}What is 2+3?\n{EN}{ASSISTANT}<think>\n"
    )
    strs = tok.encode(rendered, add_special_tokens=False).tokens
    assert "".join(strs).endswith(f"{ASSISTANT}<think>Ċ")
    assert template_opens_think("".join(strs))
    old = rendered[: -len("<think>\n")]
    assert not template_opens_think("".join(tok.encode(old, add_special_tokens=False).tokens))
