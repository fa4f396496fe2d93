"""Keep-alive inside vLLM's own API server process (`r1 serve --idle-sleep`): the request itself wakes the
engine, idle is counted where the requests are, and vLLM's engine client is the truth about sleep.

server/devguard.py (the middleware r1 hands vLLM with `--middleware`) calls `KeepAlive.admit()` before each
inference request and `done()` after it; probes (/health, /metrics, /v1/models...) never come here. The
engine is vLLM's `app.state.engine_client` (AsyncLLM): `sleep(level, mode)`, `wake_up(tags)`,
`is_sleeping()`, `collective_rpc("reload_weights")`, `reset_prefix_cache()`, the same in vLLM 0.25 and 0.32
except that 0.32's wake_up returns whether it is fully awake (0.25: None) and vLLM 0.25's gauge says awake
after a partial wake: r1 reads neither.

With `--api-servers N` the N processes share one small file in the server's state dir (SharedClock):
- its modification time is the idle clock: each inference request touches it when it comes and when it
  ends, and a process with requests running touches it on each timer tick;
- its lock (flock) keeps sleep and requests apart: a process holds it shared while it has requests in
  flight, and a sleep or a wake holds it exclusive. So the engine is put to sleep only when no process has
  a request in flight, once (the others find the file saying asleep), and a request that comes during the
  sleep waits for it, then wakes the engine (any process can), none lost, none doubled;
- its content says at which level r1 put the engine to sleep and since when (the engine tells whether it
  sleeps, not the level; a level-2 wake needs the weights reloaded).

Nothing polls while the engine sleeps: the timer waits a whole idle time between looks at the file (an
fstat and a read). vLLM imports this module (through devguard) in each API server process: it imports
nothing of r1 and nothing slow.
"""

import asyncio
import errno
import fcntl
import inspect
import json
import os
import time

CONFIG_ENV = "R1_KEEPALIVE"  # JSON from r1 serve: {"idle_s": float|null, "clock": path, "weights_bytes", "replicas"}
GIB = 2**30
LOCK_POLL_S = 0.005  # while another process sleeps or wakes the engine (a second at most): cancel-safe waits


def choose_level(weights_bytes, replicas: int, available_bytes: float) -> tuple[int, str]:
    """Level 1 when host RAM holds every replica's weights twice over plus 4 GiB (the rest of the machine
    still needs room), else 2; and why, in a clause."""
    if weights_bytes is None:
        return 2, "the weights' size is unknown, so level 2: they are dropped and reloaded from disk on wake"
    need = weights_bytes * max(1, replicas)
    have = f"{available_bytes / GIB:.1f} GiB of host RAM free"
    if available_bytes >= 2 * need + 4 * GIB:
        return 1, f"level 1: {have} holds the {need / GIB:.1f} GiB of weights with room to spare"
    return 2, (f"level 2: {have} is too little to park {need / GIB:.1f} GiB of weights with room to spare, "
               "so they are dropped and reloaded from disk on wake")


