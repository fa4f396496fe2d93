"""Running an evaluation: every (problem, run) of each dataset and thinking budget through the turn
engine's AsyncClient, many at once, each sample appended to samples.jsonl as it finishes so that an
interrupted evaluation resumes where it stopped.

A run is one pass over the set with its own seed (vLLM's per-request `seed`: run r of an evaluation
with --seed S sends seed S+r with every question, so a run can be repeated). All runs of a set go to the
server together, so a GPU stays busy while the slow answers of one run finish.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from r1cli import rules
from r1cli.errors import Interrupted, R1Error, UsageError
from r1cli.evaluation.datasets import Dataset, Problem, open_dataset

SETTINGS_FILE = "eval.json"
SAMPLES_FILE = "samples.jsonl"
MAX_DEFAULT_CONCURRENCY = 256
FALLBACK_CONCURRENCY = 16
PROMPT_ALLOWANCE = 256  # tokens a math question's prompt takes, for the concurrency estimate


@dataclass
class Settings:
    """What an evaluation is: saved in eval.json, so --resume needs nothing else."""

    datasets: list[str]
    runs: int = 5
    seed: int = 0  # run r sends seed + r
    temperature: float = rules.DEFAULT_TEMPERATURE
    top_p: float = rules.DEFAULT_TOP_P
    max_tokens: int | None = None
    think_budgets: list[int | None] = field(default_factory=lambda: [None])
    limit: int | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    skip_bad: bool = False
    timeout: float = 3600.0  # one answer's deadline: long reasonings behind a full queue take a while

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Unit:
    """One evaluation: a dataset at one thinking budget, all its runs."""

    dataset: Dataset
    budget: int | None

    @property
    def key(self) -> str:
        return self.dataset.name if self.budget is None else f"{self.dataset.name}@{self.budget}"


@dataclass(frozen=True)
class Job:
    unit: Unit
    problem: Problem
    run: int
    seed: int


def sample_key(dataset: str, budget: int | None, problem_id: str, run: int) -> tuple:
    return (dataset, budget, str(problem_id), int(run))


def load_units(settings: Settings) -> list[Unit]:
    datasets = [open_dataset(name, field_map=settings.field_map or None, skip_bad=settings.skip_bad,
                             limit=settings.limit) for name in settings.datasets]
    return [Unit(ds, budget) for ds in datasets for budget in settings.think_budgets]


# ---------------------------------------------------------------------------------------------- the folder


class SampleLog:
    """samples.jsonl: one JSON line per finished (problem, run), flushed as it is written."""

    def __init__(self, folder: Path):
        self.path = folder / SAMPLES_FILE
        self.records: list[dict] = []
        if self.path.exists():
            self.records = read_samples(self.path)
            self._trim_partial_line()
        self._file = self.path.open("a", encoding="utf-8")

    def _trim_partial_line(self) -> None:
        """A line cut by a kill (no newline at the end) is dropped: its sample is simply redone."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.path.open("r+b") as f:
                f.truncate(cut)

    def done(self) -> set[tuple]:
        return {sample_key(r["dataset"], r.get("budget"), r["id"], r["run"]) for r in self.records}

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.records.append(record)

    def close(self) -> None:
        self._file.close()


def read_samples(path: Path) -> list[dict]:
    """The complete lines of a samples.jsonl (a last line cut short is left out)."""
    records = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise UsageError(f"{path}: line {n} is not valid JSON",
                                 hint="the folder's samples were edited or damaged; start a new evaluation") from None
    return records


def default_out_dir(settings: Settings) -> Path:
    from r1cli import config

    names = "-".join(Path(d).stem if Path(d).suffix else d for d in settings.datasets)[:60]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return config.state_dir() / "evals" / f"{stamp}-{names}"


def prepare_folder(out: Path | None, settings: Settings) -> Path:
    """A new evaluation's folder (refusing one that already holds samples) with its settings saved."""
    folder = out if out is not None else default_out_dir(settings)
    if (folder / SAMPLES_FILE).exists() or (folder / SETTINGS_FILE).exists():
        raise UsageError(f"{folder} already holds an evaluation",
                         hint=f"continue it with `r1 eval --resume {folder}`, or pick another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror or exc}") from None
    return folder


