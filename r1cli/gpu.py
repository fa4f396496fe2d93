"""NVML -> plain dataclasses; "unavailable" is a value, not an exception.

pynvml (the nvidia-ml-py distribution) and psutil are imported inside `query()` only, so importing
this module stays cheap and works on machines without either; on a machine without NVML's library
(no NVIDIA driver) `query()` says so without importing pynvml at all (~15 ms: every `r1 status` there).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass
class GpuProcess:
    pid: int
    name: str
    used_mib: float | None  # None when NVML may not tell (no permission, WDDM)
    server_port: int | None = None  # set when the process belongs to an r1 server


@dataclass
class Gpu:
    index: int
    name: str
    uuid: str
    memory_used_mib: float
    memory_total_mib: float
    memory_used_pct: float
    utilization_pct: int | None
    temperature_c: int | None
    power_w: float | None
    compute_capability: tuple[int, int] | None
    processes: list[GpuProcess] = field(default_factory=list)
    # Unallocated memory as NVML reports it (total - reserved - used with the v2 API). Not simply
    # total - used: the driver's reserved share is neither used nor available.
    memory_free_mib: float | None = None


@dataclass
class NvmlReport:
    available: bool
    driver_version: str | None
    error: str | None
    gpus: list[Gpu] = field(default_factory=list)

    def to_json(self) -> dict:
        """The "nvml" object of `--json` output; the GPUs go apart, through gpus_json()."""
        return {"available": self.available, "driver_version": self.driver_version, "error": self.error}


def gpus_json(report: NvmlReport) -> list[dict]:
    out = []
    for gpu in report.gpus:
        item = asdict(gpu)
        cc = gpu.compute_capability
        item["compute_capability"] = list(cc) if cc is not None else None
        out.append(item)
    return out


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


LIBRARY = "nvml.dll" if os.name == "nt" else "libnvidia-ml.so.1"  # the name pynvml loads NVML by
NO_LIBRARY = f"NVIDIA driver not loaded ({LIBRARY} not found)"


def init_error(exc: BaseException, pynvml: Any = None) -> str:
    """One line, in plain words, saying why NVML could not start."""
    if isinstance(exc, ImportError):
        return "NVML unavailable: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    if pynvml is not None:
        words = {
            "NVMLError_LibraryNotFound": NO_LIBRARY,
            "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded (the kernel module is not running)",
            "NVMLError_NoPermission": "no permission to open the NVIDIA devices (/dev/nvidia*)",
            "NVMLError_LibRmVersionMismatch": "driver and NVML library versions differ (reboot after a driver update)",
            "NVMLError_GpuIsLost": "a GPU fell off the bus or stopped responding",
            "NVMLError_InsufficientPower": "a GPU's power cables are not connected",
        }
        for class_name, text in words.items():
            cls = getattr(pynvml, class_name, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                return f"NVML unavailable: {text}"
        nvml_error = getattr(pynvml, "NVMLError", None)
        if isinstance(nvml_error, type) and isinstance(exc, nvml_error):
            return _one_line(f"NVML unavailable: {exc}")
    return _one_line(f"NVML unavailable: {type(exc).__name__}: {exc}")


def query(server_pids: dict[int, int] | None = None) -> NvmlReport:
    """Every GPU NVML sees, with its compute processes; never raises.

    server_pids maps the pid of an r1 server to its port. vLLM loads the model in a child process
    (EngineCore), so a GPU process is marked when it or any of its ancestors is in server_pids.
    """
    server_pids = dict(server_pids or {})
    if _library_missing():
        return NvmlReport(False, None, f"NVML unavailable: {NO_LIBRARY}", [])
    try:
        import pynvml
    except ImportError as exc:
        return NvmlReport(False, None, init_error(exc), [])

    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - any failure to start is a value
        return NvmlReport(False, None, init_error(exc, pynvml), [])

    try:
        return _collect(pynvml, server_pids)
    except Exception as exc:  # noqa: BLE001
        return NvmlReport(False, None, _one_line(f"NVML query failed: {exc}"), [])
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _library_missing() -> bool:
    """True when pynvml would fail to load NVML's library (its nvmlInit: NVMLError_LibraryNotFound), found
    out as pynvml's loader does it on Linux (ctypes.CDLL of LIBRARY) without importing pynvml, and only
    where nvidia-ml-py is installed (else the import's error says that). False where pynvml is loaded
    already (it answers at once) and on Windows (pynvml looks in two places there)."""
    if os.name == "nt" or "pynvml" in sys.modules:
        return False
    import ctypes

    try:
        ctypes.CDLL(LIBRARY)
        return False
    except OSError:
        pass
    import importlib.util

    return importlib.util.find_spec("pynvml") is not None


def _field(pynvml: Any, fn, default=None):
    """One per-field query: NotSupported, NoPermission or anything else -> default."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return default


def _collect(pynvml: Any, server_pids: dict[int, int]) -> NvmlReport:
    driver = _field(pynvml, lambda: _text(pynvml.nvmlSystemGetDriverVersion()))
    count = pynvml.nvmlDeviceGetCount()
    gpus: list[Gpu] = []
    problems: list[str] = []
    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # noqa: BLE001 - one bad GPU should not hide the others
            problems.append(f"GPU {index}: {exc}")
            continue
        gpus.append(_gpu(pynvml, index, handle, server_pids))
    error = _one_line("; ".join(problems)) if problems else None
    return NvmlReport(True, driver, error, gpus)


def _memory(pynvml: Any, handle) -> tuple[float, float, float | None]:
    """(used, total, free) in MiB, as `nvidia-smi --query-gpu=memory.used,memory.total` shows them.

    The v1 call (nvmlDeviceGetMemoryInfo(handle)) counts driver/firmware-reserved memory as used
    (NVML docs, nvmlMemory_t: "used: Sum of Reserved and Allocated device memory"), so an idle A100
    shows ~900 MiB used. nvidia-smi reports the v2 figures, which keep reserved apart (nvmlMemory_v2_t
    has a `reserved` field; rust-nvml/nvml-wrapper#57 measured v2 used = 7.8 MB = nvidia-smi, v1 =
    912 MB on an A100). So: v2 first, v1 only when the driver or the bindings lack v2 (drivers < R510).
    """
    version = getattr(pynvml, "nvmlMemory_v2", None)
    info = None
    if version is not None:
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except Exception:  # noqa: BLE001 - FunctionNotFound / ArgumentVersionMismatch on old drivers
            info = None
    if info is None:
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
    free = getattr(info, "free", None)
    return info.used / MIB, info.total / MIB, (free / MIB if free is not None else None)


def _gpu(pynvml: Any, index: int, handle, server_pids: dict[int, int]) -> Gpu:
    name = _field(pynvml, lambda: _text(pynvml.nvmlDeviceGetName(handle)), "unknown")
    uuid = _field(pynvml, lambda: _text(pynvml.nvmlDeviceGetUUID(handle)), "unknown")
    used, total, free = _field(pynvml, lambda: _memory(pynvml, handle), (0.0, 0.0, None))
    pct = round(100.0 * used / total, 1) if total else 0.0
    util = _field(pynvml, lambda: int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
    temp = _field(pynvml, lambda: int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)))
    power = _field(pynvml, lambda: round(pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 1))  # mW -> W
    cc = _field(pynvml, lambda: tuple(int(x) for x in pynvml.nvmlDeviceGetCudaComputeCapability(handle)))
    procs = _field(pynvml, lambda: _processes(pynvml, handle, server_pids), [])
    return Gpu(
        index=index,
        name=name,
        uuid=uuid,
        memory_used_mib=round(used, 1),
        memory_total_mib=round(total, 1),
        memory_used_pct=pct,
        utilization_pct=util,
        temperature_c=temp,
        power_w=power,
        compute_capability=cc,
        processes=procs,
        memory_free_mib=round(free, 1) if free is not None else None,
    )


