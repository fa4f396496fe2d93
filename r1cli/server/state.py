"""One record per running server in the state directory, guarded by a lock per port.

A record is data read from a file anyone may have edited: it is checked field by field (a wrong type
is reported with the file's path and skipped, never a TypeError), and fields it does not know are
ignored, so a record written by a newer r1 stays readable.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

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
    # The process group r1 started the tree in (start_new_session: the leader's pid). None in records
    # of r1 versions before it was kept.
    pgid: int | None = None
    # Put in the environment of the tree (process.SERVER_ID_ENV): a process that carries it is ours even
    # when its leader is gone, and a pgid reused by someone else's process does not carry it.
    server_id: str | None = None
    # Sleep mode (server/sleep.py): whether vLLM runs with it, and the idle time after which r1's middleware
    # puts it to sleep (None: only `r1 sleep`). Whether it sleeps is vLLM's to say, not the record's.
    sleep_mode: bool = False
    idle_sleep_s: float | None = None
    weights_bytes: float | None = None  # of one replica: what level 1 parks in host RAM, per replica
    replicas: int = 1
    # What r1's control routes in the server need (server/devguard.py): the record is mode 0600, and no
    # output of r1 shows it (public()).
    secret: str | None = None


class BadRecord(NamedTuple):
    path: Path
    reason: str  # one line: what is wrong with it


# What each field may hold. bool is not an int here, and a float field takes an int (JSON has one number).
_NUMBER = (int, float)
_KINDS: dict[str, tuple] = {
    "pid": (int,), "create_time": _NUMBER, "port": (int,), "host": (str,), "url": (str,), "model": (str,),
    "served_name": (str,), "log_path": (str,), "started_at": _NUMBER, "argv": (list,), "backend": (str,),
    "api_key": (bool,), "ready_at": (*_NUMBER, type(None)), "pgid": (int, type(None)),
    "server_id": (str, type(None)), "sleep_mode": (bool,), "idle_sleep_s": (*_NUMBER, type(None)),
    "weights_bytes": (*_NUMBER, type(None)), "replicas": (int,), "secret": (str, type(None)),
}
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list", bool: "true or false",
               type(None): "null"}


class RecordError(ValueError):
    """A record's content is not a server record: the reason, in one line."""


