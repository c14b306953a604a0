"""The process exit codes of ``issuer token``, documented in the README."""

from __future__ import annotations


class ExitCode:
    OK = 0
    USAGE = 2
    CLAIM_REFUSED = 3
    RUN_REJECTED = 4
    CLAIM_SPENT = 5
    TIMED_OUT = 6
    UNAVAILABLE = 7


class ClientError(Exception):
    """Ends the step: ``str(error)`` is printed as an ``::error::`` and never holds a secret."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