def save_settings(folder: Path, settings: Settings, units: list[Unit], started_at: float) -> None:
    datasets = {u.dataset.name: u.dataset.provenance() for u in units}
    data = {"settings": settings.to_dict(), "datasets": list(datasets.values()), "started_at": started_at}
    tmp = folder / (SETTINGS_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, folder / SETTINGS_FILE)


def load_settings(folder: Path) -> tuple[Settings, dict]:
    path = folder / SETTINGS_FILE
    if not path.exists():
        raise UsageError(f"{folder} holds no evaluation ({SETTINGS_FILE} is missing)",
                         hint="--resume takes the folder an interrupted `r1 eval` named")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return Settings.from_dict(saved["settings"]), saved
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is damaged ({exc})") from None


def check_same_data(units: list[Unit], saved: dict) -> None:
    """On resume the datasets must be the bytes the first part read."""
    before = {d["name"]: d["sha256"] for d in saved.get("datasets", [])}
    for unit in units:
        old = before.get(unit.dataset.name)
        if old and old != unit.dataset.sha256:
            raise UsageError(f"{unit.dataset.name} changed since the evaluation began (sha256 {old[:12]} -> "
                             f"{unit.dataset.sha256[:12]})", hint="start a new evaluation for the new data")


# ---------------------------------------------------------------------------------------------- concurrency


def default_concurrency(server_metrics: str | None, max_model_len: int | None, max_tokens: int | None) -> tuple[int, str]:
    """How many requests the server's KV cache holds at once, and how that was worked out.

    KV cache tokens (vLLM's `vllm:cache_config_info`: kv_cache_size_tokens, else num_gpu_blocks x
    block_size) divided by the tokens one request may hold (max_tokens + a prompt allowance, at most
    the context window); at least 1, at most 256.
    """
    kv_tokens = _kv_cache_tokens(server_metrics or "")
    if not kv_tokens:
        return FALLBACK_CONCURRENCY, (f"{FALLBACK_CONCURRENCY} (the server's /metrics does not give its KV cache "
                                      "size; set --concurrency)")
    per_request = max_tokens + PROMPT_ALLOWANCE if max_tokens else max_model_len
    if max_model_len:
        per_request = min(per_request or max_model_len, max_model_len)
    if not per_request:
        return FALLBACK_CONCURRENCY, f"{FALLBACK_CONCURRENCY} (the server does not say its context window)"
    fits = kv_tokens // per_request
    value = max(1, min(MAX_DEFAULT_CONCURRENCY, fits))
    why = f"{value} (KV cache {kv_tokens:,} tokens / {per_request:,} tokens a request = {fits:,}"
    why += f", capped at {MAX_DEFAULT_CONCURRENCY})" if fits > MAX_DEFAULT_CONCURRENCY else ")"
    return value, why


def _kv_cache_tokens(text: str) -> int | None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        for family in text_string_to_metric_families(text):
            if family.name != "vllm:cache_config_info":
                continue
            total = 0
            for sample in family.samples:  # one per engine under data parallelism
                labels = sample.labels
                if labels.get("kv_cache_size_tokens", "None") not in ("None", ""):
                    total += int(float(labels["kv_cache_size_tokens"]))
                elif labels.get("num_gpu_blocks", "None") not in ("None", "") and labels.get("block_size"):
                    total += int(labels["num_gpu_blocks"]) * int(labels["block_size"])
            return total or None
    except ValueError:  # not Prometheus text
        return None
    return None


# ---------------------------------------------------------------------------------------------- running


def plan_jobs(units: list[Unit], settings: Settings, done: set[tuple]) -> list[list[Job]]:
    """Per unit, the (problem, run) pairs still to do, run-major so early runs finish first."""
    plans = []
    for unit in units:
        jobs = [Job(unit, p, run, settings.seed + run)
                for run in range(settings.runs) for p in unit.dataset.problems
                if sample_key(unit.dataset.name, unit.budget, p.id, run) not in done]
        plans.append(jobs)
    return plans


