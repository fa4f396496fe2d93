"""`r1 stop`: stop a server r1 started, its whole process tree, and say what was freed."""


from typing import Annotated

import typer

from r1cli import options
from r1cli.console import Environment


def stop(
    ctx: typer.Context,
    port: options.ServerPort = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every server r1 started.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")] = 10.0,
) -> None:
    """Stop a server r1 started: its whole process tree."""
    from r1cli.server import process

    env: Environment = ctx.obj
    for line in process.stop_servers(port, all_, timeout, skipped=lambda text: env.note(f"r1: {text}")):
        env.note(line)
