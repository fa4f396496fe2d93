"""`r1 route`: vLLM's router (vllm-router, a Rust load balancer) in front of r1 servers on several machines.

The workers are checked first (each must answer /health, list a model on /v1/models with the key given,
and all must serve the same model); the router then runs as the leader of its own process group, its
output in a log, with a record like a server's (backend "router"), so `r1 stop` and `r1 logs` work on it.
Adding and removing workers at run time goes through the router's own worker API (/workers,
/add_worker, /remove_worker), after the same check.

The key: vllm-router hands each client's Authorization header on to the worker it picks, so clients of
the router use the workers' key, and the router itself is given none (its --api-key would be an argv
anyone on the machine can read). r1 needs the key only to check the workers.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from r1cli.client import http
from r1cli.english import counted
from r1cli.errors import NoServerError, StartFailedError, UsageError
from r1cli.server import process, state

# vllm-router's policies for one pool of workers (its kv_aware needs vLLM's KV events, sticky_least_loaded
# sessions: neither is offered here).
POLICIES = ("cache_aware", "round_robin", "power_of_two", "consistent_hash", "random")
# R1's prompts share long prefixes (the chat template, a conversation so far): cache_aware keeps them on
# the worker whose KV cache holds them. Measured against round_robin on the demo: see the README.
DEFAULT_POLICY = "cache_aware"
BACKEND = "router"  # the record's backend: what status, stop and logs tell a router by
DISTRIBUTION = "vllm-router"
INSTALL_HINT = "install the router: pip install 'r1cli[route]' (vllm-router, vLLM's load balancer)"
# A worker that sleeps (`r1 serve --idle-sleep`) answers /health while asleep and while waking; the one
# check that could time out is a health check made while a wake holds the GPU copy-in: vllm-router's
# default timeout (5 s) is raised past a level-2 wake of a large model, and a worker is marked unhealthy
# only after 3 such failures in a row (its default), checked every HEALTH_INTERVAL_S.
HEALTH_TIMEOUT_S = 30
HEALTH_INTERVAL_S = 10
CHECK_TIMEOUT_S = 5.0


def installed() -> bool:
    """Whether vllm-router is importable by this Python (the router runs as `python -m vllm_router.launch_router`)."""
    return importlib.util.find_spec("vllm_router") is not None


def require_installed() -> None:
    if not installed():
        raise UsageError("r1 route needs vllm-router, which is not installed", hint=INSTALL_HINT)


def worker_root(text: str) -> str:
    """A worker named as URL or HOST:PORT (http://10.0.0.2:8000/v1, 10.0.0.2:8000, :8000 for this
    machine), as the router names it: scheme, host and port, no path."""
    given = text.strip()
    url = given if "://" in given else "http://" + ("127.0.0.1" + given if given.startswith(":") else given)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or port is None \
            or parts.path.rstrip("/") not in ("", "/v1") or parts.query:
        raise UsageError(f"{text!r} is not a worker address",
                         hint="name each r1 server as HOST:PORT or http://HOST:PORT (e.g. 10.0.0.2:8000)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


@dataclass
class Worker:
    """What one worker answered: /health's status, the models /v1/models lists, and why it cannot serve."""
    root: str
    health: int | None = None
    models: list[str] = field(default_factory=list)
    model_root: str | None = None  # the first model's checkpoint (/v1/models' root), for the record
    problem: str | None = None  # one line; None when it can serve
    needs_key: bool = False


def check_worker(root: str, api_key: str | None, timeout: float = CHECK_TIMEOUT_S) -> Worker:
    found = Worker(root)
    try:
        found.health = http.request("GET", root + "/health", timeout=timeout).status
        resp = http.request("GET", root + "/v1/models", headers=http.auth_headers(api_key), timeout=timeout)
    except http.Unreachable as exc:
        found.problem = f"{exc}: is `r1 serve` running there, on a network address (--host 0.0.0.0)?"
        return found
    if resp.status == 401:
        found.needs_key = True
        found.problem = "refused the API key" if api_key else "needs an API key"
        return found
    try:
        data = resp.json() if resp.status == 200 else None
        items = [m for m in data.get("data") if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        items = None
    if items is None:
        found.problem = f"/v1/models answered {resp.status} without a model list: not a vLLM server"
    elif not items:
        found.problem = "serves no model"
    else:
        found.models = [m["id"] for m in items]
        found.model_root = items[0].get("root")
        if found.health != 200:
            found.problem = f"/health answered {found.health}: not healthy"
    return found


def check_workers(roots: list[str], api_key: str | None) -> list[Worker]:
    """Each worker checked in its own thread (one that does not answer costs its timeout once, not once each)."""
    results: dict[str, Worker] = {}

    def work(root: str) -> None:
        results[root] = check_worker(root, api_key)

    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in roots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[r] for r in roots]