def available_ram() -> float:
    """Host RAM free for parking weights (MemAvailable), read without psutil."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    return 0.0


class WakeFailed(Exception):
    """The engine could not be woken: each request that waited for it gets this, as a 503 with the cause."""


class Busy(Exception):
    """Requests stayed in flight (in some API server process) for the whole wait: no sleep."""


class SharedClock:
    """The file the server's API server processes share: idle clock (mtime), lock, and r1's sleep note."""

    def __init__(self, path: str):
        self.path = path
        self.inflight_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # held shared while requests run here
        self.transition_fd = os.open(path, os.O_RDWR)  # held exclusive for a sleep or a wake

    def touch(self) -> None:
        os.utime(self.inflight_fd)

    def idle_for(self) -> float:
        return max(0.0, time.time() - os.fstat(self.inflight_fd).st_mtime)

    def note(self) -> dict:
        """{"level": 1|2, "since": epoch, "why": str} while r1 has the engine asleep; {} awake."""
        data = os.pread(self.inflight_fd, 4096, 0)
        try:
            return json.loads(data) if data else {}
        except ValueError:
            return {}

    def write(self, note: dict) -> None:
        data = json.dumps(note).encode() if note else b""
        os.ftruncate(self.transition_fd, 0)
        os.pwrite(self.transition_fd, data, 0)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


async def _lock(fd: int, kind: int, deadline: float | None = None) -> bool:
    """Take the lock, waiting (cancel-safe, no thread left holding it) until DEADLINE (monotonic); False then."""
    while not _try_lock(fd, kind):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(LOCK_POLL_S)
    return True


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


class KeepAlive:
    """One API server process's part: admission of inference requests, the idle timer, sleep and wake."""

    def __init__(self, engine, clock: SharedClock, idle_s: float | None, weights_bytes=None, replicas: int = 1,
                 say=None):
        self.engine = engine
        self.clock = clock
        self.idle_s = idle_s  # None: manual (`r1 sleep` only)
        self.weights_bytes = weights_bytes
        self.replicas = replicas
        self.say = say or (lambda text: None)
        self.inflight = 0
        self._admission = asyncio.Lock()
        self._failure: tuple[float, str] | None = None  # (monotonic, cause) of the last failed wake
        self.timer: asyncio.Task | None = None
        self.timer_error: str | None = None  # the last failure of the timer (it restarts)
        self.timer_restarts = 0
        self.sleeps = self.wakes = 0  # done by this process
        clock.touch()  # the server has just come up: the idle time counts from here, not from the start of its load

    # ---------------------------------------------------------------------------------------- requests
    async def admit(self) -> None:
        """Before an inference request goes on: the engine is awake (woken if r1 put it to sleep) and stays
        awake until `done()`. Raises WakeFailed when the wake this request waited for failed."""
        arrived = time.monotonic()
        async with self._admission:
            if self._failure is not None and self._failure[0] >= arrived:
                raise WakeFailed(self._failure[1])  # it failed while this request waited: no second try now
            if self.inflight == 0:
                while True:
                    await _lock(self.clock.inflight_fd, fcntl.LOCK_SH)
                    if not self.clock.note():
                        break
                    _unlock(self.clock.inflight_fd)
                    await asyncio.shield(self._wake_task())
            self.inflight += 1
        self.clock.touch()

    def done(self) -> None:
        self.inflight -= 1
        self.clock.touch()
        if self.inflight == 0:
            _unlock(self.clock.inflight_fd)

    # ---------------------------------------------------------------------------------------- sleep, wake
    async def sleep(self, level: int | None = None, wait_s: float = 0.0, *, only_if_idle: bool = False) -> dict:
        """Put the engine to sleep once no process has a request in flight (waiting up to WAIT_S, else Busy).
        ONLY_IF_IDLE (the timer): and only if the idle clock is still due once the lock is held."""
        t0 = time.monotonic()
        if not await _lock(self.clock.transition_fd, fcntl.LOCK_EX, t0 + wait_s):
            raise Busy(f"requests stayed in flight for {wait_s:g} s")
        try:
            note = self.clock.note()
            if note:
                return {**note, "seconds": 0.0, "already": True}
            if only_if_idle and (self.idle_s is None or self.clock.idle_for() < self.idle_s):
                return {}
            if level is None:
                level, why = choose_level(self.weights_bytes, self.replicas, available_ram())
            else:
                why = f"level {level}, as asked"
            started = time.monotonic()
            note = {"level": level, "since": time.time(), "why": why}
            # Written first: the engine says it sleeps before its sleep() returns (on an H100, `r1 status` once
            # read "asleep" with no level in between). No request gets in meanwhile: this lock keeps them out.
            self.clock.write(note)
            try:
                # mode "wait": a request that reached the engine without this lock (none should) finishes first.
                if "mode" in inspect.signature(self.engine.sleep).parameters:
                    await self.engine.sleep(level, mode="wait")
                else:
                    await self.engine.sleep(level)
            except Exception:
                if not await self.engine.is_sleeping():  # asleep all the same: the note stays for a request to wake it
                    self.clock.write({})
                raise
            self.sleeps += 1
            return {**note, "seconds": time.monotonic() - started, "already": False}
        finally:
            _unlock(self.clock.transition_fd)

    def _wake_task(self) -> asyncio.Future:
        return asyncio.ensure_future(self.wake())

    async def wake(self) -> dict:
        """Wake the engine if it sleeps (level 2: weights, reload_weights, KV cache, then a fresh prefix cache)."""
        await _lock(self.clock.transition_fd, fcntl.LOCK_EX)
        try:
            note = self.clock.note()
            if not note and not await self.engine.is_sleeping():
                return {"level": None, "seconds": 0.0, "already": True}
            level = note.get("level") or 1
            started = time.monotonic()
            try:
                if level == 2:
                    await self.engine.wake_up(["weights"])
                    await self.engine.collective_rpc("reload_weights")
                    await self.engine.wake_up(["kv_cache"])
                else:
                    await self.engine.wake_up(None)
                await self.engine.reset_prefix_cache()
            except Exception as exc:  # noqa: BLE001 - every waiting request is told, none hangs
                cause = f"the model could not be woken: {type(exc).__name__}: {exc}"
                self._failure = (time.monotonic(), cause)
                self.say(cause)
                raise WakeFailed(cause) from None
            self.clock.write({})
            self._failure = None
            self.wakes += 1
            seconds = time.monotonic() - started
            self.say(f"woke the model (it slept at level {level}) in {seconds:.2f} s")
            return {"level": level, "seconds": seconds, "already": False}
        finally:
            _unlock(self.clock.transition_fd)

    async def state(self) -> dict:
        """The engine's truth (is_sleeping), r1's note (level, since), and this process's timer."""
        sleeping = bool(await self.engine.is_sleeping())
        note = self.clock.note()
        return {"sleeping": sleeping, "level": note.get("level") if sleeping else None,
                "since": note.get("since") if sleeping else None, "why": note.get("why") if sleeping else None,
                "idle_s": self.idle_s, "idle_for_s": round(self.clock.idle_for(), 3), "in_flight": self.inflight,
                "pid": os.getpid(), "timer": {"running": self.timer is not None and not self.timer.done(),
                                              "restarts": self.timer_restarts, "error": self.timer_error}}

    # ---------------------------------------------------------------------------------------- the timer
    def start(self) -> None:
        if self.idle_s is not None and (self.timer is None or self.timer.done()):
            self.timer = asyncio.get_running_loop().create_task(self._run_timer())

    async def _run_timer(self) -> None:
        """The idle timer; a failure is recorded (shown by `r1 status`) and the timer goes on."""
        while True:
            try:
                await self._tick_forever()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - never die silently: say it, count it, go on
                self.timer_error = f"{type(exc).__name__}: {exc}"
                self.timer_restarts += 1
                self.say(f"idle timer failed ({self.timer_error}); it restarts")
                await asyncio.sleep(min(self.idle_s, 5.0))

    async def _tick_forever(self) -> None:
        while True:
            if self.inflight:
                self.clock.touch()  # a long answer is activity for every process
                await asyncio.sleep(max(0.05, self.idle_s / 4))
                continue
            if self.clock.note():
                await asyncio.sleep(self.idle_s)  # asleep: nothing to count until a request wakes it
                continue
            left = self.idle_s - self.clock.idle_for()
            if left > 0:
                await asyncio.sleep(left + 0.01)
                continue
            try:
                done = await self.sleep(only_if_idle=True)
            except Busy:
                done = {}
            if done and not done.get("already"):
                self.say(f"idle for {self.idle_s:g} s: asleep ({done['why']}) in {done['seconds']:.1f} s")
            await asyncio.sleep(min(1.0, self.idle_s / 4))  # busy elsewhere, or just slept
