"""What both services raise when their environment settings are wrong."""

from __future__ import annotations


class ConfigError(Exception):
    """One setting is missing or malformed: the message names it and what is wrong."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
