"""`r1 logs`: the tail of a server's log, optionally followed."""

from __future__ import annotations

import collections
import time
from pathlib import Path

from r1cli.console import Environment
from r1cli.errors import R1Error
from r1cli.server import state


def show(env: Environment, record: state.ServerRecord, *, lines: int, follow: bool) -> None:
    path = Path(record.log_path)
    try:
        fh = open(path, "r", errors="replace")
    except OSError as exc:
        raise R1Error(f"cannot read the log {path}: {exc.strerror}") from None
    with fh:
        for line in collections.deque(fh, maxlen=max(lines, 0)):
            env.stdout.write(line)
        env.stdout.flush()
        while follow:
            line = fh.readline()
            if line:
                env.stdout.write(line)
                env.stdout.flush()
                continue
            if not state.is_alive(record):
                env.note(f"r1: the server on port {record.port} has exited")
                return
            time.sleep(0.2)
