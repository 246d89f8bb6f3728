"""One exception family; each error carries its exit code and a hint.

Exit codes (README's table; `--help` epilogs): 0 a valid patch; 1 no patch (the model gave
up or a limit or budget was hit; for `validate`: the patch does not parse or apply; for
`batch`: its budget was spent with instances not run); 2 usage error
(flags, settings, inputs, a folder that is not a git repository); 3 the model server
failed after retries; 4 the runtime failed (no Docker engine, image missing, container
died); 5 our own final validation rejected a patch the agent had accepted (a bug of
cwm-agent); 6 `--apply` could not apply the patch to the user's tree (the patch itself was
still delivered); 130 interrupted.
"""

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
    """A patch failed validation (the model is told; at the final gate, a bug: exit 5)."""

    exit_code = 5


class PatchRejected(CwmError):
    """`cwm-agent validate`: the user's patch does not parse or does not apply."""

    exit_code = 1


class ApplyError(CwmError):
    """``--apply``: the patch could not be applied to the user's tree (nothing was written)."""

    exit_code = 6


class Interrupted(CwmError):
    exit_code = 130


class ToolError(Exception):
    """A tool call the model made could not be carried out; the message goes back to it."""


class FormatError(Exception):
    """The model's reply was not one valid tool call; the message goes back to it."""
