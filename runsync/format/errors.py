"""The one exception hierarchy of runsync (spec §1.3: errors name the file, key or version)."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "RunsyncError",
    "FormatError",
    "CorruptFileError",
    "UnsupportedVersionError",
    "NotARunError",
    "StreamClaimedError",
    "DataLossWarning",
]


class RunsyncError(Exception):
    """Root of every error runsync raises on purpose."""


class FormatError(RunsyncError):
    """A file on disk does not follow the run format; carries the offending path."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class CorruptFileError(FormatError):
    """A file is truncated, torn or fails its checksum."""


class UnsupportedVersionError(FormatError):
    """A file was written by a format major version this reader does not know."""


class NotARunError(FormatError):
    """A directory is not a runsync run directory (no valid run.json)."""


class StreamClaimedError(RunsyncError):
    """Another live process already writes this stream of the run (spec §6)."""


class DataLossWarning(UserWarning):
    """Records could not be read and were skipped, the rest was (spec §8.5: a damaged WAL record)."""
