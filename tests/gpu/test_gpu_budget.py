"""Issue 23 on one GPU (`pytest -m gpu` on the device): a thinking budget against real vLLM 0.25.

vLLM's default (V2) model runner answers 400 to `thinking_token_budget`: r1 asks again without it, then closes
the stream itself when the server's per-chunk completion_tokens reach the budget and forces the answer. With
VLLM_USE_V2_MODEL_RUNNER=0 (the V1 runner) vLLM holds the budget itself. The model has random weights, so its
reasoning never ends by itself: the budget is what ends it (max_tokens 400 otherwise).

Each test starts its own `r1 serve` (the default runner, or VLLM_USE_V2_MODEL_RUNNER=0), unless
R1_GPU_URL_V2 / R1_GPU_URL_V1 names a running one of that runner (benchmarks/gpu/runner_cost.sh runs them
against the servers it measures, with -k v2 / -k v1). R1_GPU_BUDGET_LOG, if set, gets one JSON line per ask."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

import gpu_common as g
from conftest import run_r1

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(1800)]
ONE = {"CUDA_VISIBLE_DEVICES": "0"}
V1 = {**ONE, "VLLM_USE_V2_MODEL_RUNNER": "0"}
BUDGET = 32
ASKS = 5  # fresh r1 processes: each learns the server's refusal anew; random weights vary per ask
QUESTION = "What is the sum of the first ten prime numbers?"


@contextlib.contextmanager
def server_url(runner: str, env: dict):
    url = os.environ.get(f"R1_GPU_URL_{runner.upper()}")
    if url:
        yield url.rstrip("/")
        return
    with g.served(env=env) as (port, _):
        yield f"http://127.0.0.1:{port}/v1"


def ask(url: str, runner: str, *extra: str) -> dict:
    proc = run_r1("ask", QUESTION, "--json", "--max-tokens", "400", "--base-url", url, *extra, timeout=300)
    assert proc.returncode in (0, 4), proc.stderr[-3000:]  # random weights: there may be no boxed answer (4)
    answer = json.loads(proc.stdout)
    brief = {"runner": runner, "args": list(extra), "budget_mode": answer["budget_mode"],
             "budget_forced": answer["budget_forced"], "finish_reason": answer["finish_reason"],
             "usage": answer["usage"], "reasoning_chars": len(answer["reasoning"] or ""),
             "content_chars": len(answer["content"] or ""), "stderr": proc.stderr.strip()[-300:]}
    log = os.environ.get("R1_GPU_BUDGET_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(brief) + "\n")
    return brief


def test_v2_runner_refuses_the_budget_and_r1_holds_it_by_the_servers_count():
    """r1 hangs up when the server's per-chunk count reaches the budget: exactly BUDGET reasoning tokens."""
    with server_url("v2", ONE) as url:
        free = ask(url, "v2")  # no budget: the reasoning runs on to max_tokens
        asks = [ask(url, "v2", "--think-budget", str(BUDGET)) for _ in range(ASKS)]
    assert free["budget_mode"] is None and free["usage"]["completion_tokens"] == 400, free
    for a in asks:
        assert a["budget_mode"] == "client", asks
        assert a["budget_forced"] is True, asks
        assert a["usage"]["reasoning_tokens"] == BUDGET, asks
        assert a["usage"]["completion_tokens"] > BUDGET, asks


def test_v1_runner_holds_the_budget_itself():
    """vLLM's own thinking_token_budget: at most BUDGET reasoning tokens by the server's count."""
    with server_url("v1", V1) as url:
        asks = [ask(url, "v1", "--think-budget", str(BUDGET)) for _ in range(ASKS)]
    for a in asks:
        assert a["budget_mode"] == "server", asks
        assert a["budget_forced"] is False, asks
        assert a["usage"]["reasoning_tokens"] is not None and a["usage"]["reasoning_tokens"] <= BUDGET, asks
        assert a["usage"]["completion_tokens"] > BUDGET, asks
