"""`r1 route`: one endpoint in front of r1 servers on several machines (vLLM's router, vllm-router), and
`r1 route add URL` / `r1 route rm URL` on a running one. The router itself: r1cli/server/route.py."""


import contextlib
import json
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from r1cli import config
from r1cli.console import Environment
from r1cli.english import counted
from r1cli.errors import ExitStatus, StartFailedError, UsageError
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
server_route = lazy_import("r1cli.server.route")
process = lazy_import("r1cli.server.process")

ACTIONS = ("add", "rm")
DEFAULT_PORT = 8080  # beside the servers' 8000 on the router's machine


def route(
    ctx: typer.Context,
    workers: Annotated[list[str], typer.Argument(metavar="[add|rm] URL|HOST:PORT...", show_default=False,
                                                 help="The r1 servers to route to (http://10.0.0.2:8000, 10.0.0.2:8000, :8001 for this machine); "
                                                      "`add URL` / `rm URL` change the workers of the router on --port.")],
    port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535, show_default=False,
                                                help=f"The router's port: where it listens [default: {DEFAULT_PORT}]; add, rm: the running router's [default: the only one].")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 exposes the router to the network, its worker API "
                                                     "(add, rm) included, unlike the default.")] = config.DEFAULT_HOST,
    policy: Annotated[Optional[str], typer.Option("--policy", metavar="POLICY", show_default=False,
                                                  help="How the router picks a worker: cache_aware, round_robin, power_of_two, consistent_hash, random [default: cache_aware].")] = None,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file", envvar="R1_API_KEY_FILE",
                                                         help="The workers' key, from this file (one line); else R1_API_KEY. Clients of the router send it as they would to a worker.")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the router to be ready.")] = 60.0,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once ready, leaving the router running.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With -d: print the router's record as JSON on stdout; add, rm: the workers.")] = False,
) -> None:
    """Start vLLM's router in front of r1 servers on several machines (r1 route add|rm URL changes its workers)."""
    env: Environment = ctx.obj
    key, source = _key(env, api_key_file)
    if workers and workers[0] in ACTIONS:
        action, names = workers[0], workers[1:]
        if len(names) != 1:
            raise UsageError(f"r1 route {action} takes one worker, got {len(names)}",
                             hint=f"r1 route {action} HOST:PORT --port ROUTER_PORT")
        change(env, action, names[0], port=port, api_key=key, key_source=source, json_out=json_out)
        return
    if not workers:
        raise UsageError("name the r1 servers to route to", hint="r1 route 10.0.0.2:8000 10.0.0.3:8000")
    chosen = policy or server_route.DEFAULT_POLICY
    if chosen not in server_route.POLICIES:
        raise UsageError(f"unknown --policy {chosen!r}", hint="choose one of " + ", ".join(server_route.POLICIES))
    start(env, workers, port=port or DEFAULT_PORT, host=host, policy=chosen, api_key=key, key_source=source, timeout=timeout,
          detach=detach, json_out=json_out)


def _key(env: Environment, api_key_file: Path | None) -> tuple[str | None, str | None]:
    """The workers' key and where it came from: --api-key-file, else R1_API_KEY; never an argument (`ps`)."""
    import os

    from r1cli.server import apikey

    if api_key_file is not None:
        return apikey.read_file(api_key_file, warn=lambda text: env.note(f"r1: {text}")), str(api_key_file)
    key = os.environ.get(apikey.ENV) or None
    return key, apikey.ENV if key else None


def _roots(names: list[str]) -> list[str]:
    roots = [server_route.worker_root(n) for n in names]
    twice = sorted({r for r in roots if roots.count(r) > 1})
    if twice:
        raise UsageError(f"{', '.join(twice)} named twice", hint="name each worker once")
    return roots


def _show_workers(env: Environment, found: list) -> None:
    for w in found:
        env.note(f"r1: worker {w.root}: " + (w.problem or f"healthy, serves {', '.join(w.models)}"))


def start(env: Environment, names: list[str], *, port: int, host: str, policy: str, api_key: str | None,
          key_source: str | None, timeout: float, detach: bool, json_out: bool) -> None:
    server_route.require_installed()
    roots = _roots(names)
    env.note(f"r1: checking {counted(len(roots), 'worker')}")
    found = server_route.check_workers(roots, api_key)
    _show_workers(env, found)
    served = server_route.refuse(found, key_source)
    from r1cli.server import state
    from r1cli.server.serve import default_log_path

    log_path = default_log_path(port)
    env.note(f"r1: starting vllm-router ({policy}) on {host}:{port} (log: {log_path})")
    for signum in (signal.SIGTERM, signal.SIGHUP):  # `kill <r1>` and a closed terminal stop it, as Ctrl-C does
        signal.signal(signum, _interrupt)
    started = server_route.start(roots, served=served, model=found[0].model_root or served, host=host, port=port,
                                 policy=policy, log_path=log_path, timeout=timeout, api_key=api_key is not None)
    record = started.record
    try:
        env.note(f"r1: ready in {started.seconds:.1f} s, {record.url}, model {served}, "
                 f"{counted(len(roots), 'worker')}, policy {policy}")
        if api_key is not None:
            env.note("r1: clients send the workers' key (R1_API_KEY): the router passes it on")
        if detach:
            print(json.dumps(asdict(record)) if json_out else record.url, flush=True)
            env.note(f"r1: running in the background; `r1 stop --port {port}` stops it, `r1 status --port {port}` shows its workers")
            return
        env.note("r1: routing; press Ctrl-C to stop")
        code = started.proc.wait()
    except KeyboardInterrupt:
        with process.signals_held():
            freed = process.stop_server(record)
        with contextlib.suppress(OSError):
            env.note(f"\nr1: stopped the router on port {port} ({counted(len(freed.pids), 'process')}); "
                     "the workers run on")
        raise SystemExit(ExitStatus.INTERRUPTED) from None
    process.stop_server(record, timeout=5)
    raise StartFailedError(f"vllm-router exited with status {code}",
                                        details=server_route.log_tail(record.log_path),
                                        hint=f"read its log: {record.log_path}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def change(env: Environment, action: str, name: str, *, port: int | None, api_key: str | None, key_source: str | None,
           json_out: bool) -> None:
    """`r1 route add URL`: the worker checked (healthy, the router's model) and added; `rm URL`: removed."""
    server_route.require_installed()
    record = server_route.router_record(port)
    root, port = process.local_url(record.host, record.port), record.port
    worker = server_route.worker_root(name)
    listed = [w["url"] for w in server_route.workers(root)]
    if action == "add":
        if worker in listed:
            raise UsageError(f"the router on port {port} already routes to {worker}")
        found = server_route.check_worker(worker, api_key)
        _show_workers(env, [found])
        server_route.refuse([found], key_source, served=record.served_name)
        server_route.add(root, worker)
    else:
        if worker not in listed:
            raise UsageError(f"the router on port {port} does not route to {worker}",
                             hint="its workers: " + (", ".join(listed) or "none"))
        server_route.remove(root, worker)
    now = [w["url"] for w in server_route.workers(root)]
    env.note(f"r1: {'added' if action == 'add' else 'removed'} {worker}; the router on port {port} now routes to "
             f"{counted(len(now), 'worker')}")
    print(json.dumps({"port": port, "workers": now}) if json_out else "\n".join(now), flush=True)
