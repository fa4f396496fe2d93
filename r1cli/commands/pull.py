"""`r1 pull`: download the files vLLM loads for a model into the Hugging Face cache, with one progress bar
(plain lines when stderr is not a terminal); stdout gets the snapshot folder, or with --json the plan."""


import json
from typing import Annotated, Optional

import typer

from r1cli import completion, config, options
from r1cli.console import Environment
from r1cli.errors import R1Error
from r1cli.hub.pull import WORKERS

# Not options.ModelArg: a local path has nothing to pull. R1_MODEL_PATH as serve's: `r1 pull` fetches what
# `r1 serve` would serve.
ModelArg = Annotated[str, typer.Argument(help="Hugging Face id or a preset: " + " ".join(config.PRESETS) + ".",
                                         envvar="R1_MODEL_PATH", autocompletion=completion.models)]
PullQuant = Annotated[Optional[str], typer.Option("--quant", "-q", help="awq or gptq: pull the preset's pre-quantized checkpoint (the one `r1 serve MODEL --quant` serves).")]
Revision = Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit [default: main].")]
Workers = Annotated[int, typer.Option("--workers", min=1, max=64, help="Files downloaded at once (as `hf download --max-workers`).")]


def pull(
    ctx: typer.Context,
    model: ModelArg = config.DEFAULT_MODEL,
    revision: Revision = None,
    quant: PullQuant = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be fetched (files, bytes, free space) and fetch nothing.")] = False,
    workers: Workers = WORKERS,
    json_: options.Json = False,
) -> int:
    """Download a model into the Hugging Face cache (what vLLM loads, not the whole repo; parallel, verified, resumable)."""
    from r1cli.hub import pull as hub

    env: Environment = ctx.obj
    repo = hub.resolve_repo(model, quant)
    try:
        return _pull(env, hub, repo, revision, dry_run, workers, json_)
    except R1Error as problem:
        from r1cli.commands import serve  # item 2's rule for a name that is no model; loaded only then

        if config.find_preset(model) is None and serve.unavailable(problem):  # a typo ends as a Hub error
            near = serve.say_not_a_model(problem, model)
            if near is not None:
                problem.hint = "r1 serve demo (the demo ships inside r1: nothing to pull)" if near == "demo" \
                    else f"r1 pull {near}"
        raise


def _pull(env: Environment, hub, repo: str, revision: str | None, dry_run: bool, workers: int, json_: bool) -> int:
    if dry_run:
        plan = hub.plan_pull(repo, hub.check_revision(revision))
        free = hub.free_bytes(plan.cache)
        env.note(f"r1: {repo}@{plan.commit[:7]}: {len(plan.missing)} of {len(plan.files)} files to fetch, "
                 f"{hub.human(plan.to_fetch)} of {hub.human(plan.total)}; {hub.human(free)} free in {plan.cache}")
        _print_result(env, plan, json_)
        hub.check_space(plan)
        return 0
    plan = hub.pull(env, repo, revision, workers=workers)
    if plan.fetched or plan.seconds:
        rate = plan.fetched / plan.seconds if plan.seconds else 0.0
        env.note(f"r1: pulled {repo}@{plan.commit[:7]}: {hub.human(plan.fetched)} in {plan.seconds:.1f} s "
                 f"({hub.human(rate)}/s); {hub.human(plan.total)} in the cache")
    else:
        env.note(f"r1: {repo}@{plan.commit[:7]} is in the cache already ({hub.human(plan.total)}): nothing to fetch")
    _print_result(env, plan, json_)
    return 0


def _print_result(env: Environment, plan, json_: bool) -> None:
    if json_:
        env.stdout.write(json.dumps(plan.as_json()) + "\n")
    else:
        env.stdout.write(f"{plan.snapshot}\n")
    env.stdout.flush()
