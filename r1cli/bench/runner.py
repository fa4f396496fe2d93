"""Runs of `r1 bench`: warm-up, then for each concurrency level `runs` runs of `requests` requests.

A run sends all its requests at once behind a semaphore of the level's concurrency, as `vllm bench
serve --max-concurrency C` does with its default infinite request rate, and is timed from before
the first request to after the last answer. Requests go through the turn engine as they are
(AsyncClient.raw, no prompt rules) with the arrival time of every streamed token recorded.
Every run gets prompts of its own (no run reuses another's from the prefix cache).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from r1cli.bench import metrics
from r1cli.bench.load import Shape
from r1cli.bench.metrics import SLO, RequestRecord
from r1cli.errors import NoServerError, R1Error, UsageError

Progress = Callable[[str], None]


@dataclass
class BenchOptions:
    concurrency: list[int]
    requests: int | None = None  # per run; None: requests_for(concurrency)
    runs: int = 5
    warmup: int = 4
    input_len: int = 256
    output_len: int | None = 512
    dataset: str | None = None
    seed: int = 0
    slo: SLO = field(default_factory=SLO)
    attainment: float = metrics.DEFAULT_ATTAINMENT
    percentiles: tuple[float, ...] = metrics.DEFAULT_PERCENTILES
    timeout: float = 300.0

    def check(self) -> None:
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise UsageError("--concurrency takes positive whole numbers, e.g. 1,16,64")
        if (self.requests is not None and self.requests < 1) or self.runs < 1 or self.warmup < 0:
            raise UsageError("--requests and --runs must be at least 1, --warmup at least 0")
        if self.dataset is None and (self.input_len is None or self.output_len is None):
            raise UsageError("random prompts need both --input-len and --output-len (or use --dataset)")
        if not 0 < self.attainment <= 1:
            raise UsageError("--slo-attainment is a share of requests: more than 0, at most 1")

    def total_requests(self) -> int:
        """Every request the benchmark sends, warm-up included: what its progress counts to."""
        return self.warmup + sum(self.runs * self.requests_for(c) for c in self.concurrency)

    def requests_for(self, concurrency: int) -> int:
        """--requests, else 4 per slot and at least 32: enough that most of a run is at full concurrency."""
        return self.requests if self.requests is not None else max(32, 4 * concurrency)


@dataclass
class Level:
    concurrency: int
    runs: list[dict]  # metrics.run_metrics of each run
    records: list[list[RequestRecord]]  # each run's requests, in the order they were made

    def summary(self) -> dict:
        return metrics.across_runs(self.runs)

    def attainment(self, slo: SLO) -> float | None:
        return metrics.pooled_attainment([r for run in self.records for r in run], slo) if slo else None


@dataclass
class BenchResult:
    options: BenchOptions
    server: dict  # base_url, model, max_model_len
    load: dict  # what the load was (random lengths or dataset, and the request fields)
    levels: list[Level]
    started: str  # ISO time

    def best_concurrency(self) -> int | None:
        if not self.options.slo:
            return None
        return metrics.best_concurrency({lv.concurrency: lv.attainment(self.options.slo) for lv in self.levels},
                                        self.options.attainment)

    def to_dict(self) -> dict:
        from r1cli import __version__

        o = self.options
        slo = None
        if o.slo:
            slo = {"ttft_ms": o.slo.ttft_ms, "tpot_ms": o.slo.tpot_ms, "attainment": o.attainment,
                   "best_concurrency": self.best_concurrency()}
        return {
            "r1_version": __version__, "started": self.started, "server": self.server, "load": self.load,
            "requests": o.requests, "runs": o.runs, "warmup": o.warmup, "seed": o.seed,
            "percentiles": list(o.percentiles), "slo": slo,
            "levels": [{"concurrency": lv.concurrency, "requests": o.requests_for(lv.concurrency), "summary": lv.summary(),
                        "slo_attainment": lv.attainment(o.slo), "runs": lv.runs} for lv in self.levels],
        }

    def request_rows(self):
        """Every request's record, for --out: one JSON object per line."""
        for lv in self.levels:
            for run_index, records in enumerate(lv.records):
                for index, record in enumerate(records):
                    yield {"concurrency": lv.concurrency, "run": run_index, "index": index, **record.to_dict()}


def record_of(answer) -> RequestRecord:
    """A request's record from the engine's Answer (recorded with record_times=True)."""
    t = answer.timing
    return RequestRecord.from_stream(t.sent_at, t.token_times or [], output_tokens=answer.completion_tokens,
                                     prompt_tokens=answer.prompt_tokens, reasoning_tokens=answer.reasoning_tokens,
                                     answer_index=t.answer_index, finish_reason=answer.finish_reason)


