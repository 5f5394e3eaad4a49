"""The engine's one error type.

Every expected failure (bad input, a daemon that is down, a missing tool) is raised as a
`BottleError` whose text reads as a sentence naming the input, followed by what to do. The CLI
prints it without a traceback (``--debug`` shows one); the language server shows it with
``window/showMessage``.
"""

from __future__ import annotations


class BottleError(Exception):
    """An expected failure with a message for people and an optional fix."""

    def __init__(self, message: str, *, fix: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class UsageError(BottleError):
    """The command line itself is wrong (exit code 2)."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message, fix=fix, exit_code=2)


class CommandFailed(BottleError):
    """A command run inside a sandbox ended with a failure: what it wrote may not be all it was
    meant to (a file it could not read, a program missing from the image)."""
