"""`r1 wake`: wake a sleeping server now, and say how long it took and the GPU memory it took back."""


import json
from typing import Annotated

import typer

from r1cli import options
from r1cli.console import Environment


def wake(
    ctx: typer.Context,
    port: options.ServerPort = None,
    all_: Annotated[bool, typer.Option("--all", help="Every server r1 started with sleep mode.")] = False,
    json_out: options.Json = False,
) -> None:
    """Wake a sleeping server now (any request would too; this one does it ahead)."""
    from r1cli.server import sleep as sleep_mod

    env: Environment = ctx.obj
    records = sleep_mod.servers_for(port, all_, env.note, "wake")
    results = []
    for record in records:
        done = sleep_mod.wake(record)
        taken = sleep_mod.describe_memory(done.memory)
        if done.already:
            env.note(f"r1: {record.served_name} on port {record.port} is awake already")
        else:
            env.note(f"r1: woke {record.served_name} on port {record.port} in {done.seconds:.2f} s (it slept at level {done.level})"
                     + (f"; GPU memory taken: {taken}" if taken else ""))
        results.append({"port": record.port, "seconds": round(done.seconds, 3), "was_asleep": not done.already,
                        "level": done.level if not done.already else None,
                        "gpu_mib_taken": {str(i): round(mib, 1) for i, mib in done.memory}})
    if json_out:
        print(json.dumps({"servers": results}))
