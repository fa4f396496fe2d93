"""r1cli.gpu: the real NVML failure of a machine without a driver, and a stand-in pynvml for GPUs."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from r1cli import gpu
from conftest import real_nvml_works

MIB = 1024 * 1024




@pytest.fixture
def no_driver(monkeypatch):
    """A machine without an NVIDIA driver: pynvml's own loader finds no libnvidia-ml.so.1. Where a driver
    is installed, the library load alone is made to fail as it fails there (pynvml's CDLL raises the
    same OSError), so these tests run, and run the real pynvml, on every machine."""
    if real_nvml_works():
        import ctypes

        import pynvml

        def cdll(name, *args, **kwargs):
            if "nvidia-ml" in str(name):
                raise OSError(f"{name}: cannot open shared object file: No such file or directory")
            return ctypes.CDLL(name, *args, **kwargs)

        monkeypatch.setattr(pynvml, "CDLL", cdll)
        monkeypatch.setattr(pynvml, "nvmlLib", None)


def test_real_nvml_failure_is_a_value(no_driver):
    report = gpu.query()
    assert report.available is False
    assert report.gpus == []
    assert report.driver_version is None
    assert report.error.startswith("NVML unavailable: ")
    assert "\n" not in report.error
    # This machine has nvidia-ml-py but no libnvidia-ml.so.1.
    assert report.error == "NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)"
    assert report.to_json() == {"available": False, "driver_version": None, "error": report.error}
    assert gpu.gpus_json(report) == []
    json.dumps(report.to_json())


def test_real_nvml_failure_with_server_pids(no_driver):
    report = gpu.query({os.getpid(): 8000})
    assert report.available is False


def test_missing_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    report = gpu.query()
    assert report.available is False
    assert report.error == "NVML unavailable: nvidia-ml-py is not installed (pip install nvidia-ml-py)"


# --- a stand-in pynvml for the GPU-present branch -------------------------------------------------


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


def fake_pynvml(devices, procs, driver="550.54.15", init_error=None):
    """devices: list of dicts; procs: {index: [(pid, used_bytes_or_None)]}; fields set to an
    exception class raise it."""
    m = types.ModuleType("pynvml")
    m.calls = []
    for cls in (NVMLError, NVMLError_NotSupported, NVMLError_NoPermission, NVMLError_DriverNotLoaded,
                NVMLError_LibraryNotFound):
        setattr(m, cls.__name__, cls)
    m.NVML_TEMPERATURE_GPU = 0
    m.nvmlMemory_v2 = 0x2000028

    def value(index, key):
        v = devices[index][key]
        if isinstance(v, type) and issubclass(v, Exception):
            raise v()
        return v

    def init():
        m.calls.append("init")
        if init_error:
            raise init_error()

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlSystemGetDriverVersion = lambda: driver
    m.nvmlDeviceGetCount = lambda: len(devices)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: value(h, "name")
    m.nvmlDeviceGetUUID = lambda h: value(h, "uuid")

    def memory(h, version=None):
        m.calls.append(("memory", h, version))
        used, total, reserved = value(h, "memory")
        if version:
            return types.SimpleNamespace(total=total, reserved=reserved, used=used, free=total - reserved - used)
        return types.SimpleNamespace(total=total, used=used + reserved, free=total - reserved - used)

    m.nvmlDeviceGetMemoryInfo = memory
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=value(h, "util"), memory=0)
    m.nvmlDeviceGetTemperature = lambda h, sensor: value(h, "temp")
    m.nvmlDeviceGetPowerUsage = lambda h: value(h, "power_mw")
    m.nvmlDeviceGetCudaComputeCapability = lambda h: value(h, "cc")
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in procs.get(h, [])
    ]

    def process_name(pid):
        raise NVMLError_NoPermission()

    m.nvmlSystemGetProcessName = process_name
    return m


H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-11111111-2222-3333-4444-555555555555",
    "memory": (40960 * MIB, 81559 * MIB, 512 * MIB),  # used (v2), total, reserved
    "util": 97,
    "temp": 61,
    "power_mw": 312_456,
    "cc": (9, 0),
}
T4 = {
    "name": b"Tesla T4",  # old bindings return bytes
    "uuid": b"GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "memory": (0, 15360 * MIB, 256 * MIB),
    "util": NVMLError_NotSupported,
    "temp": NVMLError_NotSupported,
    "power_mw": NVMLError_NotSupported,
    "cc": NVMLError_NotSupported,
}


@pytest.fixture
def two_gpus(monkeypatch):
    me = os.getpid()
    module = fake_pynvml([H100, T4], {0: [(me, 38 * 1024 * MIB), (2**22 + 7, None)]})
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def test_two_gpus_fields(two_gpus):
    report = gpu.query()
    assert report.available is True and report.error is None
    assert report.driver_version == "550.54.15"
    assert [g.index for g in report.gpus] == [0, 1]
    h100, t4 = report.gpus
    assert h100.name == "NVIDIA H100 80GB HBM3"
    assert h100.uuid == "GPU-11111111-2222-3333-4444-555555555555"
    assert h100.memory_used_mib == 40960.0  # the v2 figure, without the 512 MiB reserved
    assert h100.memory_total_mib == 81559.0
    assert h100.memory_used_pct == round(100 * 40960 / 81559, 1) == 50.2
    assert h100.memory_free_mib == 81559 - 512 - 40960
    assert h100.utilization_pct == 97 and h100.temperature_c == 61
    assert h100.power_w == 312.5
    assert h100.compute_capability == (9, 0)
    assert ("memory", 0, two_gpus.nvmlMemory_v2) in two_gpus.calls
    assert two_gpus.calls[-1] == "shutdown"


def test_not_supported_fields_are_none(two_gpus):
    t4 = gpu.query().gpus[1]
    assert t4.name == "Tesla T4" and t4.uuid.startswith("GPU-aaaa")
    assert t4.utilization_pct is None and t4.temperature_c is None
    assert t4.power_w is None and t4.compute_capability is None
    assert t4.memory_used_mib == 0.0 and t4.memory_used_pct == 0.0
    assert t4.processes == []


def test_processes_and_server_port(two_gpus):
    me = os.getpid()
    report = gpu.query({me: 8001})
    mine, other = report.gpus[0].processes
    assert mine.pid == me and mine.used_mib == 38 * 1024.0 and mine.server_port == 8001
    assert mine.name == Path(sys.executable).name or mine.name.startswith("python")
    # a pid psutil cannot see and NVML may not name; memory hidden (not permitted)
    assert other.pid == 2**22 + 7 and other.used_mib is None and other.server_port is None
    assert other.name == "unknown"


def test_server_port_through_a_parent(two_gpus):
    # vLLM's EngineCore holds the memory; the r1 record has the API server, its parent.
    report = gpu.query({os.getppid(): 8002})
    assert report.gpus[0].processes[0].server_port == 8002


def test_without_server_pids_nothing_is_marked(two_gpus):
    assert all(p.server_port is None for p in gpu.query().gpus[0].processes)


def test_v1_memory_when_v2_is_missing(monkeypatch):
    module = fake_pynvml([H100], {})
    v1 = module.nvmlDeviceGetMemoryInfo

    def old_driver(h, version=None):
        if version:
            raise NVMLError("Function Not Found")
        return v1(h)

    module.nvmlDeviceGetMemoryInfo = old_driver
    monkeypatch.setitem(sys.modules, "pynvml", module)
    g = gpu.query().gpus[0]
    assert g.memory_used_mib == 40960 + 512  # v1 counts reserved as used


def test_json(two_gpus):
    report = gpu.query({os.getpid(): 8001})
    data = gpu.gpus_json(report)
    text = json.dumps({"nvml": report.to_json(), "gpus": data})
    back = json.loads(text)
    assert back["nvml"] == {"available": True, "driver_version": "550.54.15", "error": None}
    assert back["gpus"][0]["compute_capability"] == [9, 0]
    assert back["gpus"][1]["compute_capability"] is None
    assert back["gpus"][0]["processes"][0]["server_port"] == 8001
    assert set(back["gpus"][0]) >= {"index", "name", "uuid", "memory_used_mib", "memory_total_mib",
                                    "memory_used_pct", "utilization_pct", "temperature_c", "power_w",
                                    "compute_capability", "processes"}


@pytest.mark.parametrize(
    "error, text",
    [
        (NVMLError_DriverNotLoaded, "NVML unavailable: NVIDIA driver not loaded (the kernel module is not running)"),
        (NVMLError_NoPermission, "NVML unavailable: no permission to open the NVIDIA devices (/dev/nvidia*)"),
        (NVMLError_LibraryNotFound, "NVML unavailable: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)"),
    ],
)
def test_init_errors_in_words(monkeypatch, error, text):
    module = fake_pynvml([], {}, init_error=error)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    report = gpu.query()
    assert (report.available, report.error, report.gpus) == (False, text, [])


def test_a_lost_gpu_does_not_hide_the_others(monkeypatch):
    module = fake_pynvml([H100, H100], {})

    def handle(i):
        if i == 1:
            raise NVMLError("GPU is lost")
        return i

    module.nvmlDeviceGetHandleByIndex = handle
    monkeypatch.setitem(sys.modules, "pynvml", module)
    report = gpu.query()
    assert report.available and len(report.gpus) == 1
    assert report.error == "GPU 1: GPU is lost"
    assert module.calls[-1] == "shutdown"
