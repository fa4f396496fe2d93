"""r1cli.gpu's figures for the plan and for `r1 stop`: which GPUs CUDA will use, their memory, what a stop
gave back, and a Ray cluster's GPU count. NVML reports are built from a real H100's figures
(../shared/gpu/README.md: 67,337 of 81,559 MiB used while serving, `VLLM::EngineCore` holding 66,848 MiB,
480 MiB after SIGTERM); the real NVML run of the same code is tests/gpu/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r1cli import gpu


def card(index: int, used: float, total: float = 81_559.0, procs=(), free: float | None = None) -> gpu.Gpu:
    return gpu.Gpu(index=index, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{index}f3a9c1e-77d2", memory_used_mib=used,
                   memory_total_mib=total, memory_used_pct=round(100 * used / total, 1), utilization_pct=0,
                   temperature_c=30, power_w=70.0, compute_capability=(9, 0), processes=list(procs),
                   memory_free_mib=free)


def report(*cards: gpu.Gpu) -> gpu.NvmlReport:
    return gpu.NvmlReport(True, "580.95", None, list(cards))


FOUR = report(card(0, 0), card(1, 0), card(2, 0), card(3, 0))


@pytest.mark.parametrize("value, expected", [
    (None, [0, 1, 2, 3]),
    ("", []),
    ("-1", []),
    ("2", [2]),
    ("3,1", [3, 1]),  # CUDA's order is the variable's
    ("0,7,1", [0]),  # CUDA stops at the first entry that names no GPU
    ("1,1", [1]),  # a repeat is invalid too
    ("GPU-2f3a9c1e", [2]),  # a UUID prefix
    ("2f3a9c1e-77d2,0", [2, 0]),  # without the GPU- prefix
])
def test_visible_follows_cuda_visible_devices(value, expected, monkeypatch):
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert [g.index for g in gpu.visible(FOUR)] == expected


def test_usable_memory_is_cudas_total_not_nvmls():
    idle = card(0, used=0.0, free=79.18 * 1024)  # NVML v2: the driver's ~479 MiB reserve is neither
    assert gpu.usable_mib(idle) == pytest.approx(81_080, abs=1)
    assert gpu.free_mib(idle) == pytest.approx(81_080, abs=1)
    old_driver = card(0, used=480.0)  # no v2 figures: free is total - used
    assert gpu.usable_mib(old_driver) == 81_559.0 and gpu.free_mib(old_driver) == 81_079.0


SERVING = report(card(0, 67_337.0, procs=[gpu.GpuProcess(1048, "VLLM::EngineCore", 66_848.0, server_port=8000),
                                         gpu.GpuProcess(2211, "python3", 489.0, None)]),
                 card(1, 3_000.0, procs=[gpu.GpuProcess(3001, "python3", 2_990.0, None)]))
STOPPED = report(card(0, 480.0), card(1, 3_000.0))


def test_server_usage_is_its_own_processes():
    assert gpu.server_usage(SERVING, 8000) == {0: 66_848.0}
    assert gpu.server_usage(SERVING, 9000) == {}


def test_freed_names_the_gpus_the_server_held():
    freed = gpu.memory_freed(SERVING, STOPPED, gpu.server_usage(SERVING, 8000))
    assert freed == [(0, 66_857.0)]
    assert gpu.describe_freed(freed) == "GPU 0: 65.3 GiB"


def test_freed_counts_a_gpu_whose_process_nvml_could_not_name():
    """In some containers NVML lists no processes (their pids are another namespace's): the drop tells."""
    before = report(card(0, 67_337.0), card(1, 66_000.0), card(2, 500.0))
    after = report(card(0, 480.0), card(1, 480.0), card(2, 480.0))
    assert gpu.describe_freed(gpu.memory_freed(before, after, {})) == "GPU 0: 65.3 GiB, GPU 1: 64.0 GiB"


def test_a_held_gpu_is_named_even_when_the_driver_has_not_given_back_yet():
    assert gpu.memory_freed(SERVING, SERVING, {0: 66_848.0}) == [(0, 0.0)]


def test_wait_released_waits_for_the_driver():
    """What NVML shows after SIGTERM: the processes go at once, the memory a moment later."""
    readings = iter([SERVING, report(card(0, 40_000.0), card(1, 3_000.0)), STOPPED, STOPPED])
    after = gpu.wait_released(SERVING, {0: 66_848.0}, timeout=10, query_fn=lambda: next(readings))
    assert after is STOPPED


def test_wait_released_waits_for_marked_processes_that_end_late():
    """`--ray`: the server's engine is gone at once, Ray ends the workers it marked a while later."""
    readings = iter([SERVING] * 8 + [STOPPED])  # two seconds unchanged at 0.25 s intervals
    after = gpu.wait_released(SERVING, {0: 66_848.0}, timeout=10, query_fn=lambda: next(readings))
    assert after is STOPPED


def test_wait_released_without_marked_processes_waits_for_steady_use():
    calls = []

    def query():
        calls.append(1)
        return STOPPED

    assert gpu.wait_released(SERVING, {}, timeout=10, query_fn=query) is STOPPED
    assert len(calls) >= 4  # steady for a second at 0.25 s intervals


def test_freed_since_says_nothing_without_nvml():
    assert gpu.freed_since(None, 8000) is None
    assert gpu.freed_since(gpu.NvmlReport(False, None, "NVML unavailable: ...", []), 8000) is None


# --- Ray ------------------------------------------------------------------------------------------------
# `ray status` as Ray 2.60 printed it on this machine (tests/data/ray: a head started with --num-gpus 2, then 0;
# a head asked a moment after it started; no head at all).
RAY = Path(__file__).parent / "data" / "ray"


@pytest.mark.parametrize("name, expected", [("ray-2.60-one-node-2-gpus.txt", 2),
                                            ("ray-2.60-one-node-2-gpus-verbose.txt", 2),
                                            ("ray-2.60-one-node-cpu-only.txt", None),
                                            ("ray-2.60-head-just-started.txt", None)])
def test_parse_ray_status(name, expected):
    assert gpu.parse_ray_status((RAY / name).read_text()) == expected


# Older Ray prints "Usage:" where 2.60 prints "Total Usage:" (python/ray/autoscaler/_private/util.py,
# format_info_string and format_info_string_no_node_types: usage lines are f" {used}/{total} {resource}");
# these also have GPUs in use and two nodes, which one idle machine can't show.
RAY_NODE_TYPES = """======== Autoscaler status: 2026-11-26 10:00:00.000000 ========
Node status
---------------------------------------------------------------
Healthy:
 1 head
 1 gpu-worker
Pending:
 (no pending nodes)
Recent failures:
 (no failures)

Resources
---------------------------------------------------------------

Usage:
 0.0/128.0 CPU
 0.0/16.0 GPU
 0.00/1000.000 GiB memory
 0.00/200.000 GiB object_store_memory

Demands:
 (no resource demands)
"""
RAY_NO_NODE_TYPES = """======== Cluster status: 2026-11-26 10:00:00.000000 ========
Node status
---------------------------------------------------------------
 2 node(s) with resources: {'CPU': 64.0, 'GPU': 8.0}

Resources
---------------------------------------------------------------
Usage:
 8.0/128.0 CPU
 2.0/16.0 GPU

Demands:
 (no resource demands)
"""
RAY_CPU_ONLY = RAY_NO_NODE_TYPES.replace(" 2.0/16.0 GPU\n", "")


@pytest.mark.parametrize("text, expected", [(RAY_NODE_TYPES, 16), (RAY_NO_NODE_TYPES, 16), (RAY_CPU_ONLY, None),
                                            ("", None)])
def test_parse_ray_status_older_format(text, expected):
    assert gpu.parse_ray_status(text) == expected


def fake_ray(tmp_path, monkeypatch, *answers: tuple[str, int]) -> None:
    """A `ray` on PATH replaying captured answers of the real one, one per call (a head that is still starting
    can't be produced on demand in CI, which has no Ray): (file in tests/data/ray, exit status)."""
    script = ["#!/bin/sh", f'n=$(cat "{tmp_path}/calls" 2>/dev/null || echo 0); echo $((n + 1)) >"{tmp_path}/calls"']
    for index, (name, status) in enumerate(answers):
        stream = ">&2" if status else ""
        script.append(f'[ "$n" -ge {index} ] && next=\'cat "{RAY / name}" {stream}; exit {status}\'')
    script.append('eval "$next"')
    (tmp_path / "ray").write_text("\n".join(script) + "\n")
    (tmp_path / "ray").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def test_a_head_that_just_started_is_asked_again(tmp_path, monkeypatch):
    fake_ray(tmp_path, monkeypatch, ("ray-2.60-head-just-started.txt", 0), ("ray-2.60-one-node-2-gpus.txt", 0))
    assert gpu.ray_cluster_gpus(timeout=10) == (2, None)
    assert (tmp_path / "calls").read_text().strip() == "2"


def test_a_head_that_stays_without_status_is_named(tmp_path, monkeypatch):
    fake_ray(tmp_path, monkeypatch, ("ray-2.60-head-just-started.txt", 0))
    assert gpu.ray_cluster_gpus(timeout=1.5) == (
        None, "`ray status` has no cluster status yet (a head that just started takes a few seconds)")


def test_no_head_says_start_one(tmp_path, monkeypatch):
    fake_ray(tmp_path, monkeypatch, ("ray-2.60-no-cluster.txt", 1))
    count, note = gpu.ray_cluster_gpus(timeout=5)
    assert count is None
    assert note.startswith("`ray status` failed (ConnectionError: Could not find any running Ray instance.")
    assert note.endswith("start the head first (`ray start --head`)")


def test_a_cpu_only_cluster_has_no_gpus(tmp_path, monkeypatch):
    fake_ray(tmp_path, monkeypatch, ("ray-2.60-one-node-cpu-only.txt", 0))
    assert gpu.ray_cluster_gpus(timeout=5) == (None, "`ray status` shows no GPUs in the cluster")


def test_ray_not_installed_is_one_line(monkeypatch):
    """This machine has no Ray: the plan is told so in one line, and goes on."""
    monkeypatch.setenv("PATH", "/nonexistent")
    count, note = gpu.ray_cluster_gpus()
    assert count is None
    assert note == "Ray is not installed here (no `ray` command): the plan cannot count the cluster's GPUs"
