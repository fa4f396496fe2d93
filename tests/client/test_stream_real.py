"""The stream layer (r1cli/client/stream.Events) on streams real vLLM servers sent, byte for byte: vLLM 0.25 on
an H200 serving random weights of the 1.5B's shape, with per-chunk usage (continuous_usage_stats). Random
weights decode mostly to nothing, so most reasoning tokens arrive as `{"reasoning": ""}`: the budget and the
reasoning-token count must follow the server's tokens, not the text (the GPU tier found r1 hanging up at 56
or 127 tokens for a budget of 32, and calling the V1 runner's first answer text reasoning).

- gpu-0.25-v1-runner-thinking-budget-32.sse: VLLM_USE_V2_MODEL_RUNNER=0, `thinking_token_budget: 32`, held by the
  server: 31 reasoning tokens (vLLM counts the prompt's newline after <think>), then the answer.
- gpu-0.25-v2-runner-no-budget.sse: the default V2 runner (which refuses thinking_token_budget), no budget: the
  reasoning runs on, textless, until max_tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1cli.client.stream import BUDGET_REACHED, Events
from r1cli.client.target import Target

STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"


def feed(name: str, think_budget: int | None, block: int = 4096):
    events = Events(Target("http://gpu/v1", model="DeepSeek-R1-Distill-Qwen-1.5B"), None, opens_think=True,
                    think_budget=think_budget, record_times=False, started=None)
    events.sent()
    data = (STREAMS / name).read_bytes()
    for i in range(0, len(data), block):
        if events.feed(data[i:i + block]):
            break
    return events


@pytest.mark.parametrize("block", [64, 4096, 1 << 20])  # however the network splits it
def test_a_budget_the_server_held_is_not_forced_again(block):
    events = feed("gpu-0.25-v1-runner-thinking-budget-32.sse", 32, block)
    out = events.finish()
    assert not events.budget_hit and out.finish_reason != BUDGET_REACHED
    assert events.parsed_by_server
    assert out.reasoning_tokens == 31  # the server's count at its last reasoning token
    assert out.content.strip() and out.reasoning == ""  # the answer's text is the answer's, not reasoning


@pytest.mark.parametrize("budget", [1, 32, 77])
def test_the_budget_counts_textless_tokens(budget):
    events = feed("gpu-0.25-v2-runner-no-budget.sse", budget)
    out = events.out
    assert events.budget_hit and out.finish_reason == BUDGET_REACHED
    assert out.reasoning_tokens == budget  # exactly: every token of the server counts, text or not


def test_without_a_budget_every_token_is_reasoning_to_the_end():
    events = feed("gpu-0.25-v2-runner-no-budget.sse", None)
    out = events.finish()
    assert out.finish_reason == "length" and out.content == ""
    assert out.reasoning_tokens == out.completion_tokens == 80
