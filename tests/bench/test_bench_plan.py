"""How big a bench is: the full set, and the quick set fitted to what the warm-up measured (issue 32, item 7)."""

from __future__ import annotations

import pytest

from r1cli.bench import runner


def options(**kw) -> runner.BenchOptions:
    return runner.BenchOptions(concurrency=list(runner.DEFAULT_LEVELS), **kw)


def test_the_full_set_is_what_plain_bench_was():
    full = options(full=True, runs=5)
    assert [full.requests_for(c) for c in full.concurrency] == [32, 64, 256]
    assert full.total_requests() == 1764  # the 1,764 requests of 512 tokens


def test_the_quick_set_keeps_every_slot_busy_once():
    quick = options(runs=2)
    assert [quick.requests_for(c) for c in quick.concurrency] == [4, 16, 64]
    assert quick.total_requests() == 4 + 2 * (4 + 16 + 64)


@pytest.mark.parametrize("tokens_per_s, kept, left_out", [
    (20_000.0, [1, 16, 64], []),  # a GPU: everything fits
    (1_028.0, [1, 16, 64], []),  # the demo at concurrency 4 on this 2-core machine, beside other work
    (800.0, [1, 16], [64]),  # the same, busier
    (150.0, [1], [16, 64]),  # a 1.5B on a CPU: the lowest level always stays
])
def test_the_quick_set_leaves_out_the_levels_the_warm_up_says_would_not_fit(tokens_per_s, kept, left_out):
    quick = options(runs=2, budget=runner.QUICK_BUDGET_S)
    assert quick.fit(tokens_per_s, warm_concurrency=4) == left_out
    assert quick.concurrency == kept
    if len(kept) > 1:
        assert quick.estimate_s(tokens_per_s, 4) <= runner.QUICK_BUDGET_S


@pytest.mark.parametrize("kw", [{"budget": None}, {"budget": runner.QUICK_BUDGET_S, "output_len": None}])
def test_no_budget_or_no_fixed_output_leaves_the_levels_alone(kw):
    """-c or --full given (no budget), or a DATASET (outputs end where the model ends: no estimate)."""
    quick = options(runs=2, **kw)
    assert quick.fit(10.0, 4) == [] and quick.concurrency == [1, 16, 64]


def test_the_estimate_errs_long():
    """Below the warm-up's concurrency a level gets its share of the warm-up's rate, at or above it no more
    than the whole: on the demo (1,028 tokens/s at 4) the runs of 1,16 were estimated at 32 s and took 21 s."""
    quick = runner.BenchOptions(concurrency=[1, 16], runs=2)
    assert quick.estimate_s(1028.0, 4) == pytest.approx(2 * 4 * 512 / 257.0 + 2 * 16 * 512 / 1028.0)
