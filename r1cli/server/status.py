"""`r1 status`: what runs, whether it answers, and what it holds (GPU memory through NVML, CPU RSS).

`collect()` returns one plain dict, the `--json` schema (stable; new keys may be added, none renamed):

    {
      "nvml":    {"available": bool, "driver_version": str|null, "error": str|null},
      "gpus":    [gpu.gpus_json() items: index, name, uuid, memory_used_mib, memory_total_mib,
                  memory_used_pct, memory_free_mib, utilization_pct, temperature_c, power_w,
                  compute_capability, processes: [{pid, name, used_mib, server_port}]],
      "servers": [{
        "port": int, "url": str (OpenAI base URL, ends in /v1),
        "source": "r1" (a record of `r1 serve`) | "url" (--base-url / --port / R1_BASE_URL / the default),
        "started_by_r1": bool (a record of this R1_HOME names it; false: "not started by r1", e.g. another
                         user's server on the default port, which ask, chat, eval and bench would use),
        "pid": int|null, "create_time": float|null, "alive": bool|null (null: not r1's, unknown),
        "uptime_s": float|null,
        "state": "ready" | "asleep" | "starting" | "down" | "dead" | "orphaned" | "needs_api_key" | "unhealthy",
        "health": int|null (HTTP status of GET /health; null: no answer),
        "models": [{"id": str, "root": str|null, "max_model_len": int|null}],
        "version": str|null,
        "metrics": {"running": int|null, "waiting": int|null, "kv_cache_usage_pct": float|null,
                    "prompt_tokens_total": int|null, "generation_tokens_total": int|null,
                    "ttft_mean_s": float|null (all summed over data-parallel engines; KV use: the fullest),
                    "sleep_level": 1|2|null (vLLM's engine_sleep_state gauge: asleep at that level; null: awake),
                    "engines": [{"engine": str, "running", "waiting", "kv_cache_usage_pct",
                                 "generation_tokens_total"}] (each engine's own; [] without engine labels)},
        "backend": "gpu"|"cpu"|null, "cpu_rss_bytes": int|null (process tree, cpu backend),
        "log_path": str|null,
        "orphans": [int] (pids of the tree still running after its API server died; [] otherwise),
        "sleep": {"mode": bool (started with --idle-sleep), "idle_sleep_s": float|null, "asleep": bool
                  (the engine's own is_sleeping(), through r1's middleware; a foreign server: vLLM's gauge),
                  "level": 1|2|null, "since": float|null (epoch seconds), "idle_for_s": float|null,
                  "timer": {"running": bool, "restarts": int, "error": str|null}|null (the idle timer in
                  the API server process that answered; null: not asked)},
        "error": str|null (one line: why it is not ready),
        "router": {"policy": str|null, "workers": [server objects as above, "source": "router", no
                   "started_by_r1", plus "routed": {"healthy": bool|null, "load": int|null} (the router's
                   own view of it)]} (only for a router of `r1 route`, backend "router"; its "version" and
                   "metrics" are then empty: the router hands those paths on to a worker)
      }],
      "notes":   [str]  (things status did or could not do: a dead record removed, an unreadable one)
    }

States: ready = /health 200 and /v1/models 200; starting = r1's process runs but its port does not
listen yet (loading); down = nothing listens; dead = r1's record names a process that is gone and
nothing of its tree runs (the record is then removed); orphaned = the API server is gone but processes
of its tree run on (EngineCore and its workers outlive a `kill -9` of the API server, holding their
memory): the record is kept, and `r1 stop` stops them; needs_api_key = /v1/models answered 401;
unhealthy = something listens but /health is not 200, or it accepts connections and does not answer
within the read timeout, or the port is answered by a process outside r1's server (another server
took it).

Every HTTP request of every server runs in its own thread with a 1 s connect timeout and a short
read timeout, and NVML is queried beside them, so a black-holed port costs at most about 3 s.
psutil, pynvml, prometheus_client and rich are imported only when needed, and so is http.client (only
once a connection opened: with no server, `r1 status` speaks no HTTP) and server/process.py (only for a
server of a record). The /metrics page is read by
server/metrics.py; the rendering is commands/status.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from r1cli import config
# The `metrics` object's keys and its parser (server/metrics.py), read through this module by `r1 status`'s rendering.
from r1cli.english import counted
from r1cli.server.metrics import METRIC_KEYS, empty_metrics, parse_metrics  # noqa: F401

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
STATES = ("ready", "asleep", "starting", "down", "dead", "orphaned", "needs_api_key", "unhealthy")
PROBES = {"health": "/health", "models": "/v1/models", "version": "/version", "metrics": "/metrics"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


# --- HTTP probes ------------------------------------------------------------------------------------


@dataclass
class Probe:
    status: int | None = None  # None: no HTTP answer
    body: bytes = b""
    error: str | None = None
    silent: bool = False  # connected, then nothing came back before the read timeout
    content_type: str | None = None

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None


def probe(url: str, headers: dict[str, str] | None = None, *, connect_timeout: float = CONNECT_TIMEOUT,
          read_timeout: float = READ_TIMEOUT) -> Probe:
    """GET url; never raises. The connect and the read have their own timeouts."""
    sock = None
    address = _plain_address(url)
    if address is not None:
        # http.client's own connect, opened before http.client is imported: nothing listening (the most
        # common answer, e.g. the default port) costs no import of http.client, email and ssl (~10 ms).
        try:
            sock = socket.create_connection(address, connect_timeout)
        except OSError as exc:
            return Probe(error=_unreachable(exc))
    import http.client

    from r1cli.client import http as r1http

    try:
        conn, path = r1http.connect(url, connect_timeout)
    except (ValueError, OSError) as exc:
        if sock is not None:
            sock.close()
        return Probe(error=str(exc))
    try:
        try:
            if sock is None:
                conn.connect()
            else:
                conn.sock = sock
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client's connect does
        except OSError as exc:
            return Probe(error=r1http.describe(exc))
        conn.sock.settimeout(read_timeout)
        try:
            conn.request("GET", path, headers={"Accept": "*/*", **(headers or {})})
            resp = conn.getresponse()
            return Probe(resp.status, resp.read(), content_type=resp.getheader("content-type"))
        except (socket.timeout, TimeoutError):
            return Probe(error=f"no answer within {read_timeout:g} s", silent=True)
        except (OSError, http.client.HTTPException) as exc:
            return Probe(error=r1http.describe(exc))
    finally:
        conn.close()


def _plain_address(url: str) -> tuple[str | bytes, int] | None:
    """(host, port) that http.client would connect to for an http:// URL with its port (as every URL status
    probes has); None for any other (https, no port, a bad one): http.client opens those itself."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or port is None:
        return None
    host = parts.hostname or "127.0.0.1"
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        # An address, as bytes: getaddrinfo takes it as it is, where a str costs the idna codec's import (~1 ms).
        return host.encode("ascii"), port
    return host, port


