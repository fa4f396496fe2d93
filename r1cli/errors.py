"""Exit statuses and the one error family every command raises."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected error
    USAGE = 2  # bad usage / bad input
    NO_SERVER = 3  # no server running or reachable
    NO_ANSWER = 4  # the model produced no answer (ask)
    START_FAILED = 5  # the server failed to start
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """What the status says, as --help, the man page and the README list it."""
        return _MEANINGS[self]


_MEANINGS = {ExitStatus.OK: "ok", ExitStatus.ERROR: "error", ExitStatus.USAGE: "bad usage",
             ExitStatus.NO_SERVER: "no server", ExitStatus.NO_ANSWER: "no answer",
             ExitStatus.START_FAILED: "server failed to start", ExitStatus.INTERRUPTED: "interrupted"}


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
