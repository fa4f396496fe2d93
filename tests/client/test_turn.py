"""The turn engine against a scripted server, for what a real vLLM won't do on demand: reasoning that
never ends (the thinking budget's continuation request, exactly), servers that are not OpenAI-compatible,
a server that accepts and never answers. The same paths on the real demo server: tests/test_library.py."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from conftest import run_r1
from r1cli.client import stream, sync, turn
from r1cli.client.target import Target, normalize_base_url
from r1cli.errors import NoServerError, R1Error, UsageError
from scripted_server import ScriptedServer


@pytest.fixture
def server(request):
    srv = ScriptedServer(request.param)
    yield srv
    srv.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["budget"], indirect=True)
def test_think_budget_closes_the_stream_and_continues_from_the_reasoning(server):
    target = Target(server.base_url, model="scripted")
    answer = turn.run(target, "What is 2+3?", turn.Sampling(max_tokens=100, seed=3, think_budget=20))

    assert answer.budget_forced and answer.answer == "5" and answer.boxed
    assert answer.reasoning == "2 + 3 " + "step " * 19
    # r1 hung up on the endless reasoning right after the budget: the server saw it go
    time.sleep(0.2)
    assert server.disconnected_at is not None and server.sent < 60
    # the prompt rendered by the server's own template, then the reasoning closed as the model closes it
    rendered, forced = server.tokenize_requests[-2:]
    assert rendered["messages"][-1]["role"] == "user" and rendered["add_generation_prompt"] is True
    assert forced == {"model": "scripted", "prompt": "2 + 3 " + "step " * 18 + "step\n</think>\n\n",
                      "add_special_tokens": False}
    (request,) = server.completion_requests
    assert request["prompt"] == [101, 102, 103, 7, 8, 9]
    assert request["stream"] is True and request["seed"] == 3 and request["temperature"] == 0.6
    assert request["max_tokens"] == 80  # what is left of --max-tokens after 20 reasoning deltas
    # vLLM's own budget was asked for, and ignored (as an older vLLM ignores unknown fields): r1 held it. With
    # no per-chunk usage from this server, the count is of deltas: said so, and no token count is claimed.
    assert server.requests[0]["thinking_token_budget"] == 20
    assert answer.budget_mode == "client-deltas" and answer.reasoning_tokens is None
    assert answer.usage["prompt_tokens"] == 3 and answer.completion_tokens == 26
    assert "20 reasoning deltas" in answer.budget_spent


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["budget_usage", "budget_v2"], indirect=True)
def test_think_budget_counts_the_servers_tokens(server):
    """With vLLM's per-chunk usage, the budget is the server's token count, not the deltas: every fourth delta
    here carries two tokens, so 20 tokens are reached after 16 deltas. A server that refuses vLLM's
    thinking_token_budget (vLLM 0.25's V2 runner) is asked again without it, and remembered."""
    target = Target(server.base_url, model="scripted")
    answer = turn.run(target, "What is 2+3?", turn.Sampling(max_tokens=100, think_budget=20))
    assert answer.budget_forced and answer.answer == "5"
    assert answer.reasoning == "2 + 3 " + "step " * 15 and answer.reasoning_chunks == 16
    assert answer.reasoning_tokens == 20 and answer.budget_mode == "client"
    assert answer.completion_tokens == 26 and answer.to_dict()["usage"]["reasoning_tokens"] == 20
    (request,) = server.completion_requests
    assert request["max_tokens"] == 80  # what is left of --max-tokens after 20 of the server's tokens
    if server.mode == "budget_v2":
        assert [("thinking_token_budget" in r) for r in server.requests] == [True, False]
        assert target.server_budget is False
        turn.run(target, "What is 2+3?", turn.Sampling(max_tokens=100, think_budget=20))
        assert "thinking_token_budget" not in server.requests[-1]  # not asked again
    else:
        assert server.requests[0]["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["budget_usage"], indirect=True)
def test_ask_think_budget_json_says_it_was_forced(server):
    import json

    proc = run_r1("ask", "What is 2+3?", "--think-budget", "10", "--json", "--base-url", server.base_url, timeout=30)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["budget_forced"] is True and data["answer"] == "5" and data["budget_mode"] == "client"
    # the server's count: 8 deltas, every fourth two tokens
    assert data["usage"]["reasoning_tokens"] == 10 and data["usage"]["completion_tokens"] == 16


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["text_plain", "list_body"], indirect=True)
def test_a_server_that_is_not_openai_is_named_in_one_line(server):
    proc = run_r1("ask", "What is 2+3?", "--base-url", server.base_url)
    assert proc.returncode == 3  # NO_SERVER: no server r1 can talk to answers there
    note, first = proc.stderr.splitlines()[:2]  # issue 24: which server first (no r1 record names it)
    assert note.startswith(f"r1: using {server.base_url}, a server not started by r1")
    assert first.startswith(f"r1: error: the server at {server.base_url} is not an OpenAI-compatible API: it sent ")
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["text_plain"], indirect=True)
def test_a_text_plain_200_to_a_stream_is_not_an_answer(server):
    proc = run_r1("ask", "What is 2+3?", "--model", "x", "--base-url", server.base_url)
    assert proc.returncode == 3 and proc.stdout == ""
    assert "is not an OpenAI-compatible API: it sent text/plain 'Hello from a web server'" in proc.stderr


