"""r1's verdict is lighteval's (issue 23): every case of tests/data/grading-cases.jsonl (realistic R1
outputs: boxed, unboxed, several boxes, a box only in the reasoning, equations, units, fractions, percent,
Chinese, truncated, garbled, empty) graded twice, by r1 (r1cli.answers.grade) and by math-verify called
here directly with lighteval's configuration, written out below independently of r1's code.

lighteval's configuration (huggingface/lighteval):
- src/lighteval/metrics/metrics.py, ``Metrics.pass_at_k_math`` (the metric of the aime24 and math_500
  tasks, src/lighteval/tasks/tasks/aime.py and math_500.py): PassAtK(strip_strings=True,
  sample_scoring_function=MultilingualExtractiveMatchMetric(language=Language.ENGLISH,
  gold_extraction_target=[ExprExtractionConfig(), LatexExtractionConfig()],
  pred_extraction_target=[ExprExtractionConfig(), LatexExtractionConfig()], precision=6));
- src/lighteval/metrics/dynamic_metrics.py, MultilingualExtractiveMatchMetric's defaults:
  fallback_mode="first_match", extraction_mode="any_match", timeout_seconds=5;
- src/lighteval/metrics/utils/extractive_match_utils.py, LatexExtractionConfig's defaults:
  try_extract_without_anchor=True, boxed_match_priority=55, NormalizationConfig(basic_latex=True,
  units=True, malformed_operators=True, nits=True, boxed="all", equations=True);
- src/lighteval/utils/utils.py remove_reasoning_tags with [("<think>", "</think>")], applied to the
  generated text in src/lighteval/pipeline.py before the metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1cli.answers import grade

CASES_FILE = Path(__file__).parent / "data" / "grading-cases.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def _lighteval_configs():
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    normalization = NormalizationConfig(basic_latex=True, units=True, malformed_operators=True, nits=True,
                                        boxed="all", equations=True)
    targets = [ExprExtractionConfig(try_extract_without_anchor=True),
               LatexExtractionConfig(try_extract_without_anchor=True, boxed_match_priority=55,
                                     normalization_config=normalization)]
    return targets, targets  # gold, prediction


def _remove_reasoning_tags(text: str) -> str:
    # lighteval's src/lighteval/utils/utils.py remove_reasoning_tags, for the pair ("<think>", "</think>")
    while "<think>" in text and "</think>" in text:
        start = text.find("<think>")
        end = text.find("</think>", start)
        if start == -1 or end == -1:
            break
        text = text[:start] + text[end + len("</think>"):]
    return text


def _generation(case: dict) -> str:
    """The text vLLM generates, as lighteval reads it: the distills' template puts <think> in the prompt,
    so the generation is the reasoning, </think>, the answer; a server's reasoning parser split it there."""
    reasoning, content = case["reasoning"] or "", case["content"] or ""
    return reasoning + "</think>" + content if reasoning and content else reasoning or content


def lighteval_verdict(reference: str, generation: str) -> bool:
    import math_verify

    gold_config, pred_config = _lighteval_configs()
    text = _remove_reasoning_tags(generation).strip()  # PassAtK(strip_strings=True)
    # lighteval's math_500 gold is the worked solution, whose last box holds the MATH-500 answer; its aime24
    # gold is the bare integer, which parses the same inside a box.
    gold = math_verify.parse("\\boxed{" + reference + "}", extraction_config=gold_config,
                             fallback_mode="first_match", extraction_mode="any_match", parsing_timeout=5)
    pred = math_verify.parse(text, extraction_config=pred_config, fallback_mode="first_match",
                             extraction_mode="any_match", parsing_timeout=5)
    return bool(math_verify.verify(gold, pred, float_rounding=6, timeout_seconds=5))


def test_the_fixture_has_at_least_40_cases_of_each_kind():
    assert len(CASES) >= 40
    notes = " | ".join(c["note"] for c in CASES)
    for kind in ("boxed", "unboxed", "two boxes", "only in the reasoning", "equation", "unit", "frac", "percent",
                 "Chinese", "truncated", "garbled", "empty"):
        assert kind in notes, kind
    assert all(set(c) == {"reference", "content", "reasoning", "note"} for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_r1_grades_as_lighteval_grades(case):
    expected = lighteval_verdict(case["reference"], _generation(case))
    assert grade(case["reference"], case["content"], case["reasoning"]) is expected


# Verdicts written out, so that a grader that says yes (or no) to everything fails.
@pytest.mark.parametrize("note,verdict", [
    ("boxed, right", True),
    ("boxed, wrong", False),
    ("R1's usual Final Answer block", True),
    ("unboxed, wrong", False),
    ("two boxes, the last right", True),
    ("two boxes, the last wrong", False),
    ("box only in the reasoning, no answer text", True),
    ("rounded decimal, 4 places", False),
    ("truncated in the reasoning, a wrong number last", False),
    ("empty output", False),
    # lighteval's compare_gold_target takes the right side of an equation when the gold is none:
    # "k=x+1+z or 1+1+1=3 will be simplified to rhs" (src/lighteval/metrics/utils/math_comparison.py)
    ("box 4 = 7 (issue 23: the old demo fixture's line 31)", True),
    # lighteval reads the whole text; without a box it takes the rightmost number (ExprExtractionConfig)
    ("garbled unboxed text ending in 7 (issue 23: the old demo fixture's line 26)", True),
    # "final answer ... is N" has priority 50, a box 55: the phrase in the reasoning wins
    ("'final answer is 8' in the reasoning, box 7 in the answer", False),
])
def test_some_verdicts_written_out(note, verdict):
    (case,) = [c for c in CASES if c["note"] == note]
    assert grade(case["reference"], case["content"], case["reasoning"]) is verdict
    assert lighteval_verdict(case["reference"], _generation(case)) is verdict


def test_a_whole_chat_message_is_graded_as_its_two_channels():
    message = {"content": "\n\nThe answer is \\boxed{7}.", "reasoning": "3 + 4 = 7."}
    assert grade("7", message) is True
    assert grade("8", message) is False


def test_grading_in_a_worker_thread_is_quiet(capfd):
    import threading

    results = []
    t = threading.Thread(target=lambda: results.append((grade("7", "\\boxed{7}"), grade("7", "\\boxed{8}"))))
    t.start()
    t.join()
    assert results == [(True, False)]
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("content,reasoning,text", [
    ("\n\nThe answer is \\boxed{7}.", "3 + 4 = 7.\n", "3 + 4 = 7.\n</think>\n\nThe answer is \\boxed{7}."),
    ("", "3 + 4 = 7, but", "3 + 4 = 7, but"),  # cut in the reasoning: no </think> was generated
    ("Okay.\n</think>\n\n\\boxed{7}", None, "Okay.\n</think>\n\n\\boxed{7}"),  # no reasoning parser
    ("<think>\nMaybe 8.\n</think>\n\n\\boxed{7}", "", "\\boxed{7}"),  # both tags: lighteval removes the block
    ("", "", ""),
    (None, None, ""),
])
def test_the_generated_text_is_what_lighteval_reads(content, reasoning, text):
    from r1cli.answers import generated_text

    assert generated_text(content, reasoning) == text
