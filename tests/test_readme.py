"""The README's two set-up commands are the ones that work: CI runs the second verbatim."""

from __future__ import annotations

import re

from conftest import ROOT


def readme_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_exactly_two_setup_commands_up_front():
    commands = readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    # issue 24: the first run is ollama's one command, `r1 run` (serve if needed, then answer)
    assert "'.[cpu]'" in demo and 'r1 run demo "What is 2+3?"' in demo and "r1 stop" in demo
    assert "'.[cpu,test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci
