"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class DeployKitError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do.

    ``exit_code`` follows the CLI convention: 2 for bad input (usage), 1 for a check
    that failed or an operation that could not be done.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(DeployKitError):
    """Bad input: an unknown name, an impossible size, a missing file."""

    exit_code = 2


class MissingDependencyError(DeployKitError):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 1

    def __init__(self, module: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{module}' is needed{what} but is not installed",
            hint=f"pip install 'deploykit[{extra}]'",
        )
        self.module = module
        self.extra = extra


class CheckFailedError(DeployKitError):
    """A verification ran and the result was outside tolerance."""

    exit_code = 1
