"""One record per running server in the state directory, guarded by a lock per port."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from r1cli import config
from r1cli.errors import R1Error, UsageError


@dataclass
class ServerRecord:
    pid: int
    create_time: float  # with the pid, tells our process from a later one that reused its pid
    port: int
    host: str
    url: str  # the OpenAI base URL, ending in /v1
    model: str
    served_name: str
    log_path: str
    started_at: float
    argv: list[str] = field(default_factory=list)  # redacted
    backend: str = "gpu"  # "gpu" | "cpu"
    api_key: bool = False  # whether the server needs one (the key itself is never stored)
    ready_at: float | None = None


def servers_dir() -> Path:
    path = config.state_dir() / "servers"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def logs_dir() -> Path:
    path = config.state_dir() / "logs"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _record_path(port: int) -> Path:
    return servers_dir() / f"{port}.json"


def save(record: ServerRecord) -> None:
    """Atomic write: a reader never sees half a record."""
    path = _record_path(record.port)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(record), fh, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(port: int) -> ServerRecord | None:
    path = _record_path(port)
    try:
        data = json.loads(path.read_text())
        return ServerRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise R1Error(f"the server record {path} is unreadable ({exc.__class__.__name__})",
                      hint=f"remove it: rm {path}") from exc


def load_all() -> tuple[list[ServerRecord], list[Path]]:
    """All readable records (sorted by port) and the paths of corrupt ones."""
    records, corrupt = [], []
    for path in sorted(servers_dir().glob("*.json")):
        try:
            records.append(ServerRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            corrupt.append(path)
    return sorted(records, key=lambda r: r.port), corrupt


def remove(port: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        _record_path(port).unlink()


def is_alive(record: ServerRecord) -> bool:
    """True if the record's process still runs and is the one we started."""
    import psutil

    try:
        proc = psutil.Process(record.pid)
        return abs(proc.create_time() - record.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


@contextlib.contextmanager
def port_lock(port: int):
    """Held while an `r1 serve` starts a server on this port: a second one fails at once instead of racing."""
    path = servers_dir() / f"{port}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another `r1 serve` is starting a server on port {port}",
                             hint="wait for it, or pick another port with --port") from None
        yield
    finally:
        os.close(fd)


def pick(port: int | None) -> ServerRecord:
    """The record for --port, or the only one there is."""
    from r1cli.errors import NoServerError

    records, _ = load_all()
    if port is not None:
        records = [r for r in records if r.port == port]
    if not records:
        where = f" on port {port}" if port is not None else ""
        raise NoServerError(f"no r1 server is recorded{where}", hint="start one with `r1 serve`")
    if len(records) > 1:
        raise UsageError(f"{len(records)} servers are running (ports {', '.join(str(r.port) for r in records)})",
                         hint="pick one with --port")
    return records[0]