def _processes(pynvml: Any, handle, server_pids: dict[int, int]) -> list[GpuProcess]:
    out = []
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        pid = int(proc.pid)
        used = getattr(proc, "usedGpuMemory", None)  # None when not permitted
        out.append(
            GpuProcess(
                pid=pid,
                name=_process_name(pynvml, pid),
                used_mib=round(used / MIB, 1) if used is not None else None,
                server_port=_server_port(pid, server_pids),
            )
        )
    return out


def _process_name(pynvml: Any, pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001 - no psutil, gone, or a pid of another namespace
        pass
    name = _field(pynvml, lambda: _text(pynvml.nvmlSystemGetProcessName(pid)))
    return os.path.basename(name) if name else "unknown"


def _server_port(pid: int, server_pids: dict[int, int]) -> int | None:
    if not server_pids:
        return None
    if pid in server_pids:
        return server_pids[pid]
    try:
        import psutil

        for parent in psutil.Process(pid).parents():
            if parent.pid in server_pids:
                return server_pids[parent.pid]
    except Exception:  # noqa: BLE001
        pass
    return None


# --- which GPUs vLLM will use, their memory, and what a stop gave back -------------------------------


def visible(report: NvmlReport, cuda_visible: str | None = None) -> list[Gpu]:
    """The GPUs CUDA (and so vLLM) will use, in its order. CUDA_VISIBLE_DEVICES (read from the
    environment when not given) names them by index or UUID (a unique prefix will do); CUDA ignores
    the list from its first entry that names no GPU. Unset: all of them."""
    if cuda_visible is None:
        cuda_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cuda_visible is None:
        return list(report.gpus)
    out: list[Gpu] = []
    for item in cuda_visible.split(","):
        item = item.strip()
        if item.isdigit():
            found = [g for g in report.gpus if g.index == int(item)]
        else:
            found = [g for g in report.gpus if item and g.uuid.startswith(item if item.startswith(("GPU-", "MIG-"))
                                                                          else "GPU-" + item)]
        if len(found) != 1 or found[0] in out:
            break
        out.append(found[0])
    return out


def free_mib(g: Gpu) -> float:
    """Memory a new process can take: NVML's free figure (the driver's reserve is not free), else total - used."""
    return g.memory_free_mib if g.memory_free_mib is not None else g.memory_total_mib - g.memory_used_mib


def usable_mib(g: Gpu) -> float:
    """What CUDA calls the GPU's total (used + free, without the driver's reserve): the figure vLLM's
    --gpu-memory-utilization is a fraction of (an H100's 81,559 MiB is 79.18 GiB to CUDA)."""
    return g.memory_used_mib + g.memory_free_mib if g.memory_free_mib is not None else g.memory_total_mib


def server_usage(report: NvmlReport, port: int) -> dict[int, float]:
    """{GPU index: MiB} held by the processes of the r1 server on PORT (marked by `query(server_pids)`)."""
    held: dict[int, float] = {}
    for g in report.gpus:
        for p in g.processes:
            if p.server_port == port:
                held[g.index] = held.get(g.index, 0.0) + (p.used_mib or 0.0)
    return held


def memory_freed(before: NvmlReport, after: NvmlReport, held: dict[int, float], min_mib: float = 64.0) -> list[tuple[int, float]]:
    """[(GPU index, MiB freed)] between two reports: every GPU the server held memory on, and any other
    whose use fell by at least MIN_MIB (a process NVML could not attribute)."""
    used_after = {g.index: g.memory_used_mib for g in after.gpus}
    out = []
    for g in before.gpus:
        if g.index not in used_after:
            continue
        drop = max(0.0, g.memory_used_mib - used_after[g.index])
        if g.index in held or drop >= min_mib:
            out.append((g.index, drop))
    return out


def size_text(mib: float) -> str:
    """`65.4 GiB`, `912 MiB`, `2.5 MiB`: GiB from 1 GiB up, else MiB (never `0.0 GiB` for a small model)."""
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib:.1f} MiB" if mib < 10 else f"{mib:.0f} MiB"


