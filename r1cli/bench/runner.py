"""Runs of `r1 bench`: warm-up, then for each concurrency level `runs` runs of `requests` requests.

A run sends all its requests at once behind a semaphore of the level's concurrency, as `vllm bench
serve --max-concurrency C` does with its default infinite request rate, and is timed from before
the first request to after the last answer. Requests go through the turn engine as they are
(AsyncClient.raw, no prompt rules) with the arrival time of every streamed token recorded.
Every run gets prompts of its own (no run reuses another's from the prefix cache).

Two sizes (issue 32): the full set (`--full`: 5 runs of 4 x C requests, at least 32, per level, as vLLM's
guides run it; tens of minutes on a CPU) and, by default, a quick one scaled to the server: 2 runs of C
requests (at least 4) per level, and where the warm-up shows the server too slow for the default levels
to end in about QUICK_BUDGET_S, the highest levels are left out (and said so).
A Ctrl-C keeps what finished: the complete runs and the finished requests of the run it cut.
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

DEFAULT_LEVELS = (1, 16, 64)
QUICK_BUDGET_S = 100.0  # the quick set's measured runs as estimate_s errs (long); the warm-up and prompts come on top


@dataclass
class BenchOptions:
    concurrency: list[int]
    requests: int | None = None  # per run; None: requests_for(concurrency)
    runs: int = 5
    full: bool = False  # the full set's requests per run; else the quick set's
    budget: float | None = None  # seconds: leave out the highest levels the warm-up says would not fit
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
        """--requests, else (--full) 4 per slot and at least 32: enough that most of a run is at full
        concurrency; else (quick) one per slot and at least 4: every slot busy once."""
        if self.requests is not None:
            return self.requests
        return max(32, 4 * concurrency) if self.full else max(4, concurrency)

    def fit(self, tokens_per_s: float, warm_concurrency: int) -> list[int]:
        """The levels left out to keep the runs within the budget, given the output tokens/s the warm-up
        made at its concurrency (estimate_s says how); the lowest level always stays."""
        dropped: list[int] = []
        if self.budget is None or self.output_len is None or tokens_per_s <= 0:
            return dropped
        while len(self.concurrency) > 1 and self.estimate_s(tokens_per_s, warm_concurrency) > self.budget:
            dropped.insert(0, self.concurrency.pop())
        return dropped

    def estimate_s(self, tokens_per_s: float, warm_concurrency: int) -> float:
        """The runs' time at the warm-up's rate, erring long: a level at or above the warm-up's concurrency
        makes tokens no faster than it did, one below it in proportion to its slots (one stream alone is
        in fact faster than its share of a batch)."""
        seconds = 0.0
        for c in self.concurrency:
            rate = tokens_per_s * min(c, warm_concurrency) / warm_concurrency
            seconds += self.runs * self.requests_for(c) * self.output_len / rate
        return seconds


@dataclass
class Level:
    concurrency: int
    runs: list[dict]  # metrics.run_metrics of each run
    records: list[list[RequestRecord]]  # each run's requests, in the order they were made
    cut: bool = False  # its last run was cut by a Ctrl-C: its figures are over the requests that finished

    def complete_runs(self) -> list[dict]:
        return self.runs[:-1] if self.cut else self.runs

    def summary(self) -> dict:
        """Over the complete runs; a level cut in its first run, over what of that run finished."""
        return metrics.across_runs(self.complete_runs() or self.runs)

    def attainment(self, slo: SLO) -> float | None:
        return metrics.pooled_attainment([r for run in self.records for r in run], slo) if slo else None


@dataclass
class BenchResult:
    options: BenchOptions
    server: dict  # base_url, model, max_model_len
    load: dict  # what the load was (random lengths or dataset, and the request fields)
    levels: list[Level]
    started: str  # ISO time
    left_out: list[int] = field(default_factory=list)  # levels the quick set left out (QUICK_BUDGET_S)
    interrupted: str | None = None  # where a Ctrl-C stopped it: "concurrency 16, run 2/2", "the warm-up"

    def best_concurrency(self) -> int | None:
        if not self.options.slo:
            return None
        return metrics.best_concurrency({lv.concurrency: lv.attainment(self.options.slo) for lv in self.levels},
                                        self.options.attainment)

    def finished_requests(self) -> int:
        return sum(len(run) for lv in self.levels for run in lv.records)

    def to_dict(self) -> dict:
        from r1cli import __version__

        o = self.options
        slo = None
        if o.slo:
            slo = {"ttft_ms": o.slo.ttft_ms, "tpot_ms": o.slo.tpot_ms, "attainment": o.attainment,
                   "best_concurrency": self.best_concurrency()}
        return {
            "r1_version": __version__, "started": self.started, "server": self.server, "load": self.load,
            "set": "full" if o.full else "quick", "left_out": self.left_out, "interrupted": self.interrupted,
            "requests": o.requests, "runs": o.runs, "warmup": o.warmup, "seed": o.seed,
            "percentiles": list(o.percentiles), "slo": slo,
            "levels": [{"concurrency": lv.concurrency, "requests": o.requests_for(lv.concurrency), "summary": lv.summary(),
                        "complete_runs": len(lv.complete_runs()),
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


async def run_once(aclient, shapes: list[Shape], concurrency: int, done: Callable[[], None] = lambda: None,
                   finished: dict[int, RequestRecord] | None = None) -> tuple[list[RequestRecord], float]:
    """All shapes sent at once behind a semaphore; the records in order, and the run's wall time.
    done() is called as each request ends (the progress display); `finished` gets each record by its
    index as it ends, so a run cut short still has the ones that did."""
    semaphore = asyncio.Semaphore(concurrency)
    finished = {} if finished is None else finished

    async def one(index: int, shape: Shape) -> RequestRecord:
        async with semaphore:
            try:
                answer = await aclient.raw(shape.messages, shape.params, record_times=True)
                record = record_of(answer)
            except NoServerError:
                raise  # the server is gone: no later request can succeed
            except R1Error as exc:  # an HTTP error or a cut stream: a failed request, as vLLM counts it
                record = RequestRecord(False, time.perf_counter(), error=exc.message)
        finished[index] = record
        done()
        return record

    start = time.perf_counter()
    records = await asyncio.gather(*(one(i, s) for i, s in enumerate(shapes)))
    return list(records), time.perf_counter() - start


def make_load(target, opts: BenchOptions):
    from r1cli.bench import load

    if opts.dataset is not None:
        return load.DatasetLoad(target, opts.dataset, max_tokens=opts.output_len, seed=opts.seed)
    return load.RandomLoad(target, opts.input_len, opts.output_len, seed=opts.seed)


def bench(target, opts: BenchOptions, progress: Progress = lambda line: None, view=None) -> BenchResult:
    """The whole benchmark against one server (blocking). A Ctrl-C cancels the requests in flight and
    returns what finished, with `interrupted` saying where. `progress` gets a line per run; `view`
    (report.ProgressView, on a terminal) each request and stage."""
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
    from r1cli.server import route

    result = BenchResult(opts, {"base_url": aclient.target.base_url, "model": aclient.target.model,
                                "max_model_len": window, "router_workers": route.worker_count(aclient.target.root)},
                         workload.describe(), [], started)
    where = ["the warm-up"]  # what runs now, for a Ctrl-C
    current: dict[int, RequestRecord] = {}  # the requests of the run under way that have ended
    run_start = [0.0]

    def done() -> None:
        if view is not None:
            view.advance()

    def say(line: str) -> None:
        if view is not None:
            view.line(line)
        else:
            progress(line)

    async def main() -> None:
        try:
            if opts.warmup:
                warm = min(opts.warmup, max(opts.concurrency))
                if view is not None:
                    view.stage(f"warm-up, concurrency {warm}")
                else:
                    progress(f"warm-up: {opts.warmup} requests at concurrency {warm}")
                records, duration = await run_once(aclient, workload.take(opts.warmup), warm, done)
                made = sum(r.output_tokens for r in records if r.success)
                result.left_out = opts.fit(made / duration, warm)
                if result.left_out:
                    say(left_out_line(result.left_out, made / duration, warm, opts))
                    if view is not None:
                        view.resize(opts.total_requests())
            for c in opts.concurrency:
                level = Level(c, [], [])
                result.levels.append(level)
                for i in range(opts.runs):
                    where[0] = f"concurrency {c}, run {i + 1}/{opts.runs}"
                    if view is not None:
                        view.stage(where[0])
                    shapes = await asyncio.to_thread(workload.take, opts.requests_for(c))
                    current.clear()
                    run_start[0] = time.perf_counter()
                    records, duration = await run_once(aclient, shapes, c, done, current)
                    current.clear()
                    if not any(r.success for r in records):
                        first = next(r.error for r in records)
                        raise R1Error(f"every request failed at concurrency {c}: {first}",
                                      hint="`r1 logs` shows what the server said")
                    figures = metrics.run_metrics(records, duration, percentiles=opts.percentiles, slo=opts.slo)
                    level.runs.append(figures)
                    level.records.append(records)
                    line = run_line(c, i, opts.runs, figures, [r.error for r in records if not r.success])
                    say(line)
                    if view is not None:
                        view.stats(f"{figures['output_throughput']:,.0f} output tok/s")
        finally:
            await aclient.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        # asyncio.run cancelled every request in flight (their connections closed, so vLLM aborts them)
        result.interrupted = where[0]
        keep_cut_run(result, [current[i] for i in sorted(current)], time.perf_counter() - run_start[0])
    return result


def keep_cut_run(result: BenchResult, records: list[RequestRecord], duration: float) -> None:
    """The run a Ctrl-C cut, over the requests of it that ended (its time up to the Ctrl-C); a level
    with nothing finished is dropped."""
    if not result.levels:
        return
    level = result.levels[-1]
    if records:
        level.runs.append(metrics.run_metrics(records, duration, percentiles=result.options.percentiles,
                                              slo=result.options.slo))
        level.records.append(records)
        level.cut = True
    elif not level.runs:
        result.levels.pop()


def left_out_line(left_out: list[int], tokens_per_s: float, warm: int, opts: BenchOptions) -> str:
    levels = ",".join(map(str, left_out))
    return (f"r1: bench: the warm-up made {tokens_per_s:,.0f} output tokens/s at concurrency {warm}: concurrency "
            f"{levels} would take the quick run past about 2 minutes, left out "
            f"(`--full` or `-c` runs them)")


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
