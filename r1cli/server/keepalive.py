"""The keep-alive supervisor of a server with sleep mode (`r1 serve --idle-sleep`): it puts the server to
sleep after the idle time, and wakes it when a request arrives from any client (curl, the openai SDK, a
web UI), not only r1's. It runs in the watchdog process (server/watchdog.py), which outlives the CLI.

Idle: /metrics shows no request running or waiting, and its token counters have not moved, for the whole
idle time.

A request waiting on a sleeping server: what does vLLM show? Not its /metrics: while the scheduler is
paused, the engine's loop blocks on its input queue (vllm/v1/engine/core.py: `has_work()` is false, and
scheduler stats are sent only with a step), so `num_requests_waiting` stays 0. Not its log, unless
`--enable-log-requests` writes some 800 bytes per request (gigabytes a day at c=256). What it does show is
the TCP connection: the request holds one open with no answer, while /health, /metrics and /v1/models are
answered in milliseconds even asleep, and uvicorn closes an idle keep-alive connection after 5 s
(VLLM_HTTP_TIMEOUT_KEEP_ALIVE). So a connection to the server's port that stays ESTABLISHED for 0.2 s
while the server sleeps is a request waiting (one already open when the sleep began: only once it has
outlived the keep-alive time; so a request sent in the seconds the server takes to fall asleep is answered
up to 6 s late, never lost). The wake then lets vLLM answer the requests it queued, none lost, none
doubled; nothing stands in the request path, and the log stays as it was.
"""

from __future__ import annotations

import os
import time
from typing import Callable

WAITING_AFTER_S = 0.2  # longer than /health, /metrics or /v1/models take to answer while asleep
POLL_ASLEEP_S = 0.05
KEEPALIVE_S = float(os.environ.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "5"))
_ESTABLISHED = "01"  # the state column of /proc/net/tcp


def established(port: int, tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> set[tuple[str, str]]:
    """The (local, remote) addresses of the ESTABLISHED TCP connections to PORT on this machine.

    Read from /proc/net/tcp by hand: psutil.net_connections() would also map every socket to its process
    by walking /proc/*/fd, which is not needed here and costs far more 20 times a second."""
    found = set()
    for table in tables:
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        found |= parse_table(lines, port)
    return found


def parse_table(lines: list[str], port: int) -> set[tuple[str, str]]:
    out = set()
    for line in lines:
        cols = line.split()
        if len(cols) < 4 or cols[3] != _ESTABLISHED:
            continue
        local, remote = cols[1], cols[2]
        if int(local.rsplit(":", 1)[1], 16) == port:
            out.add((local, remote))
    return out


def remote_text(conn: tuple[str, str]) -> str:
    """127.0.0.1:51234 from /proc/net/tcp's 0100007F:C804 (IPv6 addresses are shown as their port alone)."""
    address, port = conn[1].rsplit(":", 1)
    if len(address) == 8:
        host = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
        return f"{host}:{int(port, 16)}"
    return f"port {int(port, 16)}"


class ConnectionWatch:
    """Since the sleep began: how long each connection to the port has been open."""

    def __init__(self, present: set, now: float):
        self.first_seen = {conn: now for conn in present}
        self.old = set(present)  # open when the sleep began: idle keep-alives, until they outlive the timeout

    def waiting(self, conns: set, now: float):
        """A connection that has been open long enough to be a request waiting, or None."""
        self.first_seen = {conn: self.first_seen.get(conn, now) for conn in conns}
        for conn, since in self.first_seen.items():
            limit = KEEPALIVE_S + 1.0 if conn in self.old else WAITING_AFTER_S
            if now - since >= limit:
                return conn
        return None


class IdleClock:
    """When the server last did anything: requests in flight, or token counters that moved."""

    def __init__(self, idle_s: float, now: float):
        self.idle_s = idle_s
        self.last_activity = now
        self._counts = None

    def observe(self, figures: dict | None, now: float) -> None:
        if figures is None:  # /metrics unreadable: not idle as far as anyone can tell
            self.last_activity = now
            return
        counts = (figures.get("generation_tokens_total"), figures.get("prompt_tokens_total"))
        if (figures.get("running") or 0) + (figures.get("waiting") or 0) or counts != self._counts:
            self.last_activity = now
        self._counts = counts

    def reset(self, now: float) -> None:
        self.last_activity = now

    def due(self, now: float) -> bool:
        return now - self.last_activity >= self.idle_s


def supervise(record, say: Callable[[str], None], *, clock=time.monotonic, pause=time.sleep,
              should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run until the server of RECORD is gone (or SHOULD_STOP): sleep it when idle, wake it on a request."""
    from r1cli.errors import R1Error
    from r1cli.server import process, sleep, state

    root = process.local_url(record.host, record.port)
    idle = IdleClock(record.idle_sleep_s or float("inf"), clock())  # manual: never due
    poll_awake = min(5.0, max(0.5, (record.idle_sleep_s or 10.0) / 10))
    watch: ConnectionWatch | None = None
    next_check = 0.0
    while not should_stop():
        now = clock()
        current = state.load(record.port)
        if current is None or (current.pid, current.create_time) != (record.pid, record.create_time):
            return  # stopped (or replaced by another server)
        if current.asleep_level is not None:
            if watch is None:
                watch = ConnectionWatch(established(record.port), now)
            conn = watch.waiting(established(record.port), now)
            if conn is not None:
                try:
                    done = sleep.wake(current)
                    if not done.already:
                        say(f"a request from {remote_text(conn)} is waiting: woke the server in {done.seconds:.2f} s")
                except R1Error as exc:
                    say(f"could not wake the server: {exc.message}")
                idle.reset(clock())
                watch = None
            pause(POLL_ASLEEP_S)
            continue
        watch = None
        if now >= next_check:
            next_check = now + poll_awake
            if not state.is_alive(current):
                return
            if record.idle_sleep_s:  # manual (None): `r1 sleep` alone puts it to sleep
                idle.observe(sleep.read_metrics(root), now)
            if idle.due(now):
                try:
                    done = sleep.put_to_sleep(current, wait_s=poll_awake)
                    if not done.already:
                        freed = sleep.describe_memory(done.memory)
                        say(f"idle for {sleep.describe_duration(record.idle_sleep_s)}: asleep ({done.why}) in "
                            f"{done.seconds:.1f} s" + (f"; GPU memory freed: {freed}" if freed else ""))
                except R1Error as exc:  # busy after all, or the server said no: try again after another idle time
                    say(f"not put to sleep: {exc.message}")
                idle.reset(clock())
        pause(min(POLL_ASLEEP_S * 4, max(0.0, next_check - clock())))