def describe_freed(freed: list[tuple[int, float]]) -> str:
    """`GPU 0: 65.4 GiB, GPU 1: 65.4 GiB`."""
    return ", ".join(f"GPU {index}: {size_text(mib)}" for index, mib in freed)


def wait_released(before: NvmlReport, held: dict[int, float], timeout: float = 5.0, query_fn=None) -> NvmlReport:
    """NVML again once the driver has taken back what the server held: its processes are gone at once, their
    memory a moment later. Returns when each GPU gave back 90% of what the server's processes held (or, none
    marked, when use stopped falling), or after TIMEOUT seconds."""
    import time

    query_fn = query_fn or query
    start = {g.index: g.memory_used_mib for g in before.gpus}
    t0 = time.monotonic()
    last: dict[int, float] | None = None
    while True:
        after = query_fn()
        now = {g.index: g.memory_used_mib for g in after.gpus}
        given_back = bool(held) and all(mib > 0 and start.get(i, 0.0) - now.get(i, 0.0) >= 0.9 * mib for i, mib in held.items())
        # Where NVML could not tell what the server held (no processes marked), wait for steady use. Where it
        # could, steady use is no answer: Ray ends a --ray server's workers a while after their driver.
        steady = not held and now == last and time.monotonic() - t0 >= 1.0
        if given_back or steady or time.monotonic() - t0 > timeout:
            return after
        last = now
        time.sleep(0.25)