def make_record(job: Job, answer, correct: bool, started: float, finished: float) -> dict:
    """One line of samples.jsonl."""
    t = answer.timing
    return {
        "dataset": job.unit.dataset.name, "budget": job.unit.budget, "id": job.problem.id, "run": job.run,
        "seed": job.seed, "question": job.problem.question, "reference": job.problem.reference,
        "extracted": answer.answer, "boxed": answer.boxed, "source": answer.source, "correct": bool(correct),
        "reasoning": answer.reasoning, "content": answer.content, "finish_reason": answer.finish_reason,
        "truncated": bool(answer.truncated), "budget_forced": bool(getattr(answer, "budget_forced", False)),
        "budget_mode": getattr(answer, "budget_mode", None),
        "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
        "reasoning_tokens": answer.reasoning_tokens,
        "ttft": _round(t.ttft_s), "latency": _round(t.total_s), "tokens_per_s": _round(t.tokens_per_s),
        "started_at": round(started, 4), "finished_at": round(finished, 4),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


async def run_jobs(client, jobs: list[Job], settings: Settings, concurrency: int,
                   on_sample: Callable[[dict], None], *, send_seeds: bool = True) -> None:
    """Every job through `client.ask` (the R1 rules applied as `r1 ask` applies them), at most
    `concurrency` at once; on_sample gets each graded record as it finishes.

    The first failure stops the rest (their connections close, so vLLM stops generating) and is
    raised; cancelling this coroutine (Ctrl-C) does the same. Finished samples are already kept.
    """
    from r1cli.answers import grade
    from r1cli.library import Sampling

    gate = asyncio.Semaphore(concurrency)

    async def one(job: Job) -> None:
        async with gate:
            sampling = Sampling(temperature=settings.temperature, top_p=settings.top_p,
                                max_tokens=settings.max_tokens, seed=job.seed if send_seeds else None,
                                think_budget=job.unit.budget)
            started = time.time()
            answer = await client.ask(job.problem.question, math=True, sampling=sampling)
            finished = time.time()
        correct = grade(job.problem.reference, answer.content, answer.reasoning)  # lighteval's verdict
        record = make_record(job, answer, correct, started, finished)
        if not send_seeds:
            record["seed"] = None
        on_sample(record)

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        for next_done in asyncio.as_completed(tasks):
            await next_done
    finally:
        for t in tasks:
            t.cancel()  # no-op for the finished ones
        # Wait for the cancelled ones (their connections close) and collect every outcome, so no failure
        # of a sibling is reported as "never retrieved" after the first one is raised.
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Outcome:
    folder: Path
    units: list[Unit]
    records: list[dict]
    concurrency: int
    started_at: float
    finished_at: float


def evaluate(client, settings: Settings, units: list[Unit], folder: Path, concurrency: int, *,
             progress=None, send_seeds: bool = True) -> Outcome:
    """Run what is left of the evaluation in `folder`; returns every sample (earlier parts included).

    Ctrl-C stops it cleanly: the finished samples stay in samples.jsonl and the error says how to resume.
    """
    log = SampleLog(folder)
    started_at = time.time()
    plans = plan_jobs(units, settings, log.done())
    total = sum(len(u.dataset.problems) for u in units) * settings.runs
    if progress is not None:
        progress.start(total, len(log.records), [r for r in log.records])

    def on_sample(record: dict) -> None:
        log.append(record)
        if progress is not None:
            progress.update(record)

    async def main() -> None:
        try:
            for unit, jobs in zip(units, plans):
                if not jobs:
                    continue
                if progress is not None:
                    progress.unit(unit.key)
                await run_jobs(client, jobs, settings, concurrency, on_sample, send_seeds=send_seeds)
        finally:
            await client.aclose()  # its kept-alive connections belong to this event loop

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(log.records)} of {total} samples done, kept in {folder / SAMPLES_FILE}",
                          hint=f"continue with `r1 eval --resume {folder}`") from None
    except R1Error as exc:
        exc.hint = (exc.hint + "; then " if exc.hint else "") + f"continue with `r1 eval --resume {folder}` " \
            f"({len(log.records)} of {total} samples are kept)"
        raise
    finally:
        if progress is not None:
            progress.stop()
        log.close()
    return Outcome(folder, units, log.records, concurrency, started_at, time.time())
