"""`r1 run [MODEL] [QUESTION...]` (issue 24): a model that is not served yet is served first (detached, through
serve's own checks and stages); one that serves already answers at once, found on whatever port it serves; without
a question it opens chat, piped or on a real pseudo-terminal. On the session's demo server; a run that serves from
nothing is the shared server's own start (`r1 serve demo -d`, whose stages test_serve.py reads), so here the first
run is shown going through serve's checks on a port it cannot have."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT, free_port, run_r1


@dataclass
class Place:
    home: Path
    port: int

    @property
    def env(self) -> dict:
        return {"R1_HOME": str(self.home), "R1_PORT": str(self.port)}

    def r1(self, *args: str, **kw):
        return run_r1(*args, env={**self.env, **kw.pop("env", {})}, **kw)


@pytest.fixture
def place(demo_server):
    from conftest import _STATE

    return Place(Path(_STATE), demo_server.port)


def test_a_first_run_serves_through_serves_checks(tmp_path):
    """Nothing serves the demo in this home: run starts it as `r1 serve demo -d` would, so serve's checks run
    first, and a port another program holds ends it there, with serve's one-line error and exit 5."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = run_r1("run", "demo", "What is 2+3?", env={"R1_HOME": str(home), "R1_PORT": str(port)}, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == ""
    assert f"r1: error: port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_of_what_serves_answers_at_once(place):
    proc = place.r1("run", "demo", "What", "is", "7*6?", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42\n"  # stdout is the answer's alone
    assert "starting vLLM" not in proc.stderr and "ready in" not in proc.stderr


def test_run_finds_the_server_on_another_port(place):
    """The model already serves (on the module's port): `r1 run demo` from another default port reuses it."""
    proc = run_r1("run", "demo", "What is 9+8?", env={"R1_HOME": str(place.home), "R1_PORT": str(free_port())},
                  timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "17\n"
    assert "ready in" not in proc.stderr


README_PIPED = "printf 'What is 7*6?\\nWhat is 9+8?\\n' | .venv/bin/r1 run demo"


@pytest.mark.parametrize("command", [("run", "demo"), ("chat",)], ids=["run", "chat"])
def test_without_a_question_a_piped_chat_answers_every_line(place, command):
    """README's piped chat: each line is a message sent after the earlier ones, and each gets its answer (issue 32:
    the demo answered the second 'no answer' or \\boxed{20}, until it was trained on conversations)."""
    assert README_PIPED in (ROOT / "README.md").read_text(encoding="utf-8")
    proc = place.r1(*command, input="What is 7*6?\nWhat is 9+8?\n", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\\boxed{42}") == 1 and proc.stdout.count("\\boxed{17}") == 1, proc.stdout
    assert proc.stdout.index("\\boxed{42}") < proc.stdout.index("\\boxed{17}")


def test_run_without_a_question_opens_chat_on_a_terminal(place):
    env = {**os.environ, **place.env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "run", "demo"], env=env, encoding="utf-8",
                          dimensions=(40, 120), timeout=60, cwd=str(ROOT))
    try:
        child.expect_exact(">>> ")
        child.sendline("What is 7*6?")
        child.expect("42")
        child.expect_exact(">>> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_run_question_without_a_model_takes_the_question_whole(place):
    """`r1 run "What is 2+3?"`: a question is not a model; the default (1.5B) is served, so offline this
    fails before spawning, naming the 1.5B (the demo stays untouched)."""
    env = {"HF_HUB_CACHE": str(place.home / "empty-cache"), "HF_HUB_OFFLINE": "1", "R1_PORT": str(free_port())}
    proc = place.r1("run", "What is 2+3?", env=env, timeout=60)
    assert proc.returncode == 10, proc.stderr  # serve pulls first (issue 22): the pull's "no network" status
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in proc.stderr.splitlines()[0]