def _unreachable(exc: OSError) -> str:
    """Why a connect failed, in the client's words (r1cli.client.http.describe); a refused one without
    importing it (and so http.client)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    from r1cli.client import http as r1http

    return r1http.describe(exc)


def _run_parallel(jobs: dict, deadline_s: float) -> dict:
    """Run each callable in its own daemon thread; a job still running at the deadline (a DNS lookup
    that hangs, say) yields None instead of holding status up."""
    results: dict = {}

    def work(key, fn):
        try:
            results[key] = fn()
        except Exception as exc:  # noqa: BLE001 - one failed probe must not sink the others
            results[key] = exc

    threads = [threading.Thread(target=work, args=(k, fn), daemon=True) for k, fn in jobs.items()]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline_s
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return {k: results.get(k) for k in jobs}


# --- which servers ----------------------------------------------------------------------------------


@dataclass
class _Target:
    url: str  # ends in /v1
    port: int
    record: object | None = None  # state.ServerRecord
    alive: bool | None = None
    orphans: list | None = None  # psutil.Process of its tree left running after its leader died

    @property
    def root(self) -> str:
        return self.url[: -len("/v1")]


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _targets(base_url: str | None, notes: list[str], port: int | None = None) -> list[_Target]:
    """--port's or --base-url's server alone; else every server of a record, and always the default port
    (where a client goes when no r1 server runs), so each status lists the same servers."""
    from r1cli.server import state

    if port is not None:
        from r1cli.server import locate

        base_url = locate.local_url(port)
    records, bad = state.load_all()
    for item in bad:
        notes.append(f"skipped {item.path}: not a server record ({item.reason}); remove it by hand")
    if base_url:
        from r1cli.server import locate

        url = locate.resolve_target(base_url, None, None).base_url  # validates and appends /v1
        parts = urlsplit(url)
        port = _port_of(url)
        for record in records:
            if record.port == port and (parts.hostname in LOCAL_HOSTS or parts.hostname == record.host):
                return [_record_target(record, url)]
        return [_Target(url, port)]
    targets = [_record_target(r, r.url) for r in records]
    if all(t.port != config.DEFAULT_PORT for t in targets):
        targets.append(_Target(config.DEFAULT_BASE_URL, config.DEFAULT_PORT))
    return targets


def _record_target(record, url: str) -> _Target:
    from r1cli.server import process, state

    alive = state.is_alive(record)
    # Only for a dead leader: what of its tree runs on (a scan of the process table, a few ms).
    return _Target(url, record.port, record, alive, [] if alive else process.members(record))


# --- collect ----------------------------------------------------------------------------------------


def collect(base_url: str | None = None, api_key: str | None = None, *, connect_timeout: float = CONNECT_TIMEOUT,
            read_timeout: float = READ_TIMEOUT, port: int | None = None) -> dict:
    """Everything `r1 status` shows, as the documented JSON object. Never raises for a server that is
    down, slow or dead, nor for a machine without NVML; only a bad --base-url is a UsageError."""
    notes: list[str] = []
    targets = _targets(base_url, notes, port)
    headers = {}
    if api_key:
        from r1cli.client import http as r1http

        headers = r1http.auth_headers(api_key)
    server_pids = {t.record.pid: t.port for t in targets if t.record is not None and t.alive}
    server_pids.update({p.pid: t.port for t in targets for p in t.orphans or []})

    from r1cli import gpu

    if any(t.record is not None for t in targets):
        from r1cli.server import process

        # `--ray`: the workers are the raylet's children, outside the tree; the server's log names them.
        server_pids.update({p.pid: t.port for t in targets if t.record is not None
                            for p in process.ray_workers(t.record)})

    jobs: dict = {"nvml": lambda: gpu.query(server_pids)}
    for i, t in enumerate(targets):
        if t.record is not None and not t.alive:
            continue  # dead: nothing to ask
        for name, path in PROBES.items():
            url = t.root + path
            jobs[(i, name)] = (lambda url=url: probe(url, headers, connect_timeout=connect_timeout,
                                                     read_timeout=read_timeout))
        if t.record is not None and t.record.backend == "cpu":
            jobs[(i, "rss")] = (lambda pid=t.record.pid: tree_rss(pid))
        if t.record is not None and t.record.sleep_mode and t.record.secret:
            jobs[(i, "keepalive")] = (lambda rec=t.record: _engine_sleep(rec, read_timeout))
    for i, t in enumerate(targets):
        if t.orphans and t.record.backend == "cpu":
            jobs[(i, "rss")] = (lambda procs=t.orphans: _rss(procs))
    results = _run_parallel(jobs, connect_timeout + read_timeout + 1.0)

    report = results["nvml"]
    if not isinstance(report, gpu.NvmlReport):
        report = gpu.NvmlReport(False, None, f"NVML query did not finish: {report!r}" if report else
                                "NVML query did not finish in time")
    now = time.time()
    servers = []
    for i, t in enumerate(targets):
        probes = {name: _as_probe(results.get((i, name))) for name in PROBES}
        server = _server(t, probes, now, api_key, results.get((i, "keepalive")))
        rss = results.get((i, "rss"))
        server["cpu_rss_bytes"] = rss if isinstance(rss, int) else None
        if server["state"] in ("ready", "asleep") and t.record is not None:
            _check_listener(server, t)
        if t.record is not None and t.record.backend == "router":
            _router(server, t, api_key, connect_timeout, read_timeout, now)
        servers.append(server)
        if server["state"] == "dead" and _remove_dead(t.record):
            notes.append(f"the server on port {t.port} (pid {t.record.pid}) is gone; its record was removed")
    return {"nvml": report.to_json(), "gpus": gpu.gpus_json(report), "servers": servers, "notes": notes}


def _check_listener(server: dict, t: _Target) -> None:
    """A server r1 started is ready only if its own tree answers: after a race for the port (another
    server took it while this one loaded), the answer comes from someone else's process."""
    from r1cli.server import process

    others = process.foreign_listeners(process.members(t.record), t.port)
    if others:
        server["state"] = "unhealthy"
        server["error"] = (f"port {t.port} is answered by another program ({process.describe_pids(others)}), "
                           f"not by this server (pid {t.record.pid})")


