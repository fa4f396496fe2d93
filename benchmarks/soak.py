"""Soak test of the server lifecycle (issue 13), not part of CI: N `r1 serve demo -d` / `r1 stop` cycles,
then the kill cases, counting after each what is left: processes of the server's tree (and r1's
watchdog) still running, and ports the tree listened on still listening. The goal is 0 and 0.

Cases after the cycles:
  kill -9 api     `kill -9` of a detached server's API server: status must say orphaned, stop ends the rest
  kill -9 engine  `kill -9` of EngineCore: the server dies; stop removes what is left
  kill -9 r1      `kill -9` of a foreground r1 while vLLM loads: its watchdog stops the server
  kill -9 r1 up   the same once the server is ready
  SIGHUP          a foreground r1 hung up once the server is ready: it stops the server, exit 130

Usage: python benchmarks/soak.py [CYCLES] (default 20). Uses a state directory of its own and free ports;
prints one line per cycle or case and a total; exits 1 if anything was left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
HOME = tempfile.mkdtemp(prefix="r1-soak-")
ENV = {**os.environ, "R1_HOME": HOME}
R1 = [sys.executable, "-m", "r1cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def r1(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*R1, *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)


def record(port: int) -> dict | None:
    try:
        return json.loads((Path(HOME) / "servers" / f"{port}.json").read_text())
    except (OSError, ValueError):
        return None


def session_of(sid: int) -> list[psutil.Process]:
    """Every process of the server's session (r1 starts vLLM as a session leader), whoever its parent."""
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (OSError, psutil.Error):
            pass
    return out


