"""`r1 models`: the models in the Hugging Face cache that r1 can serve (id, revision, size, format, preset,
whether one is served now), on stdout as a table or with --json as JSON."""


import json

import typer

from r1cli import options
from r1cli.console import Environment


def models(ctx: typer.Context, json_: options.Json = False) -> int:
    """List the models in the Hugging Face cache that r1 can serve."""
    from r1cli import machine
    from r1cli.hub import cache
    from r1cli.server import state

    env: Environment = ctx.obj
    found = cache.cached_models(served=state.served_models())
    if json_:
        env.stdout.write(json.dumps([m.as_json() for m in found]) + "\n")
    elif found:
        env.stdout.write("\n".join(cache.table(found)) + "\n")
    else:
        env.note(f"r1: no model r1 can serve in the Hugging Face cache ({machine.hf_hub_cache()}): "
                 "`r1 pull MODEL` fetches one")
    env.stdout.flush()
    return 0
