"""Statistics of `r1 eval` against the standard library and numpy on fixed data, and grading cases."""

from __future__ import annotations

import math
import random
import statistics

import numpy
import pytest

from r1cli.answers import equivalent, grade_answer
from r1cli.evaluation import stats
from r1cli.evaluation.datasets import gsm8k_reference, reference_text

# Per-run pass@1 of a real 5-run evaluation (tests/data/eval-samples-demo.jsonl, demo set at temperature 2).
RUN_ACCURACIES = [55.56, 66.67, 44.44, 11.11, 44.44]
LATENCIES = [0.228, 0.2278, 0.2412, 1.03, 0.9, 0.25, 0.31, 0.2, 2.4]


@pytest.mark.parametrize("values", [RUN_ACCURACIES, LATENCIES, [1.0, 2.0], [5.0, 5.0, 5.0]])
def test_mean_and_sample_std_match_statistics(values):
    m = stats.mean_std(values)
    assert m.mean == pytest.approx(statistics.fmean(values))
    assert m.std == pytest.approx(statistics.stdev(values))
    assert m.std == pytest.approx(numpy.std(values, ddof=1))
    assert m.n == len(values)


def test_mean_std_of_one_value_has_no_std_and_none_values_are_left_out():
    assert stats.mean_std([3.0]) == stats.MeanStd(3.0, None, 1)
    assert stats.mean_std([None, 2.0, None, 4.0]).mean == 3.0
    assert stats.mean_std([]) == stats.MeanStd(None, None, 0)


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
@pytest.mark.parametrize("values", [LATENCIES, RUN_ACCURACIES, [7.0]])
def test_percentile_matches_numpy_linear(values, q):
    assert stats.percentile(values, q) == pytest.approx(numpy.percentile(values, q))


def _pass_at_k_exact(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 5, 1), (10, 3, 5), (64, 18, 1), (64, 18, 8),
                                   (16, 1, 16), (16, 15, 2), (200, 7, 100)])
def test_unbiased_pass_at_k_matches_the_binomial_formula(n, c, k):
    assert stats.pass_at_k(n, c, k) == pytest.approx(_pass_at_k_exact(n, c, k))


def test_pass_at_1_is_the_fraction_correct():
    for n in range(1, 9):
        for c in range(n + 1):
            assert stats.pass_at_k(n, c, 1) == pytest.approx(c / n)


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, 2, 6), (5, 2, 0)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        stats.pass_at_k(n, c, k)


def test_bootstrap_is_repeatable_with_its_seed_and_holds_the_estimate():
    rng = random.Random(7)
    correct = [[rng.random() < 0.35 for _ in range(5)] for _ in range(30)]
    point = sum(map(sum, correct)) / 150
    a = stats.bootstrap_interval(correct, seed=3)
    assert a == stats.bootstrap_interval(correct, seed=3)
    assert a != stats.bootstrap_interval(correct, seed=4)
    assert a[0] < point < a[1]
    # Ten times the problems: a narrower interval.
    many = [[rng.random() < 0.35 for _ in range(5)] for _ in range(300)]
    b = stats.bootstrap_interval(many, seed=3)
    assert (b[1] - b[0]) < (a[1] - a[0])


def test_bootstrap_of_all_right_or_all_wrong_is_a_point():
    assert stats.bootstrap_interval([[True] * 3] * 9) == (1.0, 1.0)
    assert stats.bootstrap_interval([[False] * 3] * 9) == (0.0, 0.0)
    with pytest.raises(ValueError):
        stats.bootstrap_interval([])


@pytest.mark.parametrize("answers,reference,right,winner", [
    (["0.5", "\\frac{1}{2}", "3"], "1/2", True, "0.5"),  # two spellings of one answer outvote a third
    (["3", "4", "4"], "3", False, "4"),
    (["", None, ""], "3", False, None),  # no answer at all is wrong
    (["7", "8"], "8", False, "7"),  # a tie goes to the answer seen first
])
def test_cons_at_k_votes_with_math_verify(answers, reference, right, winner):
    assert stats.cons_at_k(answers, reference) == (right, winner)


# The grading cases the issue names: the reference as a dataset gives it, the prediction as a model writes it.
@pytest.mark.parametrize("reference,predicted,same", [
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("204", "204", True),
    ("204", "240", False),
    ("\\frac{1}{2}", "\\frac{1}{3}", False),
    (reference_text(27.0), "27", True),  # amc23 stores answers as floats
    (gsm8k_reference("so 1,000 + 234 = 1,234\n#### 1,234"), "1234", True),
    (gsm8k_reference("#### 1,234"), "1,234", True),
    (gsm8k_reference("#### 1,234"), "1243", False),
])
def test_grading_cases(reference, predicted, same):
    assert equivalent(reference, predicted) is same  # majority voting's grouping
    assert grade_answer(reference, predicted) is same  # lighteval's verdict on a box holding it