def refuse(workers: list[Worker], key_source: str | None, served: str | None = None) -> str:
    """The one model WORKERS serve (and SERVED, the router's, when given); a worker that cannot serve, or
    one that serves another model, is a StartFailedError or UsageError naming it."""
    bad = [w for w in workers if w.problem]
    if bad:
        lines = [f"{w.root}: {w.problem}" for w in bad]
        if any(w.needs_key for w in bad):
            hint = ("give the workers' key through R1_API_KEY or --api-key-file" if key_source is None else
                    f"the key from {key_source} is not the one these workers were started with")
            raise UsageError(f"{len(bad)} of {len(workers)} workers cannot be used", details=lines, hint=hint)
        raise StartFailedError(f"{len(bad)} of {len(workers)} workers cannot be used", details=lines,
                               hint="start r1 on each machine: r1 serve MODEL --host 0.0.0.0 --api-key-file KEYFILE")
    want = served or workers[0].models[0]
    first = workers[0].root if served is None else "the router"
    for w in workers:
        if want not in w.models:
            raise UsageError(f"{w.root} serves {', '.join(w.models)}, {first} serves {want}: "
                             "a router's workers must all serve the same model",
                             hint=f"name only workers that serve {want}, or route the other model on another port")
    return want


def free_port() -> int:
    """A port the OS has free now, for the router's Prometheus listener (its default, 29000, would be one
    per machine: a second router would fail on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def router_argv(roots: list[str], *, host: str, port: int, policy: str, metrics_port: int) -> list[str]:
    """The router's command: vllm-router's launcher run by this Python, no key in it."""
    return [sys.executable, "-m", "vllm_router.launch_router", "--host", host, "--port", str(port),
            "--worker-urls", *roots, "--policy", policy,
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
            "--health-check-timeout-secs", str(HEALTH_TIMEOUT_S),
            "--health-check-interval-secs", str(HEALTH_INTERVAL_S),
            # workers were checked healthy just now: the router need not poll them for half a minute first
            "--worker-startup-check-interval", "1"]


def check_port(host: str, port: int) -> None:
    held = state.load(port)
    if held and state.is_alive(held):
        what = "a router" if held.backend == BACKEND else held.served_name
        raise StartFailedError(f"r1 already runs {what} on port {port} (pid {held.pid})",
                               hint=f"stop it with `r1 stop --port {port}`, or pick another --port")
    reason = process.port_holder(host, port)
    if reason:
        raise StartFailedError(f"port {port} on {host} is already in use ({reason})",
                               hint=f"stop what holds it, or pick another port with --port (e.g. --port {port + 1})")


@dataclass
class Started:
    record: state.ServerRecord
    proc: object  # subprocess.Popen
    seconds: float


def start(roots: list[str], *, served: str, model: str, host: str, port: int, policy: str, log_path,
          timeout: float, api_key: bool) -> Started:
    """Start the router in front of ROOTS (checked already) and wait until it says it is ready (/readiness
    200: every worker healthy to it); its record is written then. A router that exits or stays unready
    past TIMEOUT is stopped, and its log's last lines are the error's details."""
    from r1cli.server.cmdline import Launch

    t0 = time.monotonic()
    with state.port_lock(port):
        check_port(host, port)
        argv = router_argv(roots, host=host, port=port, policy=policy, metrics_port=free_port())
        server_id = uuid.uuid4().hex
        # Its log keeps the ANSI colours of its tracing output: vllm-router 0.1.17 honours neither NO_COLOR nor
        # RUST_LOG_STYLE on stdout (its --log-dir files are plain, but named by the day). `r1 logs` removes them
        # where stdout is no colour terminal.
        proc = process.spawn(Launch(argv, {}), log_path, server_id=server_id)
        import psutil

        record = state.ServerRecord(
            pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), port=port, host=host,
            url=process.local_url(host, port) + "/v1", model=model, served_name=served, log_path=str(log_path),
            started_at=time.time(), argv=argv, backend=BACKEND, api_key=api_key, pgid=proc.pid, server_id=server_id)
        state.save(record)
        try:
            _wait_ready(proc, record, t0 + timeout)
        except BaseException:
            process.stop_server(record, timeout=5)
            raise
    record.ready_at = time.time()
    state.save(record)
    return Started(record, proc, time.monotonic() - t0)


def _wait_ready(proc, record: state.ServerRecord, deadline: float) -> None:
    root = process.local_url(record.host, record.port)
    while True:
        if proc.poll() is not None:
            raise StartFailedError(f"vllm-router exited with status {proc.returncode} before it was ready",
                                   details=log_tail(record.log_path), hint=f"read its log: {record.log_path}")
        if http.status_of(root + "/readiness", timeout=1.0) == 200:
            return
        if time.monotonic() > deadline:
            raise StartFailedError("vllm-router was not ready in time", details=log_tail(record.log_path),
                                   hint=f"read its log: {record.log_path}; raise --timeout")
        time.sleep(0.1)


def log_tail(path: str, lines: int = 5) -> list[str]:
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip() for line in fh.readlines()[-lines:]]
    except OSError:
        return []


# --- the router's own worker API ------------------------------------------------------------------------


def router_record(port: int | None) -> state.ServerRecord:
    """The record of the router on PORT (or the only router running)."""
    records, _ = state.load_all()
    routers = [r for r in records if r.backend == BACKEND and (port is None or r.port == port)]
    if not routers:
        where = f" on port {port}" if port is not None else ""
        raise NoServerError(f"no r1 router is recorded{where}", hint="start one with `r1 route HOST:PORT ...`")
    if len(routers) > 1:
        raise UsageError(f"{len(routers)} routers are running (ports {', '.join(str(r.port) for r in routers)})",
                         hint="pick one with --port")
    return routers[0]


def _listed(root: str, timeout: float) -> list[dict] | str:
    """GET /workers, vllm-router's list of its workers (url, is_healthy, load, among others); else why not."""
    try:
        resp = http.request("GET", root + "/workers", timeout=timeout)
        items = resp.json().get("workers") if resp.status == 200 else None
    except (http.Unreachable, ValueError, AttributeError) as exc:
        return f"does not answer ({exc})"
    if not isinstance(items, list):
        return f"did not list its workers (/workers answered {resp.status})"
    return [w for w in items if isinstance(w, dict) and isinstance(w.get("url"), str)]


