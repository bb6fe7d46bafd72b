"""Errors of the syncer: a remote operation failed for good, or the remote cannot be used at all."""

from __future__ import annotations

from ..format.errors import FormatError, RunsyncError

__all__ = ["RemoteError", "RemoteSetupError", "RunConflictError"]


class RemoteError(RunsyncError):
    """A remote operation failed for good (permanent error, or retries exhausted)."""


class RemoteSetupError(RemoteError):
    """The remote cannot be used at all (no backend installed, malformed URL, unusable credentials): stop,
    do not retry per run."""


class RunConflictError(FormatError):
    """A pull found a different run under the same id in the destination (spec §12.6); it changed nothing."""
