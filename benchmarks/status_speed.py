"""How long `r1 status` takes with no server running, as a ratio to `python -c pass` measured in the same run.

    python benchmarks/status_speed.py [-n 20] [--json] [--importtime]

Target: `r1 status` with no server within 4x `python -c pass` (the same venv's interpreter start), median
against median (issue 3 first asked for <= 250 ms wall; a ratio holds on a slow or busy machine too). Both
commands run as real processes, interleaved, with the default state directory lookup (platformdirs) pointed
at a fresh empty folder (so no record is read), with stdout to a pipe, bytecode cached (as installed) and
no server on the default port (checked first: the default probe must be refused, not answered). Each run's wall time and CPU time (user +
system, from the kernel's accounting of the child: steadier than the wall on a loaded machine) are taken;
prints the median, min and max of each, and the ratios of the medians. --importtime adds the modules that
`r1 status` imports, costliest first (python -X importtime, cumulative). Exit 1 if the wall ratio is over
the target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 4.0
ROOT = Path(__file__).resolve().parents[1]


def _r1_command() -> list[str]:
    script = Path(sys.executable).with_name("r1")
    return [str(script)] if script.exists() else [sys.executable, "-m", "r1cli"]


def _time(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(wall s, CPU s, exit status) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def _port_8000_free() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 8000)) != 0


def _imports(env: dict, top: int = 15) -> list[tuple[str, float]]:
    """The modules `r1 status` imports at the top of its import tree (python -X importtime), by cumulative
    ms, costliest first."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "r1cli", "status"], env=env,
                          capture_output=True, text=True)
    found = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        if len(name) - len(name.lstrip()) == 1:  # depth 0: imported by r1 itself, not by another module
            found.append((name.strip(), int(parts[1]) / 1000))
    return sorted(found, key=lambda item: -item[1])[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs of each command (default 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--importtime", action="store_true", help="also list what r1 status imports")
    args = parser.parse_args()

    if not _port_8000_free():
        print("something listens on 127.0.0.1:8000: stop it first (this measures status with no server)",
              file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="r1-status-bench-")
    # Without PYTHONDONTWRITEBYTECODE: an installed r1 has its bytecode cached, and compiling r1cli's sources
    # on every run (~20 ms) is not what a user pays; the warm-up runs write the caches.
    env = {k: v for k, v in os.environ.items()
           if k not in ("R1_BASE_URL", "R1_API_KEY", "R1_HOME", "PYTHONDONTWRITEBYTECODE")}
    # The default state directory (platformdirs, as a user without R1_HOME pays for), but an empty one.
    env["XDG_STATE_HOME"] = home
    r1 = _r1_command() + ["status"]
    baseline = [sys.executable, "-c", "pass"]

    # Warm-up: the first runs pay for a cold page cache and the bytecode.
    for _ in range(2):
        _time(baseline, env)
        *_, code = _time(r1, env)
    if code != 3:
        print(f"`r1 status` exited {code}, expected 3 (no server)", file=sys.stderr)
        return 2

    names = ("python -c pass", "r1 status")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.n):
        for name, argv in zip(names, (baseline, r1)):
            w, c, _ = _time(argv, env)
            wall[name].append(w)
            cpu[name].append(c)

    med = {name: statistics.median(wall[name]) for name in names}
    cpu_med = {name: statistics.median(cpu[name]) for name in names}
    ratio = med["r1 status"] / med["python -c pass"]
    cpu_ratio = cpu_med["r1 status"] / cpu_med["python -c pass"] if cpu_med["python -c pass"] else None
    result = {
        "runs": args.n,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_s": {k: round(min(v), 4) for k, v in wall.items()},
        "max_s": {k: round(max(v), 4) for k, v in wall.items()},
        "cpu_median_s": {k: round(v, 4) for k, v in cpu_med.items()},
        "difference_s": round(med["r1 status"] - med["python -c pass"], 4),
        "ratio": round(ratio, 2),
        "cpu_ratio": round(cpu_ratio, 2) if cpu_ratio is not None else None,
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
    }
    if args.importtime:
        result["imports_ms"] = dict(_imports(env))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.n} runs each, {os.cpu_count()} CPUs (load {result['load_average'][0]:g}), Python {result['python']}")
        for name in names:
            print(f"  {name:<16} median {med[name] * 1000:6.1f} ms   (min {min(wall[name]) * 1000:6.1f}, "
                  f"max {max(wall[name]) * 1000:6.1f}); CPU median {cpu_med[name] * 1000:6.1f} ms")
        print(f"  difference       {result['difference_s'] * 1000:6.1f} ms")
        print(f"  CPU ratio        {result['cpu_ratio']}x")
        verdict = "within" if result["within_target"] else "OVER"
        print(f"  r1 status: {ratio:.2f}x python -c pass (medians): {verdict} the {TARGET_RATIO:g}x target")
        for name, ms in result.get("imports_ms", {}).items():
            print(f"    imports {name:<28} {ms:6.1f} ms")
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