def _as_probe(result) -> Probe:
    if isinstance(result, Probe):
        return result
    if result is None:
        return Probe(error="no answer in time", silent=True)
    return Probe(error=f"{type(result).__name__}: {result}")


def tree_rss(pid: int) -> int | None:
    """Resident memory of a process and all its descendants, in bytes."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return None
    return _rss(procs)


def _rss(procs: list) -> int:
    import psutil

    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _remove_dead(record) -> bool:
    """Remove a dead server's record, unless an `r1 serve` is starting on that port or wrote a new one."""
    from r1cli.errors import UsageError
    from r1cli.server import state

    try:
        with state.port_lock(record.port):
            try:
                current = state.load(record.port)
            except Exception:  # noqa: BLE001 - unreadable now: leave it to the user
                return False
            if current is None:
                return True  # someone else removed it already
            if (current.pid, current.create_time) != (record.pid, record.create_time):
                return False
            state.remove(record.port)
            return True
    except (UsageError, OSError):
        return False


def _server(t: _Target, probes: dict[str, Probe], now: float, api_key: str | None, engine_sleep=None) -> dict:
    rec = t.record
    out = {
        "port": t.port,
        "url": t.url,
        "source": "r1" if rec is not None else "url",
        "started_by_r1": rec is not None,
        "pid": rec.pid if rec is not None else None,
        "create_time": rec.create_time if rec is not None else None,
        "alive": t.alive,
        "uptime_s": round(now - rec.create_time, 1) if rec is not None and t.alive else None,
        "state": "down",
        "health": None,
        "models": [],
        "version": None,
        "metrics": empty_metrics(),
        "backend": rec.backend if rec is not None else None,
        "cpu_rss_bytes": None,
        "log_path": rec.log_path if rec is not None else None,
        "orphans": sorted(p.pid for p in t.orphans or []),
        "sleep": _sleep_of(rec, engine_sleep),
        "error": None,
    }
    if rec is not None and t.orphans:
        out["state"] = "orphaned"
        orphans = counted(len(t.orphans), "process")
        out["error"] = (f"its API server (pid {rec.pid}) is gone, but {orphans} "
                        f"of its tree run{'s' if len(t.orphans) == 1 else ''} on "
                        f"(pids {', '.join(map(str, out['orphans']))}); `r1 stop --port {t.port}` stops them")
        return out
    if rec is not None and not t.alive:
        out["state"] = "dead"
        out["error"] = f"its process (pid {rec.pid}) is gone"
        return out

    health, models = probes["health"], probes["models"]
    out["health"] = health.status
    model_list = None  # /v1/models as an OpenAI server sends it: an object with a "data" list
    if models.status == 200:
        data = models.json()
        model_list = data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), list) else None
        for item in model_list or []:
            if isinstance(item, dict) and "id" in item:
                out["models"].append({"id": item["id"], "root": item.get("root"),
                                      "max_model_len": item.get("max_model_len")})
    if probes["version"].status == 200:
        version = (probes["version"].json() or {})
        out["version"] = version.get("version") if isinstance(version, dict) else None
    if probes["metrics"].status == 200:
        try:
            out["metrics"] = parse_metrics(probes["metrics"].body.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - a server that is not vLLM, or a format change: no load figures
            pass

    if health.status is None and models.status is None:
        if health.silent or models.silent:
            out["state"] = "unhealthy"
            out["error"] = f"port {t.port} accepts connections but is not answering ({health.error})"
        elif rec is not None:
            out["state"] = "starting"
            out["error"] = f"not listening yet ({health.error}); `r1 logs --port {t.port}` shows its progress"
        else:
            out["state"] = "down"
            out["error"] = f"nothing answers at {t.root} ({health.error})"
    elif models.status == 401:
        out["state"] = "needs_api_key"
        out["error"] = ("the server refused the API key" if api_key else
                        "needs an API key: pass --api-key or set R1_API_KEY")
    elif models.status == 200 and model_list is None:
        out["state"] = "unhealthy"
        kind = models.content_type or "no content type"
        out["error"] = f"/v1/models answered 200 with {kind}, not an OpenAI model list: not a vLLM server"
    elif models.status == 200 and health.status in (200, 404):  # 404: an OpenAI server without /health
        out["state"] = "ready"
        sleep = out["sleep"]
        if isinstance(engine_sleep, dict):
            asleep = bool(engine_sleep.get("sleeping"))
        else:  # not asked (a foreign server) or no answer: vLLM's gauge
            asleep = bool(out["metrics"].get("sleep_level"))
        if asleep:
            out["state"] = "asleep"
            sleep.update(asleep=True, level=sleep["level"] or out["metrics"].get("sleep_level"))
        if rec is not None and rec.sleep_mode and isinstance(engine_sleep, str):
            out["error"] = f"its sleep state could not be read: {engine_sleep}"
        elif (sleep["timer"] or {}).get("error"):
            out["error"] = (f"its idle timer failed ({sleep['timer']['error']}) and restarted "
                            f"{sleep['timer']['restarts']} time(s); `r1 logs --port {t.port}` shows why, and "
                            f"`r1 sleep --port {t.port}` still works")
        elif sleep["timer"] is not None and sleep["idle_sleep_s"] and not sleep["timer"]["running"]:
            out["error"] = (f"its idle timer is not running: it will not sleep by itself; `r1 sleep --port {t.port}` "
                            f"works, and a restart of the server brings the timer back")
    else:
        out["state"] = "unhealthy"
        if health.status is not None and health.status != 200:
            why = "the engine is dead" if health.status == 503 else "not healthy"
            out["error"] = f"/health answered {health.status}: {why}"
        elif models.status is not None:
            out["error"] = f"/v1/models answered {models.status}"
        else:
            out["error"] = f"/v1/models: {models.error}"
    return out


def _sleep_of(rec, engine_sleep) -> dict:
    """A server's sleep: its mode from the record, and whether it sleeps from the engine (r1's middleware)."""
    mode = bool(rec and rec.sleep_mode)
    known = engine_sleep if isinstance(engine_sleep, dict) else {}
    asleep = bool(known.get("sleeping"))
    return {"mode": mode, "idle_sleep_s": rec.idle_sleep_s if rec is not None else None,
            "asleep": asleep, "level": known.get("level") if asleep else None,
            "since": known.get("since") if asleep else None, "idle_for_s": known.get("idle_for_s"),
            "timer": known.get("timer") if mode else None}


def _engine_sleep(rec, read_timeout: float):
    """GET /r1/state of REC's server: a dict, or the reason in a line (never raises)."""
    from r1cli.errors import R1Error
    from r1cli.server import sleep

    try:
        return sleep.engine_state(rec, timeout=read_timeout)
    except R1Error as exc:
        return exc.message


def _router(server: dict, t: _Target, api_key: str | None, connect_timeout: float, read_timeout: float,
            now: float) -> None:
    """A router of `r1 route`: its /version and /metrics were a worker's (the router hands them on), so they
    go; in their place "router": its policy and each worker as the router sees it (healthy, load) beside
    what the worker itself answers, probed as a server is (a worker gone is "down")."""
    from r1cli.server import route

    server["version"], server["metrics"] = None, empty_metrics()
    argv = t.record.argv
    policy = argv[argv.index("--policy") + 1] if "--policy" in argv[:-1] else None
    server["router"] = {"policy": policy, "workers": []}
    if not t.alive or server["health"] is None:
        return
    try:
        listed = route.workers(t.root, timeout=connect_timeout + read_timeout)
    except Exception as exc:  # noqa: BLE001 - the router's own view is missing: say so, keep the rest
        server["error"] = getattr(exc, "message", str(exc))
        return
    headers = {}
    if api_key:
        from r1cli.client import http as r1http

        headers = r1http.auth_headers(api_key)
    jobs = {(i, name): (lambda url=w["url"] + path: probe(url, headers, connect_timeout=connect_timeout,
                                                          read_timeout=read_timeout))
            for i, w in enumerate(listed) for name, path in PROBES.items()}
    results = _run_parallel(jobs, connect_timeout + read_timeout + 1.0)
    for i, w in enumerate(listed):
        root = w["url"].rstrip("/")
        probes = {name: _as_probe(results.get((i, name))) for name in PROBES}
        worker = _server(_Target(root + "/v1", _port_of(root)), probes, now, api_key)
        worker["routed"] = {"healthy": w.get("is_healthy"), "load": w.get("load")}
        worker["source"] = "router"  # named by the router: whether r1 started it is its own machine's to say
        del worker["started_by_r1"]
        server["router"]["workers"].append(worker)
    down = [w["url"] for w in server["router"]["workers"] if w["state"] not in ("ready", "asleep")]
    if down and not server["error"]:
        server["error"] = f"{len(down)} of {len(listed)} workers cannot serve: {', '.join(down)}"


def exit_status(data: dict) -> int:
    """0 when at least one server is ready or asleep (the next request wakes it), 3 (no server) otherwise."""
    from r1cli.errors import ExitStatus

    ready = any(s["state"] in ("ready", "asleep") for s in data["servers"])
    return int(ExitStatus.OK if ready else ExitStatus.NO_SERVER)
