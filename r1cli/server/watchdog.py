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

A server with sleep mode keeps its watchdog for its whole life: once the server is ready, a thread runs
the keep-alive supervisor (server/keepalive.py), and a release leaves that thread running until the server
is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

from r1cli.server import state

RELEASE = b"r"


class Watchdog:
    """r1's end: the pipe's write end and the watchdog process."""

    def __init__(self, record: state.ServerRecord, log_fd: int | None = None):
        self.stays = record.sleep_mode
        read_end, self._write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "r1cli.server.watchdog", json.dumps(asdict(record))],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=log_fd if log_fd is not None else subprocess.DEVNULL,
                start_new_session=True)
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The server is handed over (detached and ready): the watchdog leaves it running, and exits (with
        sleep mode it stays, as the server's keep-alive supervisor)."""
        try:
            os.write(self._write_end, RELEASE)
        finally:
            os.close(self._write_end)
        if not self.stays:
            self.proc.wait(timeout=10)


def _say(text: str) -> None:
    sys.stderr.write(f"r1 watchdog: {time.strftime('%H:%M:%S')} {text}\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    import signal

    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    record = state.from_json(json.loads(argv[0]))
    keeper = _start_keepalive(record) if record.sleep_mode else None
    if os.read(0, 1) == RELEASE:
        if keeper is not None:
            keeper.join()
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
    _say(f"stopped {len(freed.pids)} processes")
    return 0


def _start_keepalive(record: state.ServerRecord):
    """The supervisor's thread: it waits for the server to be ready, then runs until the server is gone."""
    import threading

    from r1cli.server import keepalive
    from r1cli.server.sleep import describe_duration

    def run() -> None:
        while True:
            current = state.load(record.port)
            if current is None or current.pid != record.pid:
                return  # the start failed or was stopped
            if current.ready_at is not None:
                break
            time.sleep(0.5)
        when = f"after {describe_duration(record.idle_sleep_s)} idle" if record.idle_sleep_s else "on `r1 sleep`"
        _say(f"keep-alive: the server sleeps {when} and wakes on the next request")
        try:
            keepalive.supervise(record, _say)
        except Exception as exc:  # noqa: BLE001 - say why in the log rather than die silently
            _say(f"keep-alive stopped: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="keepalive", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
