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
    # `r1 pull` (and serve's pull of a model not in the cache), `r1 rm`: one status per cause, so a script
    # can tell "log in" from "free some disk" without parsing the message.
    NOT_FOUND = 7  # no such repo on the Hub (or private), or for rm: not in the cache
    GATED = 8  # a gated repo: its terms must be accepted and a token given
    BAD_TOKEN = 9  # the Hub refused the token
    NO_NETWORK = 10  # the Hub could not be reached, or HF_HUB_OFFLINE forbids trying
    BAD_REVISION = 11  # the repo has no such branch, tag or commit
    NO_SPACE = 12  # the download would not fit on the cache's filesystem
    IN_USE = 13  # `r1 rm`: the model is being served
    BUSY = 14  # `r1 sleep`: requests stayed in flight for the whole wait
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
             ExitStatus.NOT_FOUND: "not found", ExitStatus.GATED: "gated repo", ExitStatus.BAD_TOKEN: "bad token",
             ExitStatus.NO_NETWORK: "no network", ExitStatus.BAD_REVISION: "bad revision",
             ExitStatus.NO_SPACE: "no space", ExitStatus.IN_USE: "model in use",
             ExitStatus.BUSY: "server busy",
             ExitStatus.INTERRUPTED: "interrupted"}
_DETAILS = {
    ExitStatus.OK: "ok",
    ExitStatus.ERROR: "unexpected error (one line; `R1_DEBUG=1` shows the traceback); "
                      "`r1 eval --fail-under`: pass@1 below the threshold",
    ExitStatus.USAGE: "bad usage or bad input",
    ExitStatus.NO_SERVER: "no server running or reachable, or what answers is not an OpenAI-compatible API",
    ExitStatus.NO_ANSWER: "no answer produced (the reasoning was cut by the token limit)",
    ExitStatus.START_FAILED: "the server failed to start (`r1 serve --dry-run`: a start would fail)",
    ExitStatus.FAILURE_FOUND: "`r1 logs --explain` found a failure in the log (cause, lines and fix printed)",
    ExitStatus.NOT_FOUND: "`r1 pull`, `r1 serve`: no such model repo on the Hub (or a private one the token may not see); "
                          "`r1 rm`: the model is not in the cache",
    ExitStatus.GATED: "`r1 pull`, `r1 serve`: a gated repo: accept its terms on its Hub page, then give a token (HF_TOKEN)",
    ExitStatus.BAD_TOKEN: "`r1 pull`, `r1 serve`: the Hub refused the token (HF_TOKEN or the saved login)",
    ExitStatus.NO_NETWORK: "`r1 pull`, `r1 serve` of a model not in the cache: the Hub (HF_ENDPOINT) could not be "
                           "reached, or HF_HUB_OFFLINE is set",
    ExitStatus.BAD_REVISION: "`r1 pull --revision`: the repo has no such branch, tag or commit",
    ExitStatus.NO_SPACE: "`r1 pull`, `r1 serve`: the download would not fit on the cache's filesystem (nothing was fetched)",
    ExitStatus.IN_USE: "`r1 rm`: the model is being served (stop it first)",
    ExitStatus.BUSY: "`r1 sleep`: requests were still in flight when the wait ended (nothing was put to sleep)",
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


class Interrupted(R1Error):
    """A Ctrl-C that r1 answers with what it kept (eval's samples, bench's finished requests) and where."""

    status = ExitStatus.INTERRUPTED


class HubError(R1Error):
    """What the Hugging Face Hub answered to a pull (or that it could not be asked): the status says which."""
