"""Does `r1 chat` keep up with the fastest server? curl -N vs r1 chat (piped and in a pty), same stream.

Starts benchmarks/replay_server.py (an 8k-token answer with a think block, one SSE event per token),
then, in the same run and alternating, reads the stream with:

- ``curl -N`` (stdout to a pipe): from starting curl to the last answer token on its output;
- ``r1 chat`` with piped stdin: from writing the question to the last answer token on stdout
  (r1 is started and connected first: Python's start-up is not part of the answer's time);
- ``r1 chat`` in a pseudo-terminal (pexpect): from pressing Enter to the last answer token on screen.

Prints the median end-to-end times, the ratio r1/curl, and the time per token over the answer's first
and last thousand tokens (markers in the text say when they reach the reader). With --rate the server
is paced (tokens/s) instead of going as fast as it can.

    .venv/bin/python benchmarks/chat_render.py [--runs 5] [--tokens 8000] [--rate 0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pexpect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import replay_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Clock:
    """Scans the bytes a reader gets for the answer markers and notes when each first appears."""

    def __init__(self, marks: list[int]):
        self.wanted = {replay_server.marker(i).encode(): i for i in marks}
        self.seen: dict[int, float] = {}
        self.tail = b""

    def feed(self, data: bytes, now: float) -> None:
        window = self.tail + data
        for m, i in self.wanted.items():
            if i not in self.seen and m in window:
                self.seen[i] = now
        self.tail = window[-16:]

    def done(self, last: int) -> bool:
        return last in self.seen


def _read_until(fd_read, clock: Clock, last: int, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not clock.done(last):
        if time.monotonic() > deadline:
            raise TimeoutError("the last answer token never arrived")
        data = fd_read()
        if not data:
            raise EOFError("the reader's output ended before the last answer token")
        clock.feed(data, time.monotonic())
    return clock.seen[last]


def run_curl(url: str, marks: list[int]) -> dict:
    body = json.dumps({"model": "replay", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    clock = Clock(marks)
    t0 = time.monotonic()
    proc = subprocess.Popen(["curl", "-sN", url + "/chat/completions", "-H", "Content-Type: application/json",
                             "-d", body], stdout=subprocess.PIPE)
    end = _read_until(lambda: os.read(proc.stdout.fileno(), 1 << 16), clock, marks[-1])
    proc.wait()
    return {"t0": t0, "end": end, "seen": clock.seen}


def _r1_env() -> dict:
    env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", "R1_HOME": "/tmp/r1-bench-home"}
    env.pop("NO_COLOR", None)
    return env


def run_r1_piped(url: str, marks: list[int]) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "r1cli", "chat", "--base-url", url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=_r1_env())
    time.sleep(1.5)  # started, model resolved, waiting on stdin
    clock = Clock(marks)
    t0 = time.monotonic()
    proc.stdin.write(b"hi\n")
    proc.stdin.flush()
    end = _read_until(lambda: os.read(proc.stdout.fileno(), 1 << 16), clock, marks[-1])
    proc.stdin.close()
    proc.wait(timeout=30)
    return {"t0": t0, "end": end, "seen": clock.seen}


def run_r1_pty(url: str, marks: list[int]) -> dict:
    child = pexpect.spawn(sys.executable, ["-m", "r1cli", "chat", "--base-url", url], env=_r1_env(), cwd=str(ROOT),
                          dimensions=(50, 160), timeout=60)
    child.expect_exact(b">>> ")
    child.send(b"hi")
    child.expect_exact(b"hi")
    clock = Clock(marks)
    t0 = time.monotonic()
    child.send(b"\r")

    def read() -> bytes:
        try:
            return child.read_nonblocking(1 << 16, timeout=60)
        except pexpect.EOF:
            return b""

    end = _read_until(read, clock, marks[-1])
    # The stats line and the next prompt may already have come with the last read: just leave.
    child.send(b"\x04")
    child.expect(pexpect.EOF)
    child.close()
    return {"t0": t0, "end": end, "seen": clock.seen}


def per_token_us(seen: dict[int, float], a: int, b: int) -> float:
    return (seen[b] - seen[a]) / (b - a) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=8000)
    ap.add_argument("--think", type=int, default=1500)
    ap.add_argument("--rate", type=float, default=0.0, help="pace the server (tokens/s); 0: as fast as it can")
    args = ap.parse_args(argv)

    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "replay_server.py"), "--port", str(port), "--tokens",
                               str(args.tokens), "--think", str(args.think), "--rate", str(args.rate)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[1]
        n_answer = args.tokens - args.think
        marks = replay_server.answer_markers(n_answer)
        k = marks[1]
        runners = {"curl -N": run_curl, "r1 chat (piped)": run_r1_piped, "r1 chat (pty)": run_r1_pty}
        results: dict[str, list[dict]] = {name: [] for name in runners}
        for _ in range(args.runs):
            for name, fn in runners.items():  # alternate, so drifts in machine load hit every reader alike
                results[name].append(fn(url, marks))
        pace = f"{args.rate:g} tokens/s" if args.rate else "as fast as it can"
        print(f"replay: {args.tokens} tokens ({args.think} reasoning, {n_answer} answer), {pace}; "
              f"median of {args.runs} runs; {os.cpu_count()} CPUs")
        print(f"{'reader':<18} {'end-to-end':>11} {'ratio':>7} {'first 1k answer tok':>20} {'last 1k answer tok':>19}")
        base = statistics.median(r["end"] - r["t0"] for r in results["curl -N"])
        for name, runs in results.items():
            total = statistics.median(r["end"] - r["t0"] for r in runs)
            first = statistics.median(per_token_us(r["seen"], marks[0], k) for r in runs)
            last = statistics.median(per_token_us(r["seen"], marks[2], marks[3]) for r in runs)
            print(f"{name:<18} {total * 1000:>9.1f} ms {total / base:>6.2f}x {first:>15.1f} us/tok {last:>14.1f} us/tok")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
