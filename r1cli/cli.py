"""The `r1` command: the app, the registration of the commands (r1cli/commands/, one module each) and the
one error boundary (every failure becomes one line and an exit status).

A command's module is imported only when that command runs (or for --help and completion, which list them
all): `r1 --version` and `r1 status` do not pay for `r1 eval`'s imports. The Environment (streams, TTY
flags) reaches each command as its context object, never through a global."""


import contextlib
import functools
import importlib
import os
import sys
from typing import Annotated

import typer

from r1cli import __version__
from r1cli.console import Environment
from r1cli.errors import ExitStatus, R1Error

# Each name is a module of r1cli/commands/ holding a function of that name (eval's is `eval_`, Python's
# eval being taken), and optionally CONTEXT_SETTINGS. The order is --help's.
COMMANDS = ("serve", "route", "run", "pull", "models", "rm", "stop", "sleep", "wake", "logs", "ask", "chat", "status", "eval", "bench", "doctor")

HELP = ("Serve DeepSeek-R1 distills on vLLM and talk to them from a terminal or a pipeline.\n\n"
        "Exit statuses: " + ", ".join(f"{int(s)} {s.meaning}" for s in ExitStatus) + ".")


def _version(value: bool) -> None:
    if value:
        print(f"r1 {__version__}")
        raise typer.Exit()


def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print r1's version and exit.")] = False) -> None:
    pass


def command_function(name: str):
    module = importlib.import_module(f"r1cli.commands.{name}")
    return module, getattr(module, name, None) or getattr(module, name + "_")


def build(names: tuple[str, ...] = COMMANDS) -> typer.Typer:
    """The Typer app with these commands registered (all of them for help, docs and completion)."""
    app = typer.Typer(name="r1", help=HELP, no_args_is_help=True, add_completion=True,
                      pretty_exceptions_enable=False, rich_markup_mode=None)
    app.callback()(_root)
    for name in names:
        module, function = command_function(name)
        app.command(name=name, context_settings=getattr(module, "CONTEXT_SETTINGS", None))(function)
    return app


def full_app() -> typer.Typer:
    """Every command: what --help, the man page, the README's tables and the completions are made from."""
    return build(COMMANDS)


def _needed(argv: list[str]) -> tuple[str, ...]:
    """The commands this command line can reach: the one it names, else all (help, completion, a typo)."""
    if any(var.startswith("_R1_COMPLETE") for var in os.environ):
        return COMMANDS
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS and "--help" not in argv[: argv.index(first)]:
        return (first,)
    if first is None and "--version" in argv and "--help" not in argv:
        return ()  # answered by the root's eager option: no command is needed
    return COMMANDS


# ----------------------------------------------------------------------------------------------- entry point
class _ClosedPipe(Exception):
    """A BrokenPipeError out of a command, carried past typer (which makes any EPIPE exit 1) to the boundary."""


def _pipe_guard(callback):
    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except BrokenPipeError as exc:
            raise _ClosedPipe() from exc
    return guarded


def main(argv: list[str] | None = None) -> None:
    """The one error boundary: every failure becomes one line and an exit status."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None, environment: Environment | None = None) -> int:
    """Run one r1 command line and return its exit status; every error ends here as one message.

    `environment` (stdin/stdout/stderr and their TTY flags) lets tests run commands in-process and read
    exact output, as httpie and llm test theirs."""
    from typer._click import exceptions as click_exc

    env = environment or Environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    err = env.stderr
    try:
        command = typer.main.get_command(build(_needed(argv)))
        for sub in getattr(command, "commands", {}).values():
            sub.callback = _pipe_guard(sub.callback)
        result = command.main(args=argv, prog_name="r1", standalone_mode=False, obj=env)
        env.stdout.flush()  # here, not at exit: a reader gone by now is a closed pipe like any other
        return int(result or 0)
    except R1Error as exc:
        _report(env, exc)
        return int(exc.status)
    except click_exc.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=err)
        return ExitStatus.USAGE
    except click_exc.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        print(f"r1: error: {exc.format_message()}{hint}", file=err)
        return ExitStatus.USAGE
    except click_exc.ClickException as exc:
        print(f"r1: error: {exc.format_message()}", file=err)
        return ExitStatus.USAGE
    except (KeyboardInterrupt, typer.Abort):
        print("", file=err)
        return ExitStatus.INTERRUPTED
    except (BrokenPipeError, _ClosedPipe):
        # The reader went away (`| head -1`): what it wanted it got. Say nothing, and keep Python from
        # complaining when it flushes stdout at exit. Every command, through this one place.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.OK
    except Exception as exc:  # noqa: BLE001 - the boundary: no traceback reaches a user
        if os.environ.get("R1_DEBUG") == "1":
            raise
        print(f"r1: error: unexpected {exc.__class__.__name__}: {exc} (R1_DEBUG=1 shows the traceback)",
              file=err)
        return ExitStatus.ERROR


def _report(env: Environment, exc: R1Error) -> None:
    err = env.stderr
    err.write(f"r1: error: {exc.message}\n")
    for line in exc.details:
        err.write(f"  | {line}\n")
    if exc.hint:
        err.write(f"  fix: {exc.hint}\n")
    err.flush()
