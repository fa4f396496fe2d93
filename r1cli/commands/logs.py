"""`r1 logs`: show or follow a server's log, or say why a vLLM log (any, not only r1's) failed."""


import collections
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Optional

import typer

from r1cli import options
from r1cli.console import Environment
from r1cli.errors import ExitStatus, NoServerError, R1Error, UsageError
from r1cli.lazy import lazy_import

# Loaded on first use: `r1 --help` and the other commands import this module for its options alone.
state = lazy_import("r1cli.server.state")
server_logs = lazy_import("r1cli.server.logs")


def logs(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Argument(metavar="[FILE|-]", show_default=False,
                                                    help="With --explain: any vLLM log file, or - for stdin (default: the r1 server's log).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many last lines to show.")] = 50,
    port: options.ServerPort = None,
    explain_: Annotated[bool, typer.Option("--explain", help="Say why vLLM failed (cause, the lines that show it, the fix), or the last stage it reached.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With --explain: one JSON object on stdout.")] = False,
) -> int:
    """Show or follow a server's log; --explain diagnoses any vLLM log (systemd, Docker, a pasted one)."""
    env: Environment = ctx.obj
    if explain_:
        return explain(env, source, port, json_out=json_out)
    if source is not None or json_out:
        raise UsageError("FILE and --json go with --explain", hint="r1 logs --explain FILE (or - for stdin)")
    try:
        record = state.pick(port)
    except NoServerError:  # stopped (or failed to start): its log is kept, show that one and say whose
        path = _last_log(env, port)
        show(env, None, lines=lines, follow=follow, path=path)
        return 0
    show(env, record, lines=lines, follow=follow)
    return 0


def _last_log(env: Environment, port: int | None) -> Path:
    found = state.last_log(port)
    if found is None:
        from r1cli import machine

        where = f" on port {port}" if port is not None else ""
        raise NoServerError(f"no r1 server is recorded{where}, and r1 has kept no server log",
                            hint=machine.serve_fix(port))
    path, who = found
    env.note(f"r1: no r1 server is running; the log of the last one, {who or 'the newest r1 kept'}: {path}")
    return path


def show(env: Environment, record: "state.ServerRecord | None", *, lines: int, follow: bool,
         path: Path | None = None) -> None:
    """The last LINES of the log (RECORD's, else PATH), then with FOLLOW new lines while RECORD's server runs."""
    path = Path(record.log_path) if record is not None else path
    # A pipe, a file or NO_COLOR gets plain text: the colours are the router's (vLLM writes none to its log).
    shown = (lambda line: line) if env.out_color else server_logs.plain
    try:
        fh = open(path, "r", errors="replace")
    except OSError as exc:
        raise R1Error(f"cannot read the log {path}: {exc.strerror}") from None
    with fh:
        for line in collections.deque(fh, maxlen=max(lines, 0)):
            env.stdout.write(shown(line))
        env.stdout.flush()
        while follow:
            line = fh.readline()
            if line:
                env.stdout.write(shown(line))
                env.stdout.flush()
                continue
            if record is None:
                return  # the server of this log is no longer running
            if not state.is_alive(record):
                env.note(f"r1: the server on port {record.port} has exited")
                return
            time.sleep(0.2)


# --- --explain ----------------------------------------------------------------------------------------------


def explain(env: Environment, source: str | None, port: int | None, *, json_out: bool) -> int:
    """Diagnose a vLLM log: FILE, `-` (stdin) or, without one, the r1 server's own log. Exit 6
    (FAILURE_FOUND) when it shows a failure, so that scripts can branch on it; 0 when it shows none."""
    from r1cli.server.logs import explain as judge

    if source == "-":
        if env.stdin_isatty:
            env.note("r1: reading a vLLM log from the terminal; Ctrl-D ends it")
        name, result = "-", judge(_lines(env.stdin.buffer if hasattr(env.stdin, "buffer") else env.stdin))
    else:
        path = Path(source).expanduser() if source else _server_log(env, port)
        try:
            with open(path, "rb") as fh:
                name, result = str(path), judge(_lines(fh))
        except OSError as exc:
            raise UsageError(f"cannot read the log {path}: {exc.strerror or exc}",
                             hint="give a readable vLLM log file, or - to read one from stdin") from None
    if json_out:
        print(json.dumps({"log": name, **result.as_json()}, indent=1))
    else:
        _render(env, result)
    return ExitStatus.FAILURE_FOUND if result.fatal is not None else ExitStatus.OK


def _lines(stream: IO) -> Iterator[str]:
    """Lines as r1 reads vLLM's log: split on newlines only (progress bars' carriage returns stay in)."""
    for raw in stream:
        yield raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _server_log(env: Environment, port: int | None) -> Path:
    """The running server's log; when none runs, the last server's (it may have just died), else the newest log r1 kept."""
    try:
        return Path(state.pick(port).log_path)
    except NoServerError:
        found = state.last_log(port)
        if found is None:
            raise NoServerError("no r1 server is running and r1 has kept no server log",
                                hint="give the log: r1 logs --explain FILE (or - for stdin)") from None
        path, who = found
        env.note(f"r1: no r1 server is running; explaining the log of the last one, {who}: {path}" if who else
                 f"r1: no r1 server is running; explaining the newest log r1 kept, {path}")
        return path


def _render(env: Environment, result) -> None:
    from r1cli.server.logs import MILESTONES

    out = env.stdout
    reached = (f"{MILESTONES[result.stage.key]} ({result.stage.label})" if result.stage else None)
    if result.fatal is not None:
        out.write(f"cause: {result.fatal.message}\n")
        for line in result.evidence:
            out.write(f"  | {line}\n")
        out.write(f"fix: {result.fatal.hint}\n")
        if reached:
            out.write(f"last stage before it: {reached}\n")
    elif result.stopped_by:  # a stop asked for (r1's, Ctrl-C, kill) is no failure, whatever errors it caused
        out.write(f"no failure found: stopped by a signal ({result.stopped_by})"
                  + (f"; last stage reached: {reached}\n" if reached else "\n"))
    elif reached:
        out.write(f"no failure found; last stage reached: {reached}\n")
    else:
        out.write(f"no failure found, and no vLLM startup line in {result.lines} lines: is this vLLM's log?\n")
    out.flush()
