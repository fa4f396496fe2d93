"""Statistics of an evaluation: pure functions, stdlib only.

- mean and sample standard deviation (n-1), as the article asks: "report mean and standard deviation"
  over at least 5 runs;
- pass@k, the unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k) for n samples of which c
  are correct; pass@1 is then the mean correctness;
- cons@k, majority vote over the k answers of a problem (math-verify groups equal spellings), the
  winner graded as lighteval grades;
- percentiles with linear interpolation (numpy's default);
- a percentile bootstrap interval over problems and runs, with a fixed seed so a report is repeatable.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Sequence

__all__ = ["MeanStd", "bootstrap_interval", "cons_at_k", "mean_std", "pass_at_k", "percentile"]


@dataclass(frozen=True)
class MeanStd:
    mean: float | None
    std: float | None  # sample standard deviation (n-1); None with fewer than two values
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def mean_std(values: Sequence[float | None]) -> MeanStd:
    """Mean and sample standard deviation of the values that are not None."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return MeanStd(None, None, 0)
    return MeanStd(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


def percentile(values: Sequence[float | None], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks, as numpy.percentile."""
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c correct. Needs k <= n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the ratio of binomials without big integers
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def cons_at_k(answers: Sequence[str | None], reference: str) -> tuple[bool, str | None]:
    """Majority vote over one problem's answers: (whether the winner is right, the winner).

    Equal spellings (``1/2``, ``0.5``) count as one answer; ties go to the answer seen first; no answer
    at all is wrong. The winner is graded as lighteval grades an output whose final box holds it
    (r1cli.answers.grade_answer), as every sample is.
    """
    from r1cli.answers import grade_answer, majority_vote

    winner, _ = majority_vote([a for a in answers if a])
    if winner is None:
        return False, None
    return grade_answer(reference, winner), winner


def bootstrap_interval(correct: Sequence[Sequence[bool]], *, level: float = 0.95, resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval for pass@1 (a fraction) over problems and runs.

    ``correct[p][r]`` is whether run r got problem p right. Each resample draws the problems with
    replacement and, inside each drawn problem, its runs with replacement, so the interval holds both
    the choice of problems and the sampling noise between runs. Same data and seed, same interval.
    """
    rows = [list(map(bool, row)) for row in correct if len(row)]
    if not rows:
        raise ValueError("no samples to bootstrap")
    rng = random.Random(seed)
    n_problems = len(rows)
    means = []
    for _ in range(resamples):
        total = 0.0
        for row in rng.choices(rows, k=n_problems):
            total += sum(rng.choices(row, k=len(row))) / len(row)
        means.append(total / n_problems)
    tail = (1 - level) / 2 * 100
    return percentile(means, tail), percentile(means, 100 - tail)
