"""The asyncio transport (r1cli/aio.py, under AsyncClient, eval and bench) on the faults a real vLLM won't
produce on demand, against the scripted server: the same errors as the blocking reader gives."""

from __future__ import annotations

import asyncio
import time

import pytest

from r1cli.client import stream, turn
from r1cli.client.target import Target
from r1cli.errors import R1Error
from scripted_server import ScriptedServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(request):
    srv = ScriptedServer(request.param)
    yield srv
    srv.close()


def ask(srv, question="What is 2+3?", timeout=20.0, **sampling):
    from r1cli import AsyncClient

    async def main():
        return await AsyncClient(base_url=srv.base_url, model="scripted", timeout=timeout).ask(question, **sampling)

    return asyncio.run(main())


@pytest.mark.parametrize("server", ["instant"], indirect=True)
def test_an_answer_with_channels_and_timing(server):
    answer = ask(server)
    assert (answer.answer, answer.reasoning, answer.finish_reason) == ("5", "2 + 3 = 5.\n", "stop")
    assert 0 < answer.timing.ttft_s <= answer.timing.answer_s <= answer.timing.total_s


@pytest.mark.parametrize("server", ["cut"], indirect=True)
def test_a_cut_stream_is_streamcut_with_what_arrived(server):
    with pytest.raises(stream.StreamCut) as cut:
        ask(server)
    assert cut.value.partial.content == "The answer is " and "closed before the end" in cut.value.message


@pytest.mark.parametrize("server", ["error500"], indirect=True)
def test_a_500_carries_the_servers_message(server):
    with pytest.raises(R1Error, match="the server answered 500: EngineCore encountered an issue"):
        ask(server)


@pytest.mark.parametrize("server", ["unauthorized"], indirect=True)
def test_a_401_asks_for_a_key(server):
    with pytest.raises(R1Error, match="needs an API key"):
        ask(server)


@pytest.mark.parametrize("server", ["text_plain"], indirect=True)
def test_a_text_plain_200_is_not_an_answer(server):
    with pytest.raises(R1Error, match="not an OpenAI-compatible API: it sent text/plain 'Hello from a web server'"):
        ask(server)


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_silence_ends_at_the_timeout(server):
    # the server holds the request 30 s: this message is r1's own 1 s timeout ending it
    with pytest.raises(R1Error, match="sent nothing for 1 s"):
        ask(server, timeout=1.0)


@pytest.mark.parametrize("server", ["budget_usage"], indirect=True)
def test_the_thinking_budget_forces_an_answer_the_same_way(server):
    answer = ask(server, think_budget=20, max_tokens=100, seed=3)
    assert answer.budget_forced and answer.answer == "5" and answer.reasoning_tokens == 20
    assert answer.reasoning_chunks == 16 and answer.budget_mode == "client"  # the server's tokens, not deltas
    time.sleep(0.2)
    assert server.disconnected_at is not None and server.sent < 60  # the endless stream was hung up on
    assert server.completion_requests[0]["prompt"] == [101, 102, 103, 7, 8, 9]


@pytest.mark.parametrize("server", ["slow"], indirect=True)
def test_cancelling_the_task_hangs_up(server):
    from r1cli import AsyncClient

    async def main():
        r1 = AsyncClient(base_url=server.base_url, model="scripted")
        task = asyncio.ensure_future(r1.raw([{"role": "user", "content": "x"}], {"max_tokens": 400}))
        while server.sent < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while server.disconnected_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.disconnected_at is not None
    assert server.sent < 100  # of 400, one per 20 ms: counted in tokens, not in seconds a stall stretches


def test_nothing_listening_is_no_server():
    from conftest import free_port
    from r1cli.errors import NoServerError

    target = Target(f"http://127.0.0.1:{free_port()}/v1", model="x")
    with pytest.raises(NoServerError, match="connection refused"):
        asyncio.run(turn.asend(target, [{"role": "user", "content": "x"}], turn.Sampling()))
