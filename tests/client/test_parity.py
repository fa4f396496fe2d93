"""Client and AsyncClient are one engine with two transports: every scripted-server case gives the same
answer, the same error and the same timing fields through both (as simonw/llm tests its sync and async
models). The scripted server stands in for the faults a real vLLM will not produce on demand (a stream cut
mid-answer, a 500, a 401, a hang, a non-OpenAI body); the cases a real server does produce run here too, so
that the comparison covers the ordinary path as well."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from r1cli import AsyncClient, Client
from r1cli.errors import R1Error
from scripted_server import ScriptedServer

# Every mode of the scripted server that answers a chat turn (slow: a paced stream for the cancel tests).
MODES = ["instant", "textless", "raw_think", "old_template", "budget", "cut", "error500", "unauthorized", "hang",
         "text_plain", "list_body"]


def _outcome(call) -> dict:
    """What a user sees of one turn: the answer's fields and which timings were measured, or the error."""
    try:
        answer = call()
    except R1Error as exc:
        partial = getattr(exc, "partial", None)
        return {"error": type(exc).__name__, "message": exc.message, "status": int(exc.status), "hint": exc.hint,
                "partial": (partial.reasoning, partial.content) if partial is not None else None}
    doc = answer.to_dict()
    timing = doc.pop("timing")
    # The figures differ run to run; which of them were measured, and their order, must not.
    measured = {k: v is not None for k, v in timing.items()}
    t = answer.timing
    assert t.ttft_s is None or t.ttft_s <= t.total_s
    return {"answer": doc, "measured": measured, "fields": sorted(f.name for f in dataclasses.fields(t))}


@pytest.mark.parametrize("mode", MODES)
def test_client_and_async_client_agree(mode):
    server = ScriptedServer(mode)
    try:
        kwargs = {"think_budget": 3, "max_tokens": 50} if mode == "budget" else {}
        sync_client = Client(server.base_url, timeout=2.0)
        sync_outcome = _outcome(lambda: sync_client.ask("What is 2+3?", seed=1, **kwargs))

        async def ask_async():
            async with AsyncClient(server.base_url, timeout=2.0) as client:
                return await client.ask("What is 2+3?", seed=1, **kwargs)

        async_outcome = _outcome(lambda: asyncio.run(ask_async()))
    finally:
        server.close()
    assert sync_outcome == async_outcome
    if mode == "instant":
        assert sync_outcome["answer"]["answer"] == "5"
    if mode in ("cut", "error500", "unauthorized", "hang", "text_plain", "list_body"):
        assert "error" in sync_outcome, mode
