"""`r1 sleep`: put a server with sleep mode to sleep now (its GPU memory given back), and say what was freed."""


import json
from typing import Annotated, Optional

import typer

from r1cli import options
from r1cli.console import Environment


def sleep(
    ctx: typer.Context,
    port: options.ServerPort = None,
    all_: Annotated[bool, typer.Option("--all", help="Every server r1 started with sleep mode.")] = False,
    level: Annotated[Optional[int], typer.Option("--level", min=1, max=2, show_default=False,
                                                 help="1: weights parked in host RAM (fastest wake); 2: weights dropped, "
                                                      "reloaded from disk on wake [default: 1 when host RAM holds them with room to spare].")] = None,
    wait: Annotated[float, typer.Option("--wait", min=0.0, help="Seconds to wait for requests in flight to finish before refusing.")] = 30.0,
    json_out: options.Json = False,
) -> None:
    """Put a server to sleep now: its GPU memory is given back; the next request wakes it."""
    from r1cli.server import sleep as sleep_mod

    env: Environment = ctx.obj
    records = sleep_mod.servers_for(port, all_, env.note, "put to sleep")
    results = []
    for record in records:
        done = sleep_mod.put_to_sleep(record, level, wait_s=wait, notify=lambda text: env.note(f"r1: {text}"))
        freed = sleep_mod.describe_memory(done.memory)
        if done.already:
            env.note(f"r1: {record.served_name} on port {record.port} is already asleep ({sleep_mod.LEVEL_TEXT[done.level]})")
        else:
            env.note(f"r1: {record.served_name} on port {record.port} is asleep in {done.seconds:.1f} s ({done.why})"
                     + (f"; GPU memory freed: {freed}" if freed else ""))
        results.append({"port": record.port, "level": done.level, "seconds": round(done.seconds, 3),
                        "already_asleep": done.already, "why": done.why,
                        "gpu_mib_freed": {str(i): round(mib, 1) for i, mib in done.memory}})
    if json_out:
        print(json.dumps({"servers": results}))
