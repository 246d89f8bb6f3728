"""One exception family; each error carries its exit code (DESIGN.md) and a hint."""

from __future__ import annotations


class CwmError(Exception):
    """Base of every error the CLI maps to an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(CwmError):
    exit_code = 2


class ModelError(CwmError):
    """The model service failed after retries."""

    exit_code = 3


class ContextLengthError(CwmError):
    """The conversation no longer fits the model's context; never retried."""

    exit_code = 1


class RuntimeFailure(CwmError):
    """The runtime could not be set up or died (no engine, image missing, ...)."""

    exit_code = 4


class PatchError(CwmError):
    """A patch failed validation."""

    exit_code = 5


class Interrupted(CwmError):
    exit_code = 130


class ToolError(Exception):
    """A tool call the model made could not be carried out; the message goes back to it."""


class FormatError(Exception):
    """The model's reply was not one valid tool call; the message goes back to it."""
