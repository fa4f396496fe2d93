"""What the GPU tier's tests share: the model, nvidia-smi's figures, a process that holds GPU memory, a
running server's status, and load to make its engines busy.

The model is $R1_GPU_MODEL (default /tmp/r1-1.5b: DeepSeek-R1-Distill-Qwen-1.5B's exact shape with random
weights, built on the device by ../shared/gpu's setup.sh), so answers are junk: the tests assert tokens,
timings, stages, the plan and memory, never answer text.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import free_port, run_r1
from r1cli import gpu
from r1cli.client import http

MODEL = os.environ.get("R1_GPU_MODEL", "/tmp/r1-1.5b")
NAME = "DeepSeek-R1-Distill-Qwen-1.5B"
START_TIMEOUT = 900  # seconds: a cold start with torch.compile took 97 s on an H100; two engines compile in parallel


def require_model() -> None:
    assert (Path(MODEL) / "config.json").is_file(), (
        f"R1_GPU_MODEL={MODEL} has no config.json: build it on the device first (../shared/gpu/README.md, "
        "setup.sh makes /tmp/r1-1.5b), or point R1_GPU_MODEL at a model folder")


def smi() -> dict[int, tuple[float, float]]:
    """{index: (used MiB, total MiB)} from `nvidia-smi --query-gpu=memory.used,memory.total`."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used,memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split(",") for line in out.strip().splitlines()]
    return {int(i): (float(used), float(total)) for i, used, total in rows}


def nvml_used() -> dict[int, float]:
    """{index: used MiB} from r1's own NVML reading."""
    report = gpu.query()
    assert report.available, report.error
    return {g.index: g.memory_used_mib for g in report.gpus}


@contextlib.contextmanager
def hog(gib: float, device: int = 0):
    """A CUDA process (torch) holding GIB GiB on DEVICE while the block runs."""
    ready = Path(f"/tmp/r1-gpu-hog-{os.getpid()}-{device}.ready")
    ready.unlink(missing_ok=True)
    code = (f"import torch, time; x = torch.empty({int(gib * 2**30)}, dtype=torch.uint8, device='cuda:{device}'); "
            f"x.fill_(1); torch.cuda.synchronize(); open({str(ready)!r}, 'w').close(); time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, f"the memory-holding process died: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < end, "the memory-holding process took over 120 s"
            time.sleep(0.2)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        ready.unlink(missing_ok=True)


def serve(port: int, *args: str, env: dict | None = None):
    """`r1 serve MODEL -d` on PORT; the finished process (stdout: the URL, stderr: stages, plan, summary)."""
    require_model()
    return run_r1("serve", MODEL, "--served-name", NAME, "--port", str(port), "-d", "--timeout", str(START_TIMEOUT),
                  *args, env=env, timeout=START_TIMEOUT + 60)


@contextlib.contextmanager
def served(*args: str, env: dict | None = None):
    """`r1 serve MODEL -d ARGS` on a free port for the block: (port, the finished serve process); stopped at
    the end, also when the start or a test failed."""
    port = free_port()
    try:
        proc = serve(port, *args, env=env)
        assert proc.returncode == 0, proc.stderr[-6000:]
        yield port, proc
    finally:
        stop(port, env=env)


def status(port: int, env: dict | None = None) -> tuple[dict, dict]:
    """(`r1 status --json` document, the server on PORT)."""
    proc = run_r1("status", "--json", env=env, timeout=60)
    data = json.loads(proc.stdout)
    [server] = [s for s in data["servers"] if s["port"] == port]
    return data, server


def stop(port: int, env: dict | None = None):
    return run_r1("stop", "--port", str(port), env=env, timeout=120)


class Load:
    """REQUESTS long generations (ignore_eos) sent at once through the completions endpoint, so that every
    engine has requests running while a test reads the server's metrics."""

    def __init__(self, base_url: str, requests: int = 64, max_tokens: int = 4000):
        self.base_url, self.max_tokens = base_url, max_tokens
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._one, daemon=True) for _ in range(requests)]

    def _one(self) -> None:
        body = {"model": NAME, "prompt": "Count to a thousand: 1, 2,", "max_tokens": self.max_tokens,
                "ignore_eos": True}
        try:
            resp = http.request("POST", self.base_url + "/completions", body=body, timeout=600)
            if resp.status != 200:
                self.errors.append(f"HTTP {resp.status}")
        except http.Unreachable as exc:
            self.errors.append(str(exc))

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for thread in self.threads:
            thread.join(600)
