"""The streaming <think> splitter (r1cli.channels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1cli.channels import ThinkSplitter

DEMO_OUTPUTS = Path(__file__).parent / "data" / "demo_outputs.jsonl"


def run(chunks, in_think=False):
    """Feed chunks, flush, and merge adjacent pieces of the same channel."""
    splitter = ThinkSplitter(in_think=in_think)
    pieces = []
    for chunk in chunks:
        pieces += splitter.feed(chunk)
    pieces += splitter.flush()
    merged = []
    for channel, text in pieces:
        assert channel in ("reasoning", "answer")
        assert text, "no empty pieces"
        if merged and merged[-1][0] == channel:
            merged[-1] = (channel, merged[-1][1] + text)
        else:
            merged.append((channel, text))
    return merged


def channels(pieces):
    return (
        "".join(t for c, t in pieces if c == "reasoning"),
        "".join(t for c, t in pieces if c == "answer"),
    )


@pytest.mark.parametrize(
    "chunks, in_think, expected",
    [
        # the template opened <think>: output starts mid-thought
        (["I need to add 2 and 3.\n</think>\n\nThe answer is \\boxed{5}."], True,
         [("reasoning", "I need to add 2 and 3.\n"), ("answer", "\n\nThe answer is \\boxed{5}.")]),
        # the model opens the block itself
        (["<think>\nhmm\n</think>\n\n5"], False, [("reasoning", "\nhmm\n"), ("answer", "\n\n5")]),
        (["  \n<think>x</think>y"], False, [("reasoning", "x"), ("answer", "y")]),
        # tags split across chunks
        (["<th", "ink>a</th", "ink>b"], False, [("reasoning", "a"), ("answer", "b")]),
        (["<", "t", "h", "i", "n", "k", ">", "a", "<", "/", "think", ">", "b"], False,
         [("reasoning", "a"), ("answer", "b")]),
        (["a</", "think>b"], True, [("reasoning", "a"), ("answer", "b")]),
        # no tags: plain answer / all reasoning (cut by max_tokens)
        (["Hello ", "world"], False, [("answer", "Hello world")]),
        (["still thinking when cut"], True, [("reasoning", "still thinking when cut")]),
        # look-alikes are text, at flush too
        (["a <b> </thinking> <th"], False, [("answer", "a <b> </thinking> <th")]),
        (["x <thi"], True, [("reasoning", "x <thi")]),
        (["<thin"], False, [("answer", "<thin")]),
        # a redundant opener inside reasoning is dropped
        (["<think>\nfoo"], True, [("reasoning", "\nfoo")]),
        # whitespace-only answer after the block is dropped
        (["r</think>\n\n"], True, [("reasoning", "r")]),
        # a second block right after the first
        (["a</think>\n<think>b</think>c"], True, [("reasoning", "ab"), ("answer", "c")]),
        # an empty think block (prompted not to think)
        (["<think>\n\n</think>\n\nHi"], False, [("reasoning", "\n\n"), ("answer", "\n\nHi")]),
        ([], False, []),
        (["", ""], True, []),
    ],
)
def test_think_splitter(chunks, in_think, expected):
    assert run(chunks, in_think) == expected


def test_partial_tag_is_held_back_only_while_ambiguous():
    s = ThinkSplitter(in_think=True)
    assert s.feed("step one </th") == [("reasoning", "step one ")]
    assert s.feed("ink>") == []  # tag consumed; the answer has not started
    assert s.feed("\n\nAnswer") == [("answer", "\n\nAnswer")]
    assert s.feed(" <") == [("answer", " ")]
    assert s.feed("x") == [("answer", "<x")]
    assert s.flush() == []


def test_answer_streams_without_delay():
    s = ThinkSplitter()
    assert s.feed("Hello") == [("answer", "Hello")]
    assert s.feed(", world") == [("answer", ", world")]


_fragments = st.sampled_from(
    ["<think>", "</think>", "<", "</", "<th", "</th", "ink>", "think>", ">", "a", "b c", " ", "\n", "\\boxed{5}", "思"]
)
_texts = st.one_of(st.lists(_fragments, max_size=30).map("".join), st.text(max_size=60))


@st.composite
def _splits(draw):
    text = draw(_texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:])]


@given(_splits(), st.booleans())
def test_any_chunking_gives_the_same_result(split, in_think):
    text, chunks = split
    whole = run([text], in_think)
    chunked = run(chunks, in_think)
    assert chunked == whole
    assert channels(chunked) == channels(whole)


@given(
    st.text(alphabet=st.characters(blacklist_characters="<"), max_size=40),
    st.text(alphabet=st.characters(blacklist_characters="<"), max_size=40),
    st.data(),
)
def test_reasoning_and_answer_are_recovered(reasoning, answer, data):
    text = reasoning + "</think>" + answer
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    got = channels(run([text[a:b] for a, b in zip(bounds, bounds[1:])], in_think=True))
    assert got == (reasoning, answer if answer.strip() else "")


def _demo_rows():
    if not DEMO_OUTPUTS.is_file():
        return [pytest.param(None, id="demo_outputs.jsonl-missing")]
    rows = [json.loads(line) for line in DEMO_OUTPUTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [pytest.param(row, id=f"{i}-{row.get('finish_reason')}") for i, row in enumerate(rows)] or [
        pytest.param(None, id="demo_outputs.jsonl-empty")
    ]


@pytest.mark.parametrize("row", _demo_rows())
def test_splitter_agrees_with_vllms_reasoning_parser(row):
    """Real outputs (split by vLLM's deepseek_r1 parser) re-joined raw, then split token-sized."""
    if row is None:
        pytest.fail(f"{DEMO_OUTPUTS} is missing or empty: it must hold real outputs of the served demo model")
    reasoning, content = row["reasoning"] or "", row["content"] or ""
    raw = reasoning + ("</think>" + content if row["finish_reason"] == "stop" else "")
    chunks = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    assert channels(run(chunks, in_think=True)) == (reasoning, content)
