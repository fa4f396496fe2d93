"""Exit statuses and the one error family every command raises."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected error
    USAGE = 2  # bad usage / bad input
    NO_SERVER = 3  # no server running or reachable
    NO_ANSWER = 4  # the model produced no answer (ask)
    START_FAILED = 5  # the server failed to start (or, with --dry-run, would fail)
    FAILURE_FOUND = 6  # `r1 logs --explain` found a failure in the log
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """What the status says in a word or two, as --help lists it."""
        return _MEANINGS[self]

    @property
    def detail(self) -> str:
        """What the status says in full, as the README and the man page list it."""
        return _DETAILS[self]


_MEANINGS = {ExitStatus.OK: "ok", ExitStatus.ERROR: "error", ExitStatus.USAGE: "bad usage",
             ExitStatus.NO_SERVER: "no server", ExitStatus.NO_ANSWER: "no answer",
             ExitStatus.START_FAILED: "server failed to start", ExitStatus.FAILURE_FOUND: "failure found",
             ExitStatus.INTERRUPTED: "interrupted"}
_DETAILS = {
    ExitStatus.OK: "ok",
    ExitStatus.ERROR: "unexpected error (one line; `R1_DEBUG=1` shows the traceback); "
                      "`r1 eval --fail-under`: pass@1 below the threshold",
    ExitStatus.USAGE: "bad usage or bad input",
    ExitStatus.NO_SERVER: "no server running or reachable",
    ExitStatus.NO_ANSWER: "no answer produced (the reasoning was cut by the token limit)",
    ExitStatus.START_FAILED: "the server failed to start (`r1 serve --dry-run`: a start would fail)",
    ExitStatus.FAILURE_FOUND: "`r1 logs --explain` found a failure in the log (cause, lines and fix printed)",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}


class R1Error(Exception):
    """An error meant for the user: one line, an exit status, maybe a hint."""

    status = ExitStatus.ERROR

    def __init__(self, message: str, *, hint: str | None = None, status: ExitStatus | None = None,
                 details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []
        if status is not None:
            self.status = status


class UsageError(R1Error):
    status = ExitStatus.USAGE


class NoServerError(R1Error):
    status = ExitStatus.NO_SERVER


class NoAnswerError(R1Error):
    status = ExitStatus.NO_ANSWER


class StartFailedError(R1Error):
    status = ExitStatus.START_FAILED
