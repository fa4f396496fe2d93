"""`r1 logs -f` on the real demo server's log, through a real process and pipe: the last lines first, then
each new line as vLLM writes it, and Ctrl-C ends it quietly (130)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import ROOT, STOP_WAIT_S, reap, run_r1, within


def test_follow_prints_new_lines_as_they_come_and_ctrl_c_ends_it(demo_server):
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "logs", "-f", "-n", "3", "--port", str(demo_server.port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = [within(30, proc.stdout.readline, "the log's last lines") for _ in range(3)]
        assert all(line.endswith(b"\n") for line in first)
        time.sleep(0.5)  # following now; a request makes vLLM write its access line
        run_r1("ask", "What is 2+3?", "--base-url", demo_server.base_url, check=True)
        seen = b""
        while b"POST /v1/chat/completions" not in seen:
            # read before the Ctrl-C below: printed while following, not on the way out
            seen += within(120, proc.stdout.readline, "the request's line, followed")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=STOP_WAIT_S)
    finally:
        reap(proc)
    assert proc.returncode == 130
    assert b"Traceback" not in err