@pytest.mark.parametrize("url", ["127.0.0.1:99999", "http://", "http://:8000", "ftp://host/v1"])
def test_a_bad_base_url_is_a_usage_error(url):
    proc = run_r1("ask", "What is 2+3?", "--base-url", url)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and "unexpected" not in proc.stderr
    with pytest.raises(UsageError):
        normalize_base_url(url)


@pytest.mark.parametrize("url, expected", [
    ("localhost:8000", "http://localhost:8000/v1"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
    ("https://example.org/v1", "https://example.org/v1"),
])
def test_base_url_forms(url, expected):
    assert normalize_base_url(url) == expected


@pytest.mark.timeout(120)
def test_one_deadline_for_the_whole_request(monkeypatch):
    """--timeout bounds the model lookup, the prompt check and the stream together (it took 10.3 s for
    --timeout 3 when each step had its own fixed timeout). On a clock the test keeps, each step takes 1.2 s
    of what it was given: the next one gets only what is left of the one deadline."""
    clock = [100.0]
    given: list[tuple[str, float]] = []

    def step(name, result):
        def run(*args, timeout, **kwargs):
            given.append((name, round(timeout, 6)))
            clock[0] += 1.2
            return result
        return run

    monkeypatch.setattr(turn.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(turn.sync, "resolve_model", step("model lookup", "scripted"))
    monkeypatch.setattr(turn, "fit", step("prompt check", turn.Fitted([{"role": "user", "content": "q"}], {}, 0)))
    monkeypatch.setattr(turn, "send", step("stream", SimpleNamespace()))  # run() notes history_dropped on it
    turn.run(Target("http://127.0.0.1:9/v1"), "What is 2+3?", timeout=3)
    assert given == [("model lookup", 3.0), ("prompt check", 1.8), ("stream", 0.6)]


@pytest.mark.timeout(120)
def test_a_port_that_never_answers_ends_the_ask_with_exit_3():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel accepts; nobody ever reads or answers
        port = listener.getsockname()[1]
        proc = run_r1("ask", "What is 2+3?", "--timeout", "3", "--base-url", f"127.0.0.1:{port}")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-2:] == [f"r1: error: no server answers at http://127.0.0.1:{port}/v1 (timed out)",
                                             f"  fix: start one with `r1 serve demo --port {port}`"]


def test_a_dead_r1_server_is_named_with_its_url(tmp_path):
    """kill -9 took the server down: ask names that server, not the article's port 8000."""
    import json
    import os

    home = tmp_path / "home"
    (home / "servers").mkdir(parents=True)
    home.chmod(0o700)
    record = {"pid": 2**22 + 12345, "create_time": 1.0, "port": 8693, "host": "127.0.0.1",
              "url": "http://127.0.0.1:8693/v1", "model": "demo", "served_name": "r1-demo",
              "log_path": str(home / "logs" / "server-8693.log"), "started_at": 1.0}
    (home / "servers" / "8693.json").write_text(json.dumps(record))
    proc = run_r1("ask", "What is 2+3?", env={"R1_HOME": str(home)})
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == "r1: error: the r1 server at http://127.0.0.1:8693/v1 is no longer running (it died)"
    assert proc.stderr.splitlines()[1] == ("  fix: `r1 logs --port 8693` shows why; start it again with "
                                           "`r1 serve demo --port 8693`")  # its model and port (issue 32, item 10)
    assert os.environ["R1_HOME"] != str(home)


def test_sampling_of_keeps_the_base_and_refuses_unknown_fields():
    base = turn.Sampling(temperature=0.5, max_tokens=100)
    assert turn.Sampling.of(base, seed=4) == turn.Sampling(temperature=0.5, max_tokens=100, seed=4)
    assert turn.Sampling.of(None).params() == {"temperature": 0.6, "top_p": 0.95}
    with pytest.raises(TypeError, match="tempreature"):
        turn.Sampling.of(None, tempreature=0.1)


def test_errors_are_the_cli_s_exit_statuses():
    assert issubclass(stream.StreamCut, R1Error) and issubclass(sync.PromptTooLong, UsageError)
    assert NoServerError("x").status == 3
