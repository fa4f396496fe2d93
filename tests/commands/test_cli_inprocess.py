"""Commands run in-process through `cli.run(argv, environment)`, with exact stdout and stderr, as httpie
and llm test theirs. The scripted server stands in only where a real vLLM is not needed to show the
output's shape (the same commands run against the real demo server in test_ask.py and test_library.py)."""

from __future__ import annotations

import io
import json

import pytest

from r1cli import cli
from r1cli.console import Environment
from scripted_server import ScriptedServer


class Pipe(io.StringIO):
    """A pipe, not a terminal (what `| jq` gives a command)."""

    def isatty(self) -> bool:
        return False


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = Pipe(), Pipe()
    status = cli.run(list(argv), Environment(Pipe(stdin), out, err))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def instant():
    srv = ScriptedServer("instant")
    yield srv
    srv.close()


def foreign(url: str) -> str:
    """The one stderr line a client command gives for a server no r1 record names (issue 24)."""
    from r1cli import config

    return f"r1: using {url}, a server not started by r1 (no record of it in {config.state_dir()})\n"


def test_ask_prints_the_answer_only(instant):
    assert run("ask", "What is 2+3?", "--base-url", instant.base_url) == (0, "5\n", foreign(instant.base_url))


def test_ask_json_is_one_object(instant):
    status, out, err = run("ask", "What is 2+3?", "--json", "--base-url", instant.base_url)
    assert (status, err) == (0, foreign(instant.base_url))
    data = json.loads(out)
    assert data["answer"] == "5" and data["reasoning"] == "2 + 3 = 5.\n" and data["budget_forced"] is False


def test_ask_reads_piped_stdin(instant):
    assert run("ask", "--base-url", instant.base_url, stdin="What is 2+3?\n") == (0, "5\n", foreign(instant.base_url))


def test_a_usage_error_is_one_line_on_stderr():
    assert run("ask", "What is 2+3?", "--base-url", "http://") == (
        2, "", "r1: error: --base-url 'http://' names no host\n  fix: e.g. --base-url http://127.0.0.1:8000/v1\n")


def test_an_empty_question_is_a_usage_error():
    status, out, err = run("ask", "--base-url", "http://127.0.0.1:9/v1", stdin="")
    assert (status, out) == (2, "") and err.startswith("r1: error: the question is empty\n")


def test_each_run_writes_to_its_own_environment(instant):
    """The Environment reaches a command as its context object, not through a module global: two runs at
    once, in two threads, each print only to their own streams."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run("ask", "What is 2+3?", "--base-url", instant.base_url), range(2)))
    assert [(status, out) for status, out, _ in results] == [(0, "5\n")] * 2


@pytest.mark.parametrize("argv", [
    ["serve", "demo", "--dry-run"], ["run", "demo", "hi"], ["doctor"], ["stop"], ["logs"], ["sleep"], ["wake"],
    ["ask", "hi"], ["chat"], ["status"], ["eval", "demo"], ["bench"],
])
@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_a_port_no_server_can_have_is_bad_input_for_every_command(argv, port):
    """Not "no server on port 70000" (exit 3), nor doctor's OverflowError from bind() (exit 1, before)."""
    status, out, err = run(*argv, "--port", port)
    assert (status, out) == (2, "")
    assert err.splitlines() == [f"r1: error: Invalid value for '--port'{ENV if argv[0] in R1_PORT_COMMANDS else ''}: "
                                f"{port} is not in the range 1<=x<=65535. (see `r1 {argv[0]} --help`)"]


ENV = " (env var: 'R1_PORT')"
R1_PORT_COMMANDS = {"serve", "run", "doctor", "stop", "logs", "sleep", "wake"}  # serve's port, or which r1 server


def test_logs_takes_no_negative_line_count():
    status, out, err = run("logs", "-n", "-5")
    assert (status, out) == (2, "")
    assert err.splitlines() == ["r1: error: Invalid value for '-n' / '--lines': -5 is not in the range x>=0. (see `r1 logs --help`)"]