def from_json(data: object) -> ServerRecord:
    """Check a record's parsed JSON as data; raise RecordError naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise RecordError(f"not a JSON object but {type(data).__name__}")
    values = {}
    for name, kinds in _KINDS.items():
        if name not in data:
            continue
        value = data[name]
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = ["a number", *(_KIND_NAMES[k] for k in kinds[2:])] if kinds[:2] == _NUMBER else \
                [_KIND_NAMES[k] for k in kinds]
            want = " or ".join(names)
            raise RecordError(f"{name!r} should be {want}, not {json.dumps(value)[:40]}")
        values[name] = float(value) if kinds[:2] == _NUMBER and value is not None else value
    missing = [f.name for f in fields(ServerRecord)
               if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise RecordError("missing " + ", ".join(repr(m) for m in missing))
    if not all(isinstance(a, str) for a in values.get("argv", [])):
        raise RecordError("'argv' should be a list of strings")
    for name in ("pid", "pgid"):
        if values.get(name) is not None and values[name] < 1:
            raise RecordError(f"{name!r} should be a process id, not {values[name]}")
    if not 0 < values["port"] < 65536:
        raise RecordError(f"'port' should be a port number, not {values['port']}")
    return ServerRecord(**values)  # fields this r1 does not know (a newer r1's) are left out


def public(record: ServerRecord) -> dict:
    """The record as r1 shows it or hands it to another process's argv: without the server's secret."""
    data = asdict(record)
    data.pop("secret", None)
    return data


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
    _write(_record_path(record.port), asdict(record))


def _write(path: Path, data: dict) -> None:
    import tempfile  # here: reading the records (every `r1 status`) needs none of it

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(path: Path) -> ServerRecord:
    """The record in PATH; RecordError (with the reason) when it is not one, OSError when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RecordError("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise RecordError(f"not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from exc
    record = from_json(data)
    if path.stem.isdigit() and int(path.stem) != record.port:
        raise RecordError(f"it names port {record.port}, its file name port {path.stem}")
    return record


def load(port: int) -> ServerRecord | None:
    path = _record_path(port)
    try:
        return _read(path)
    except FileNotFoundError:
        return None
    except (OSError, RecordError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise R1Error(f"the server record {path} is unreadable: {reason}", hint=f"remove it: rm {path}") from exc


def load_all() -> tuple[list[ServerRecord], list[BadRecord]]:
    """All readable records (sorted by port), and the files that are not records, each with why."""
    records, bad = [], []
    for path in sorted(servers_dir().glob("*.json")):
        try:
            records.append(_read(path))
        except FileNotFoundError:
            continue  # removed since the listing: a server stopped meanwhile
        except (OSError, RecordError) as exc:
            bad.append(BadRecord(path, exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)))
    return sorted(records, key=lambda r: r.port), bad


def remove(port: int) -> None:
    """Remove the port's record, keeping it as the last server's (`last`): its log outlives it."""
    path = _record_path(port)
    with contextlib.suppress(OSError, RecordError):
        _write(_last_path(), asdict(_read(path)))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _last_path() -> Path:
    return config.state_dir() / "last-server.json"  # beside servers/, whose *.json are the live records


def last() -> ServerRecord | None:
    """The record of the server removed last (stopped, or failed to start), or None."""
    path = _last_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return from_json(data)
    except (OSError, ValueError):  # none yet, or not a record: as if none
        return None


def last_log(port: int | None = None) -> tuple[Path, str | None] | None:
    """The log of the last server r1 ran (on PORT, when given) and how to name it: the last removed
    record's log when it is kept ("r1-demo on port 8000"), else the newest `server-PORT.log` r1 kept
    (named None: only its path says whose it is); None when there is none."""
    record = last()
    if record is not None and (port is None or record.port == port) and Path(record.log_path).is_file():
        return Path(record.log_path), f"{record.served_name} on port {record.port}"
    logs = sorted(logs_dir().glob(f"server-{port if port is not None else '*'}.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    return logs[-1], None


# psutil's create_time is boot time (/proc/stat btime, whole seconds, recomputed from the wall clock)
# plus the start in ticks: two processes can see the same start 1 s apart when the clock is adjusted.
# A pid reused within 2 s of the record's start is what this still tells apart from the server.
SAME_START_S = 2.0


def is_alive(record: ServerRecord) -> bool:
    """True if the record's process still runs and is the one we started."""
    import psutil

    try:
        proc = psutil.Process(record.pid)
        return abs(proc.create_time() - record.create_time) <= SAME_START_S and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def served_models() -> set[str]:
    """The models live r1 servers serve (as each record names them: a Hub id or a folder), lowercased."""
    records, _ = load_all()
    return {r.model.lower().rstrip("/") for r in records if is_alive(r)}


def _machine_lock_dir() -> Path | None:
    """Per user, shared by every R1_HOME: a port is one per machine, not one per state directory.
    None when the folder is not this user's alone (someone else made it first): then only the state
    directory's lock is taken."""
    import stat
    import tempfile

    path = Path(tempfile.gettempdir()) / f"r1-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return path


def _flock(path: Path) -> int | None:
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def port_lock(port: int):
    """Held while an `r1 serve` starts a server on this port: a second one fails at once instead of racing.

    Two locks: this state directory's (it guards the record) and one per user for the whole machine, so
    a serve under another R1_HOME cannot start a second vLLM on the port while the first one loads (vLLM
    binds its port with SO_REUSEADDR and listens only when loaded: until then the port looks free).
    """
    fds = []
    try:
        machine = _machine_lock_dir()
        for path in (servers_dir() / f"{port}.lock", *([machine / f"port-{port}.lock"] if machine else [])):
            fd = _flock(path)
            if fd is None:
                raise UsageError(f"another `r1 serve` is starting a server on port {port}",
                                 hint="wait for it, or pick another port with --port")
            fds.append(fd)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def pick(port: int | None) -> ServerRecord:
    """The record for --port, or the only one there is."""
    from r1cli.errors import NoServerError

    records, _ = load_all()
    if port is not None:
        records = [r for r in records if r.port == port]
    if not records:
        where = f" on port {port}" if port is not None else ""
        from r1cli import machine

        raise NoServerError(f"no r1 server is recorded{where}", hint=machine.serve_fix(port))
    if len(records) > 1:
        raise UsageError(f"{len(records)} servers are running (ports {', '.join(str(r.port) for r in records)})",
                         hint="pick one with --port")
    return records[0]
