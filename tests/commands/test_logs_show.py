"""`r1 logs` of a router: vllm-router 0.1.17 writes its tracing output with colours into its log (it honours
no NO_COLOR), so r1 removes them where a user's stdout is not a colour terminal. The log is a real one, kept
by `r1 route` in front of two demo servers (tests/data/route/router-0.1.17-two-workers.log)."""

from __future__ import annotations

import os
import shutil
import sys

import pexpect
import pytest
from conftest import ROOT, run_r1

from r1cli.server import logs

pytestmark = pytest.mark.timeout(60)
ROUTER_LOG = ROOT / "tests" / "data" / "route" / "router-0.1.17-two-workers.log"
LINES = ROUTER_LOG.read_text().splitlines()  # 21: fewer than the 50 `r1 logs` shows


@pytest.fixture
def home(tmp_path):
    """An r1 home whose only kept log is the router's: `r1 logs` shows the last server's log."""
    (tmp_path / "logs").mkdir()
    shutil.copy(ROUTER_LOG, tmp_path / "logs" / "server-46269.log")
    return {"R1_HOME": str(tmp_path)}


def test_the_real_router_log_has_colours():
    assert len(LINES) == 21 and sum("\x1b[" in line for line in LINES) == 12


def test_a_pipe_gets_the_log_without_colours(home):
    proc = run_r1("logs", env=home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [logs.plain(line) for line in LINES]
    assert "\x1b" not in proc.stdout and "Router ready | workers:" in proc.stdout


@pytest.mark.parametrize("no_color, coloured", [(None, True), ("1", False)])
def test_a_terminal_keeps_them_unless_no_color(home, no_color, coloured):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(home, TERM="xterm", **({"NO_COLOR": no_color} if no_color else {}))
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "logs"], env=env, cwd=str(ROOT),
                          encoding="utf-8", timeout=30, dimensions=(40, 400))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert ("\x1b[" in child.before) == coloured
    assert "Router ready | workers:" in logs.plain(child.before)
