"""`r1 serve --ray` on one 2-GPU node (`pytest -m gpu2` on the device, Ray carried there by
benchmarks/gpu/ray_node.sh): a real Ray head with both GPUs, r1's plan counting the cluster's GPUs, tensor
parallel 2 over Ray's workers, ask, status marking the workers, and stop giving both GPUs back while the
Ray head stays up (r1 stops vLLM, not the cluster).

Ray's workers are not in the server's process tree: the raylet starts them, and Ray ends them once their
driver (vLLM's engine) is gone. These tests are what shows whether r1 still finds them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import gpu_common as g
from conftest import run_r1

pytestmark = [pytest.mark.gpu, pytest.mark.gpu2, pytest.mark.timeout(1800)]
TWO = {"CUDA_VISIBLE_DEVICES": "0,1"}


def _ray(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    ray = shutil.which("ray")
    assert ray, "Ray is not installed here (no `ray` on PATH): benchmarks/gpu/ray_node.sh carries and installs it"
    return subprocess.run([ray, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **TWO})


def _gpu_processes() -> str:
    """For a failure message: every GPU process with its parent chain's names."""
    import psutil

    from r1cli import gpu

    lines = []
    for card in gpu.query().gpus:
        for p in card.processes:
            try:
                chain = " < ".join(q.name() for q in psutil.Process(p.pid).parents()[:4])
            except psutil.Error:
                chain = "?"
            lines.append(f"GPU {card.index}: {p.pid} {p.name} {p.used_mib} MiB port={p.server_port} ({chain})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def ray_head():
    _ray("stop", "--force")
    started = _ray("start", "--head", "--num-gpus", "2", "--disable-usage-stats", "--include-dashboard=false")
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield
    finally:
        _ray("stop", "--force")


@pytest.fixture(scope="module")
def served(ray_head):
    with g.served("--tp", "2", "--ray", env=TWO) as server:
        yield server


def test_the_plan_counts_the_ray_clusters_gpus(served):
    _, proc = served
    err = proc.stderr
    assert re.search(r"^r1: plan: tp 2 on 2 GPUs, context window 32,768, \d+ API servers?$", err, re.M), err[-4000:]
    assert "ray status" not in err, err[-4000:]  # the cluster's GPUs were counted: no note saying why not


def test_ask_answers_through_rays_workers(served):
    port, _ = served
    ask = run_r1("ask", "What is 2+3?", "--json", "--max-tokens", "32", "--base-url", f"http://127.0.0.1:{port}/v1",
                 timeout=300)
    assert ask.returncode in (0, 4), ask.stderr  # random weights: there may be no boxed answer (4)


def test_status_marks_the_ray_workers_on_both_gpus(served):
    port, _ = served
    data, server = g.status(port, env=TWO)
    assert server["state"] == "ready"
    for index in (0, 1):
        ours = [p for p in data["gpus"][index]["processes"] if p["server_port"] == port]
        assert ours, f"GPU {index}: no process marked as the server's\n{_gpu_processes()}"


def test_stop_gives_both_gpus_back_and_leaves_the_ray_head_up(served):
    port, _ = served
    proc = g.stop(port, env=TWO)
    assert proc.returncode == 0, proc.stderr
    freed = re.search(r"; GPU memory freed: GPU 0: ([\d.]+) GiB, GPU 1: ([\d.]+) GiB$", proc.stderr.strip())
    assert freed and min(float(freed.group(1)), float(freed.group(2))) > 40, f"{proc.stderr}\n{_gpu_processes()}"
    used = g.nvml_used()
    assert used[0] < 1024 and used[1] < 1024, f"{used}\n{_gpu_processes()}"
    status = _ray("status")
    assert status.returncode == 0 and re.search(r"\b2\.0 GPU", status.stdout), status.stdout + status.stderr
