"""The watchdog of a server whose r1 is still attached (a foreground serve, or a detached one until it is
ready): when that r1 dies without stopping the server (`kill -9`, an OOM kill), the watchdog stops the
server's whole tree and removes its record.

Why a process and not Linux's parent-death signal (prctl PR_SET_PDEATHSIG): that signal reaches only the
API server, as SIGTERM, and vLLM 0.32 ignores SIGTERM for as long as its engine is starting (tried: a
minute of loading went on, and the server then answered as ready); and a SIGKILL there would leave
EngineCore and its workers behind. The watchdog stops the tree as `r1 stop` does: SIGTERM to every
process of it, SIGKILL to what is left after 10 s.

r1 starts it with the read end of a pipe as its stdin and keeps the write end: end of file means r1 is
gone (the kernel closes the pipe however r1 ends); one byte means "released" (the server was handed
over, detached and ready). It runs in a session of its own, so a Ctrl-C or a hang-up meant for r1 never
reaches it, and it is no member of the server's tree.

(Keep-alive is no part of it: r1's middleware does it inside vLLM's own process, server/keepalive.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from r1cli.english import counted
from r1cli.server import state

RELEASE = b"r"


class Watchdog:
    """r1's end: the pipe's write end and the watchdog process."""

    def __init__(self, record: state.ServerRecord, log_fd: int | None = None):
        read_end, self._write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "r1cli.server.watchdog", json.dumps(state.public(record))],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=log_fd if log_fd is not None else subprocess.DEVNULL,
                start_new_session=True)
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The server is handed over (detached and ready): the watchdog leaves it running, and exits."""
        try:
            os.write(self._write_end, RELEASE)
        finally:
            os.close(self._write_end)
        self.proc.wait(timeout=10)


def _say(text: str) -> None:
    sys.stderr.write(f"r1 watchdog: {time.strftime('%H:%M:%S')} {text}\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    record = state.from_json(json.loads(argv[0]))
    if os.read(0, 1) == RELEASE:
        return 0
    from r1cli.server import process

    left = process.members(record)
    if not left:
        return 0  # r1 stopped the server itself before it ended
    _say(f"r1 is gone and left its server on port {record.port} running; stopping it "
         f"(pids {', '.join(str(p.pid) for p in left)})")
    with process.signals_held():
        freed = process.stop_members(record)
        try:
            current = state.load(record.port)
        except Exception:  # noqa: BLE001 - an unreadable record: leave it to the user
            current = None
        if current is not None and (current.pid, current.create_time) == (record.pid, record.create_time):
            state.remove(record.port)
    _say(f"stopped {counted(len(freed.pids), 'process')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
