"""The process exit codes of ``issuer token`` and ``issuer build``, documented in the README."""

from __future__ import annotations


class ExitCode:
    OK = 0
    USAGE = 2
    CLAIM_REFUSED = 3
    RUN_REJECTED = 4
    CLAIM_SPENT = 5
    TIMED_OUT = 6
    UNAVAILABLE = 7
    # issuer build
    BUILD_FAILED = 8
    NOT_TRUSTED = 9
    BUILDER_LIMIT = 10
    TOKEN_REFUSED = 11
    BUILDER_UNAVAILABLE = 12
    CONTEXT_TOO_LARGE = 13


class ClientError(Exception):
    """Ends the step: ``str(error)`` is printed as an ``::error::`` and never holds a secret."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