def workers(root: str, timeout: float = CHECK_TIMEOUT_S) -> list[dict]:
    """The router's workers as it reports them; NoServerError when it does not."""
    listed = _listed(root, timeout)
    if isinstance(listed, str):
        raise NoServerError(f"the router at {root} {listed}", hint="`r1 status` shows what runs")
    return listed


def add(root: str, worker: str, timeout: float = 30.0) -> None:
    """Ask the router to add WORKER (checked already: the router waits for an unhealthy one for minutes)."""
    _change(root, "/add_worker", worker, timeout)


def remove(root: str, worker: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    _change(root, "/remove_worker", worker, timeout)


def _change(root: str, path: str, worker: str, timeout: float) -> None:
    from urllib.parse import quote

    try:
        resp = http.request("POST", f"{root}{path}?url={quote(worker, safe='')}", timeout=timeout)
    except http.Unreachable as exc:
        raise NoServerError(f"the router at {root} does not answer ({exc})") from None
    if resp.status != 200:
        text = resp.body.decode("utf-8", "replace").strip()[:200]
        raise StartFailedError(f"the router refused {path.strip('/').replace('_', ' ')} {worker}: {resp.status} {text}")


def worker_count(root: str, timeout: float = 3.0) -> int | None:
    """How many workers the vllm-router at ROOT routes to (its /workers), so that eval and bench can say what
    they measured; None for a server (no /workers: vLLM answers 404) or no answer."""
    listed = _listed(root, timeout)
    return None if isinstance(listed, str) else len(listed)


def target_text(workers: int | None) -> str:
    """' (a router of N workers)' after a target's URL, or nothing for a server."""
    return "" if workers is None else f" (a router of {counted(workers, 'worker')})"