def watchdogs(port: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "r1cli.server.watchdog" in cmd and f'"port": {port},' in cmd:
            out.append(proc)
    return out


def listening(ports: set[int]) -> set[int]:
    return {c.laddr.port for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports}


class Snapshot:
    """What one server holds while it runs: its session's processes, its watchdog, the ports they listen on."""

    def __init__(self, port: int):
        rec = record(port)
        self.sid = rec["pid"] if rec else None
        self.procs = session_of(self.sid) if self.sid else []
        self.procs += watchdogs(port)
        self.ports = {port}
        for proc in self.procs:
            try:
                self.ports |= {c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
            except psutil.Error:
                pass

    def left(self, wait: float = 0.0) -> tuple[list[psutil.Process], set[int]]:
        end = time.monotonic() + wait
        while True:
            procs = [p for p in self.procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if self.sid:
                procs += [p for p in session_of(self.sid) if p.pid not in {q.pid for q in procs}]
            ports = listening(self.ports)
            if (not procs and not ports) or time.monotonic() >= end:
                return procs, ports
            time.sleep(0.5)


RESULTS: list[tuple[str, float | None, int, int, str]] = []


def report(name: str, ready_s: float | None, snap: Snapshot, note: str = "", wait: float = 0.0) -> None:
    procs, ports = snap.left(wait)
    RESULTS.append((name, ready_s, len(procs), len(ports), note))
    ready = f"{ready_s:6.1f} s" if ready_s is not None else "     - "
    what = ", ".join(f"{p.pid} {p.name()}" for p in procs)
    print(f"{name:<16} ready {ready}  left: {len(procs)} processes, {len(ports)} listening ports"
          + (f"  [{what}] {sorted(ports)}" if procs or ports else "") + (f"  ({note})" if note else ""), flush=True)
    for proc in procs:  # leave the machine clean for the next case whatever happened
        try:
            proc.kill()
        except psutil.Error:
            pass


def serve_detached(port: int) -> float:
    t0 = time.monotonic()
    proc = r1("serve", "demo", "--port", str(port), "-d", "--timeout", "500")
    if proc.returncode != 0:
        raise SystemExit(f"r1 serve failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.monotonic() - t0


def cycle(i: int) -> None:
    port = free_port()
    ready = serve_detached(port)
    snap = Snapshot(port)
    stop = r1("stop", "--port", str(port))
    report(f"cycle {i}", ready, snap, "" if stop.returncode == 0 else f"stop exited {stop.returncode}")


def kill_api() -> None:
    port = free_port()
    ready = serve_detached(port)
    snap = Snapshot(port)
    os.kill(snap.sid, signal.SIGKILL)
    time.sleep(1)
    status = json.loads(r1("status", "--json").stdout)
    state = next((s["state"] for s in status["servers"] if s["port"] == port), None)
    stop = r1("stop", "--port", str(port))
    report("kill -9 api", ready, snap, f"status said {state}; stop exited {stop.returncode}")


def kill_engine() -> None:
    port = free_port()
    ready = serve_detached(port)
    snap = Snapshot(port)
    engine = next(p for p in snap.procs if p.name() == "VLLM::EngineCore")
    engine.kill()
    t0 = time.monotonic()
    state = None
    while time.monotonic() - t0 < 30:
        status = json.loads(r1("status", "--json").stdout)
        state = next((s["state"] for s in status["servers"] if s["port"] == port), "gone")
        if state != "ready":
            break
        time.sleep(1)
    seen = time.monotonic() - t0
    r1("stop", "--port", str(port))
    report("kill -9 engine", ready, snap, f"status said {state} after {seen:.1f} s")


def foreground(port: int) -> subprocess.Popen:
    return subprocess.Popen([*R1, "serve", "demo", "--port", str(port)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def wait_stage(proc: subprocess.Popen, port: int, ready: bool) -> float:
    """Until the server is ready (READY) or its EngineCore runs (loading)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 600:
        if proc.poll() is not None:
            raise SystemExit(f"foreground r1 ended ({proc.returncode})")
        rec = record(port)
        if rec and (rec.get("ready_at") if ready else
                    any(p.name() == "VLLM::EngineCore" for p in session_of(rec["pid"]))):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise SystemExit("no progress in 600 s")


def kill_r1(ready: bool) -> None:
    port = free_port()
    proc = foreground(port)
    seconds = wait_stage(proc, port, ready)
    snap = Snapshot(port)
    proc.kill()
    proc.wait()
    t0 = time.monotonic()
    procs, _ = snap.left(wait=60)
    note = f"tree gone {time.monotonic() - t0:.1f} s after the kill" if not procs else "tree still running after 60 s"
    report("kill -9 r1 up" if ready else "kill -9 r1", seconds if ready else None, snap, note)
    r1("stop", "--port", str(port))


def hangup() -> None:
    port = free_port()
    proc = foreground(port)
    seconds = wait_stage(proc, port, ready=True)
    snap = Snapshot(port)
    proc.send_signal(signal.SIGHUP)
    code = proc.wait(timeout=120)
    report("SIGHUP", seconds, snap, f"r1 exited {code}", wait=10)


def ours(proc: psutil.Process) -> bool:
    """Started under this soak's state directory (vLLM's leader inherits R1_HOME; the watchdog names it)."""
    try:
        return HOME in " ".join(proc.cmdline()) or proc.environ().get("R1_HOME") == HOME
    except psutil.Error:
        return False


def main() -> int:
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    before = {p.pid for p in psutil.process_iter()}
    print(f"soak: {cycles} serve/stop cycles and 5 kill cases; R1_HOME={HOME}", flush=True)
    t0 = time.monotonic()
    for i in range(1, cycles + 1):
        cycle(i)
    kill_api()
    kill_engine()
    kill_r1(ready=False)
    kill_r1(ready=True)
    hangup()
    procs = sum(r[2] for r in RESULTS)
    ports = sum(r[3] for r in RESULTS)
    stray = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before and ours(p)]
    readies = [r[1] for r in RESULTS if r[1] is not None]
    print(f"total: {len(RESULTS)} runs in {time.monotonic() - t0:.0f} s, ready in {min(readies):.1f}-{max(readies):.1f} s; "
          f"left {procs} processes and {ports} listening ports (goal 0 and 0); {len(stray)} stray r1/vLLM processes "
          "on the machine at the end")
    return 1 if procs or ports or stray else 0


if __name__ == "__main__":
    sys.exit(main())
