"""Running pull/models/rm in-process (cli.run with an Environment) and as a real process (`python -m r1cli`)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def r1(*args: str, env: dict | None = None, timeout: float = 120, stdin: str | None = None,
       tty_stderr: bool = False) -> tuple[int, str, str]:
    """`r1 ARGS` in this process: (status, stdout, stderr)."""
    from r1cli import cli
    from r1cli.console import Environment

    out, err = io.StringIO(), (Tty() if tty_stderr else io.StringIO())
    inp = io.StringIO(stdin or "")
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        status = cli.run(list(args), Environment(_stdin=inp, _stdout=out, _stderr=err))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return status, out.getvalue(), err.getvalue()


def spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`r1 ARGS` as a real process with pipes (for Ctrl-C and concurrent pulls)."""
    return subprocess.Popen([sys.executable, "-m", "r1cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def r1_process(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[int, str, str]:
    proc = spawn(*args, env=env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
