"""`r1 rm`: delete a model from the Hugging Face cache, after a confirmation (--yes for scripts), and say what
was freed. A model being served is refused."""


from typing import Annotated, Optional

import typer

from r1cli import completion, config
from r1cli.console import Environment
from r1cli.errors import ExitStatus, UsageError

# Not options.ModelArg: that one reads R1_MODEL_PATH, and a variable left in the environment must not pick
# what rm deletes.
ModelArg = Annotated[str, typer.Argument(help="Hugging Face id or a preset: " + " ".join(config.PRESETS) + ".",
                                         autocompletion=completion.cached_models, show_default=False)]


def rm(
    ctx: typer.Context,
    model: ModelArg,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Delete only this revision (a commit, its prefix, or a branch) [default: all of them].")] = None,
    quant: Annotated[Optional[str], typer.Option("--quant", "-q", help="awq or gptq: the preset's pre-quantized checkpoint.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (for scripts).")] = False,
) -> int:
    """Delete a model from the Hugging Face cache (asks first; --yes for scripts)."""
    from r1cli.hub import cache, pull
    from r1cli.server import state

    env: Environment = ctx.obj
    removal = cache.plan_removal(pull.resolve_repo(model, quant), revision, served=state.served_models())
    what = f"{removal.repo} ({len(removal.commits)} revision{'s' if len(removal.commits) > 1 else ''}, " \
           f"{pull.human(removal.freed)})"
    if not yes and not _confirmed(env, f"Delete {what} from the Hugging Face cache? [y/N] "):
        env.note(f"r1: kept {removal.repo}: nothing deleted")
        return int(ExitStatus.OK)  # the user's answer, done as asked: not an interrupt
    freed = cache.remove(removal)
    env.note(f"r1: deleted {removal.repo}: freed {pull.human(freed)}")
    return 0


def _confirmed(env: Environment, question: str) -> bool:
    if not env.stdin_isatty:
        raise UsageError("r1 rm asks before deleting, and stdin is not a terminal", hint="add --yes to delete without asking")
    env.stderr.write(question)
    env.stderr.flush()
    answer = env.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
