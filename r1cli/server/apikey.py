"""`r1 serve`'s API key: from --api-key-file, R1_API_KEY or --api-key, and never left in an argv.

Every user of the machine can read every process's argv (`ps -eo args`). vLLM gets the key through
its environment (VLLM_API_KEY), which only the same user (and root) can read. When the key was typed
on r1's own command line (`--api-key K`, or vLLM's `-- --api-key K`), r1 starts itself again at once
(execve: same pid) with the key moved into R1_API_KEY, so its argv carries the key only for the few
milliseconds before that.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Callable

from r1cli.errors import UsageError

ENV = "R1_API_KEY"
FLAG = "--api-key"


def read_file(path: Path, warn: Callable[[str], None] | None = None) -> str:
    """The key in PATH (surrounding whitespace and the final newline dropped)."""
    path = path.expanduser()
    try:
        text = path.read_text(encoding="utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise UsageError(f"cannot read --api-key-file {path}: {why}") from None
    key = text.strip()
    if not key or "\n" in key:
        raise UsageError(f"--api-key-file {path} must hold one key on one line",
                         hint="e.g. printf %s \"$KEY\" > key.txt && chmod 600 key.txt")
    if mode & 0o077 and warn:
        warn(f"warning: {path} is readable by others (mode {mode:04o}): chmod 600 {path}")
    return key


def lift_from_extra(extra: list[str]) -> tuple[list[str], str | None]:
    """vLLM's own `--api-key K` after `--`: taken out of its argv (vLLM reads VLLM_API_KEY instead)."""
    rest: list[str] = []
    key = None
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg == FLAG and i + 1 < len(extra):
            key = extra[i + 1]
            i += 2
            continue
        if arg.startswith(FLAG + "="):
            key = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return rest, key


def carries_key(argv: list[str]) -> bool:
    return any(arg == FLAG or arg.startswith(FLAG + "=") for arg in argv)


def without_key(argv: list[str]) -> list[str]:
    """ARGV without `--api-key K` / `--api-key=K`, before or after `--`."""
    rest, _ = lift_from_extra(argv)
    return rest


def reexec_without_key(key: str) -> None:
    """When this process's own argv carries the key, replace the process by one whose argv does not
    (the key moves into R1_API_KEY). Returns only when there is nothing to hide: argv given in-process
    (tests, the library) is not this process's argv."""
    argv = sys.argv[1:]
    if "serve" not in argv or not carries_key(argv):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "r1cli", *without_key(argv)], {**os.environ, ENV: key})