# --- a Ray cluster's GPUs (`r1 serve --ray`) ----------------------------------------------------------

def parse_ray_status(text: str) -> int | None:
    """The cluster's GPU count from `ray status`: its first usage line ` 0.0/16.0 GPU` (the cluster's total;
    per-node lines of `ray status -v` come after it). None when it shows no GPU line."""
    import re

    m = re.search(r"^\s*\d+(?:\.\d+)?/(\d+(?:\.\d+)?) GPU\s*$", text, re.M)
    return int(float(m.group(1))) if m else None


def ray_cluster_gpus(timeout: float = 20.0) -> tuple[int | None, str | None]:
    """(GPUs in the Ray cluster this machine belongs to, None) or (None, one line saying why not).

    A head started a moment ago answers "No cluster status" (exit 0) for a few seconds: asked again until
    it has one or TIMEOUT passes."""
    import shutil
    import subprocess
    import time

    ray = shutil.which("ray")
    if ray is None:
        return None, "Ray is not installed here (no `ray` command): the plan cannot count the cluster's GPUs"
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc = subprocess.run([ray, "status"], capture_output=True, text=True, check=False,
                                  timeout=max(1.0, deadline - time.monotonic()), stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, _one_line(f"`ray status` did not answer: {exc}")
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, _one_line(f"`ray status` failed ({last[0]}): start the head first (`ray start --head`)")
        if "No cluster status" not in proc.stdout:
            break
        if time.monotonic() + 1.0 > deadline:
            return None, "`ray status` has no cluster status yet (a head that just started takes a few seconds)"
        time.sleep(1.0)
    count = parse_ray_status(proc.stdout)
    if count is None:
        return None, "`ray status` shows no GPUs in the cluster"
    return count, None


def freed_since(before: NvmlReport | None, port: int) -> str | None:
    """What a stop gave back, per GPU (`GPU 0: 65.4 GiB`), from BEFORE (a query marking the server's
    processes) and NVML now; None without NVML or where nothing was held."""
    if before is None or not before.available or not before.gpus:
        return None
    held = server_usage(before, port)
    freed = memory_freed(before, wait_released(before, held), held)
    return describe_freed(freed) or None
