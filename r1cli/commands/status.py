"""`r1 status`, shown: the collected dict (r1cli/server/status.py) as plain text, a Rich view, JSON, or refreshed
with --watch. Nothing here probes anything."""


import json
import time
from typing import Annotated, Optional

import typer

from r1cli import options
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
collection = lazy_import("r1cli.server.status")


def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (schema: r1cli/server/status.py).")] = False,
    watch: Annotated[Optional[float], typer.Option("--watch", "-w", min=0.1, metavar="N",
                                                   help="Refresh every N seconds until Ctrl-C.")] = None,
    port: options.Port = None,
    base_url: options.BaseUrl = None,
    api_key: options.ApiKey = None,
) -> int:
    """GPUs (through NVML) and servers: alive, healthy, models, load. Exit 0 if one is ready, else 3."""
    if port is not None:
        from r1cli.server import locate

        base_url = locate.local_url(port)
    return run(ctx.obj, base_url, api_key, json_out=json_out, watch=watch)


# --- rendering --------------------------------------------------------------------------------------


def _mib(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value / 1024:.1f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def _bytes(value: int | None) -> str:
    return _mib(value / 2**20) if value is not None else "?"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _model_text(server: dict) -> str:
    parts = []
    for m in server["models"]:
        parts.append(f"{m['id']} (ctx {m['max_model_len']:,})" if m.get("max_model_len") else m["id"])
    return ", ".join(parts) or "-"


def _load_text(server: dict) -> str | None:
    m = server["metrics"]
    if all(m.get(key) is None for key in collection.METRIC_KEYS):
        return None
    parts = []
    if m["running"] is not None or m["waiting"] is not None:
        parts.append(f"{m['running'] if m['running'] is not None else '?'} running, "
                     f"{m['waiting'] if m['waiting'] is not None else '?'} waiting")
    if m["kv_cache_usage_pct"] is not None:
        parts.append(f"KV cache {m['kv_cache_usage_pct']:.1f}%")
    if m["prompt_tokens_total"] is not None or m["generation_tokens_total"] is not None:
        parts.append(f"tokens {m['prompt_tokens_total'] or 0:,} in / {m['generation_tokens_total'] or 0:,} out")
    if m["ttft_mean_s"] is not None:
        parts.append(f"mean TTFT {m['ttft_mean_s'] * 1000:.0f} ms")
    return ", ".join(parts)


def _engine_texts(server: dict) -> list[tuple[str, str]]:
    """[("engine 0", "1 running, 3 waiting, KV cache 25.0%")] when the server runs several engines."""
    engines = server["metrics"].get("engines") or []
    if len(engines) < 2:
        return []
    out = []
    for e in engines:
        parts = [f"{e['running'] if e['running'] is not None else '?'} running, "
                 f"{e['waiting'] if e['waiting'] is not None else '?'} waiting"]
        if e["kv_cache_usage_pct"] is not None:
            parts.append(f"KV cache {e['kv_cache_usage_pct']:.1f}%")
        if e["generation_tokens_total"] is not None:
            parts.append(f"{e['generation_tokens_total']:,} tokens out")
        out.append((f"engine {e['engine']}", ", ".join(parts)))
    return out


def _memory_text(server: dict, gpus: list[dict]) -> str | None:
    if server["cpu_rss_bytes"] is not None:
        return f"{_bytes(server['cpu_rss_bytes'])} resident (CPU backend, process tree)"
    used = [(g["index"], p["used_mib"]) for g in gpus for p in g["processes"] if p["server_port"] == server["port"]]
    if used:
        return ", ".join(f"GPU {i}: {_mib(mib)}" for i, mib in used)
    return None


def _gpu_line(g: dict) -> str:
    extras = []
    if g["utilization_pct"] is not None:
        extras.append(f"{g['utilization_pct']}% util")
    if g["temperature_c"] is not None:
        extras.append(f"{g['temperature_c']} C")
    if g["power_w"] is not None:
        extras.append(f"{g['power_w']:.0f} W")
    tail = (", " + ", ".join(extras)) if extras else ""
    return (f"GPU {g['index']} {g['name']}: {_mib(g['memory_used_mib'])} / {_mib(g['memory_total_mib'])} "
            f"({g['memory_used_pct']:.0f}%){tail}")


def _process_line(p: dict) -> str:
    mark = f"  [r1 :{p['server_port']}]" if p["server_port"] is not None else ""
    return f"pid {p['pid']} {p['name']}: {_mib(p['used_mib'])}{mark}"


def _sleep_text(s: dict) -> str | None:
    """`asleep since 14:02 (31 min), level 1: weights in host RAM; the next request wakes it` or the idle time."""
    info = s.get("sleep") or {}
    if not info.get("asleep") and not (info.get("mode") and s["state"] == "ready"):
        return None  # before server/sleep.py's import: most servers sleep never
    from r1cli.server.sleep import LEVEL_TEXT, describe_duration

    if info.get("asleep"):
        since = info.get("since")
        when = f" since {time.strftime('%H:%M', time.localtime(since))} ({_duration(time.time() - since)})" if since else ""
        return f"asleep{when}, {LEVEL_TEXT.get(info.get('level'), 'level ?')}; the next request wakes it"
    if info.get("mode") and s["state"] == "ready":
        idle = info.get("idle_sleep_s")
        if not idle:
            return "sleep mode on (`r1 sleep`)"
        idle_for = info.get("idle_for_s")
        quiet = f" (no inference request for {_duration(idle_for)})" if idle_for is not None else ""
        return f"sleeps after {describe_duration(idle)} without inference requests{quiet}"
    return None


def _server_head(s: dict) -> str:
    who = f"pid {s['pid']}, up {_duration(s['uptime_s'])}" if s["pid"] is not None and s["alive"] else None
    parts = [f":{s['port']}", s["state"], s["url"]]
    if s["models"]:
        parts.append(_model_text(s))
    if s["version"]:
        parts.append(f"vLLM {s['version']}")
    if who:
        parts.append(who)
    if not s.get("started_by_r1", True):
        parts.append("(not started by r1)")
    return "  ".join(parts)


def _router_text(s: dict) -> str | None:
    """A router's policy and workers (`r1 route`), or a worker's standing with its router."""
    if s.get("router"):
        workers = s["router"]["workers"]
        ready = sum(w["state"] in ("ready", "asleep") for w in workers)
        return f"router ({s['router']['policy']}), {ready} of {len(workers)} workers ready"
    routed = s.get("routed")
    if routed:
        seen = "healthy" if routed["healthy"] else "unhealthy" if routed["healthy"] is False else "unknown"
        return f"to the router: {seen}, load {routed['load']}"
    return None


def _plain_server(s: dict, gpus: list[dict], label: str = "server") -> list[str]:
    lines = [("router " if s.get("router") else label + " ") + _server_head(s)]
    routing = _router_text(s)
    if routing:
        lines.append(f"  {routing}")
    load = _load_text(s)
    if load:
        lines.append(f"  load: {load}")
    for name, text in _engine_texts(s):
        lines.append(f"    {name}: {text}")
    memory = _memory_text(s, gpus)
    if memory:
        lines.append(f"  memory: {memory}")
    sleep = _sleep_text(s)
    if sleep:
        lines.append(f"  sleep: {sleep}")
    if s["error"]:
        lines.append(f"  {s['error']}")
    return lines


def render_plain(data: dict) -> str:
    """Plain lines, for a pipe or a file: no colour, no layout tricks."""
    lines = []
    nvml = data["nvml"]
    if not nvml["available"]:
        lines.append(f"gpu: {nvml['error']}")
    else:
        lines.append(f"gpu: driver {nvml['driver_version']}, {len(data['gpus'])} GPU(s)"
                     + (f" ({nvml['error']})" if nvml["error"] else ""))
        for g in data["gpus"]:
            lines.append("  " + _gpu_line(g))
            for p in g["processes"]:
                lines.append("    " + _process_line(p))
    for s in data["servers"]:
        lines.extend(_plain_server(s, data["gpus"]))
        for w in (s.get("router") or {}).get("workers", []):
            lines.extend("  " + line for line in _plain_server(w, data["gpus"], "worker"))
    for note in data.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


STATE_STYLE = {"ready": "bold green", "asleep": "cyan", "starting": "yellow", "down": "red", "dead": "red", "orphaned": "red",
               "needs_api_key": "yellow", "unhealthy": "red"}


def render_rich(data: dict):
    """A compact Rich renderable for a terminal: a head line per GPU and per server, details indented."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts = []
    nvml = data["nvml"]
    if not nvml["available"]:
        parts.append(Text.assemble(("GPU    ", "bold"), (nvml["error"], "dim")))
    else:
        parts.append(Text.assemble(("GPU    ", "bold"), f"driver {nvml['driver_version']}, {len(data['gpus'])} GPU(s)",
                                   (f"  {nvml['error']}" if nvml["error"] else "", "yellow")))
        for g in data["gpus"]:
            pct = g["memory_used_pct"]
            style = "red" if pct >= 95 else "yellow" if pct >= 80 else "green"
            line = Text(f"  {g['index']} {g['name']}  {_mib(g['memory_used_mib'])} / {_mib(g['memory_total_mib'])} ")
            line.append(f"{pct:.0f}%", style=style)
            extras = [f"{g['utilization_pct']}% util" if g["utilization_pct"] is not None else None,
                      f"{g['temperature_c']} C" if g["temperature_c"] is not None else None,
                      f"{g['power_w']:.0f} W" if g["power_w"] is not None else None]
            line.append("  " + " · ".join(e for e in extras if e), style="dim")
            parts.append(line)
            for p in g["processes"]:
                proc = Text(f"      pid {p['pid']} {p['name']}  {_mib(p['used_mib'])}", style="dim")
                if p["server_port"] is not None:
                    proc.append(f"  r1 :{p['server_port']}", style="cyan")
                parts.append(proc)

    for s in data["servers"]:
        head = Text.assemble(("router " if s.get("router") else "server ", "bold"), (f":{s['port']} ", "bold"),
                             (s["state"].replace("_", " "), STATE_STYLE.get(s["state"], "")))
        if s["models"]:
            head.append(f"  {_model_text(s)}")
        if s["version"]:
            head.append(f"  vLLM {s['version']}", style="dim")
        if s["pid"] is not None and s["alive"]:
            head.append(f"  pid {s['pid']}, up {_duration(s['uptime_s'])}", style="dim")
        if not s.get("started_by_r1", True):
            head.append("  not started by r1", style="yellow")
        parts.append(head)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        grid.add_row("    url", s["url"])
        load = _load_text(s)
        if load:
            grid.add_row("    load", load.replace(", ", " · "))
        for name, text in _engine_texts(s):
            grid.add_row(f"      {name}", text.replace(", ", " · "))
        memory = _memory_text(s, data["gpus"])
        if memory:
            grid.add_row("    memory", memory)
        sleep = _sleep_text(s)
        if sleep:
            grid.add_row("    sleep", sleep)
        if s["error"]:
            grid.add_row("    why", Text(s["error"], style="red" if s["state"] in ("down", "dead", "unhealthy") else "yellow"))
        parts.append(grid)
        if s.get("router"):
            parts.append(Text("    " + _router_text(s), style="dim"))
            for w in s["router"]["workers"]:
                line = Text.assemble(("    worker ", "bold"), f":{w['port']} ",
                                     (w["state"].replace("_", " "), STATE_STYLE.get(w["state"], "")), f"  {w['url']}")
                line.append("  " + _router_text(w), style="dim")
                parts.append(line)
                for text in filter(None, [_load_text(w), w["error"]]):
                    parts.append(Text("      " + text, style="red" if text == w["error"] else "dim"))
    for note in data.get("notes", []):
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


# --- the command ------------------------------------------------------------------------------------


def run(env, base_url: str | None, api_key: str | None, *, json_out: bool = False, watch: float | None = None) -> int:
    """Collect, render, and return the exit status; with watch, refresh until Ctrl-C."""
    if watch is None:
        data = collection.collect(base_url, api_key)
        _emit(env, data, json_out)
        return collection.exit_status(data)
    if env.stdout_isatty and not json_out:
        return _watch_live(env, base_url, api_key, watch)
    code = 3
    try:
        while True:
            t0 = time.monotonic()
            data = collection.collect(base_url, api_key)
            code = collection.exit_status(data)
            _emit(env, data, json_out, stamp=True)
            time.sleep(max(0.0, watch - (time.monotonic() - t0)))
    except KeyboardInterrupt:
        return code


def _emit(env, data: dict, json_out: bool, stamp: bool = False) -> None:
    if json_out:
        env.stdout.write(json.dumps(data) + "\n")
    elif env.stdout_isatty:
        env.out.print(render_rich(data))
    else:
        if stamp:
            env.stdout.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        env.stdout.write(render_plain(data))
    env.stdout.flush()


def _watch_live(env, base_url, api_key, every: float) -> int:
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    code = 3
    with Live(console=env.out, auto_refresh=False, transient=False) as live:
        try:
            while True:
                t0 = time.monotonic()
                data = collection.collect(base_url, api_key)
                code = collection.exit_status(data)
                footer = Text(f"every {every:g} s, {time.strftime('%H:%M:%S')}; Ctrl-C stops", style="dim")
                live.update(Group(render_rich(data), footer), refresh=True)
                time.sleep(max(0.0, every - (time.monotonic() - t0)))
        except KeyboardInterrupt:
            pass
    return code