async def run_once(aclient, shapes: list[Shape], concurrency: int,
                   done: Callable[[], None] = lambda: None) -> tuple[list[RequestRecord], float]:
    """All shapes sent at once behind a semaphore; the records in order, and the run's wall time.
    done() is called as each request ends (the progress display)."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(shape: Shape) -> RequestRecord:
        async with semaphore:
            try:
                answer = await aclient.raw(shape.messages, shape.params, record_times=True)
            except NoServerError:
                raise  # the server is gone: no later request can succeed
            except R1Error as exc:  # an HTTP error or a cut stream: a failed request, as vLLM counts it
                done()
                return RequestRecord(False, time.perf_counter(), error=exc.message)
        done()
        return record_of(answer)

    start = time.perf_counter()
    records = await asyncio.gather(*(one(s) for s in shapes))
    return list(records), time.perf_counter() - start


def make_load(target, opts: BenchOptions):
    from r1cli.bench import load

    if opts.dataset is not None:
        return load.DatasetLoad(target, opts.dataset, max_tokens=opts.output_len, seed=opts.seed)
    return load.RandomLoad(target, opts.input_len, opts.output_len, seed=opts.seed)


def bench(target, opts: BenchOptions, progress: Progress = lambda line: None, view=None) -> BenchResult:
    """The whole benchmark against one server (blocking; Ctrl-C cancels the requests in flight).
    `progress` gets a line per run; `view` (report.ProgressView, on a terminal) each request and stage."""
    import datetime

    from r1cli.library import AsyncClient

    opts.check()
    aclient = AsyncClient(target.base_url, target.model, target.api_key, timeout=opts.timeout)
    info = aclient.sync.server_info()
    window = info.get("max_model_len")
    if opts.dataset is None and window and opts.input_len + opts.output_len > window:
        raise UsageError(f"--input-len {opts.input_len} + --output-len {opts.output_len} exceed the server's "
                         f"context window of {window} tokens", hint="make them shorter")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    workload = make_load(aclient.target, opts)
    levels: list[Level] = []

    def done() -> None:
        if view is not None:
            view.advance()

    async def main() -> None:
        try:
            if opts.warmup:
                warm = min(opts.warmup, max(opts.concurrency))
                if view is not None:
                    view.stage(f"warm-up, concurrency {warm}")
                else:
                    progress(f"warm-up: {opts.warmup} requests at concurrency {warm}")
                await run_once(aclient, workload.take(opts.warmup), warm, done)
            for c in opts.concurrency:
                level = Level(c, [], [])
                levels.append(level)
                for i in range(opts.runs):
                    if view is not None:
                        view.stage(f"concurrency {c}, run {i + 1}/{opts.runs}")
                    shapes = await asyncio.to_thread(workload.take, opts.requests_for(c))
                    records, duration = await run_once(aclient, shapes, c, done)
                    if not any(r.success for r in records):
                        first = next(r.error for r in records)
                        raise R1Error(f"every request failed at concurrency {c}: {first}",
                                      hint="`r1 logs` shows what the server said")
                    figures = metrics.run_metrics(records, duration, percentiles=opts.percentiles, slo=opts.slo)
                    level.runs.append(figures)
                    level.records.append(records)
                    line = run_line(c, i, opts.runs, figures, [r.error for r in records if not r.success])
                    if view is not None:
                        view.line(line)
                        view.stats(f"{figures['output_throughput']:,.0f} output tok/s")
                    else:
                        progress(line)
        finally:
            await aclient.aclose()

    asyncio.run(main())
    return BenchResult(opts, {"base_url": aclient.target.base_url, "model": aclient.target.model,
                              "max_model_len": window}, workload.describe(), levels, started)


def run_line(concurrency: int, index: int, runs: int, m: dict, errors: list[str] = ()) -> str:
    failed = f", {m['failed']} failed" if m["failed"] else ""
    if errors:  # why, in the server's words: the commonest reason and how often
        import collections

        reason, count = collections.Counter(errors).most_common(1)[0]
        failed += f" ({count} x {reason})"
    return (f"concurrency {concurrency}, run {index + 1}/{runs}: {m['completed']} requests{failed} in "
            f"{m['duration']:.2f} s, {m['request_throughput']:.2f} req/s, {m['output_throughput']:.1f} output tok/s, "
            f"TTFT {m['mean_ttft_ms']:.0f} ms, TPOT {m['mean_tpot_ms']:.1f} ms")


def parse_levels(text: str) -> list[int]:
    """`1,16,64` -> [1, 16, 64]."""
    try:
        levels = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"--concurrency {text!r}: give whole numbers separated by commas, e.g. 1,16,64") from None
    if not levels or min(levels) < 1:
        raise UsageError(f"--concurrency {text!r}: give whole numbers of at least 1, e.g. 1,16,64")
    return levels
