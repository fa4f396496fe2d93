"""`r1 pull`'s bar on a slow link, as a terminal shows it (issue 32, item 10): on a 150 kB/s link the bar sat at
0.0 MB for 5 s, because it counted the weights in 1 MiB writes. It must count bytes as they arrive."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest

from hub.conftest import REPO
from hub.helpers import ROOT

pytestmark = pytest.mark.timeout(120)

RATE = 150_000  # bytes/s: the link
SHOWN = re.compile(r"(\d+\.\d)/(\d+\.\d) MB")  # Rich's DownloadColumn: done/total


def test_the_bar_counts_bytes_as_they_arrive_on_a_slow_link(hub_env, mirror):
    mirror.relay.rate = RATE
    master, slave = pty.openpty()  # stderr a terminal: Rich draws its bar there, as for a user
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "pull", REPO], stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(slave)
    drawn: list[tuple[float, str]] = []  # (when, what) as the terminal got it

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            drawn.append((time.monotonic(), data.decode(errors="replace")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The event: 400 kB have gone down the link (the small files are 23 kB: most of it is weights).
        deadline = time.monotonic() + 60
        while mirror.relay.served < 400_000:
            assert proc.poll() is None, "the pull ended before 400 kB were served"
            assert time.monotonic() < deadline, f"only {mirror.relay.served} bytes served in 60 s"
            time.sleep(0.02)
        seen_at = time.monotonic()

        def shown() -> list[float]:
            after = "".join(text for when, text in list(drawn) if when >= seen_at)
            return [float(m.group(1)) for m in SHOWN.finditer(after)]

        # Rich redraws 4 times a second: within 2 s of the event a frame shows what has arrived
        while not any(mb >= 0.2 for mb in shown()) and time.monotonic() < seen_at + 2:
            time.sleep(0.05)
        assert any(mb >= 0.2 for mb in shown()), f"400 kB arrived, and the bar showed {shown() or 'nothing'} MB"
    finally:
        mirror.relay.rate = None
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            reader.join(timeout=5)
            os.close(master)
    assert proc.returncode == 0
