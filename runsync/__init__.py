"""runsync: log ML training runs offline into a specified columnar format, sync them anywhere later."""

from .format.errors import (
    CorruptFileError,
    FormatError,
    NotARunError,
    RunsyncError,
    StreamClaimedError,
    UnsupportedVersionError,
)
from .format.version import FORMAT_VERSION
from .reader import RunView, open_run, runs, smooth
from .writer import ForkedRunError, Run, RunFinishedError, Settings, finish, init, log

__version__ = "0.1.0"

__all__ = [
    "init",
    "log",
    "finish",
    "Run",
    "Settings",
    "open_run",
    "RunView",
    "runs",
    "smooth",
    "FORMAT_VERSION",
    "RunsyncError",
    "FormatError",
    "CorruptFileError",
    "UnsupportedVersionError",
    "NotARunError",
    "StreamClaimedError",
    "RunFinishedError",
    "ForkedRunError",
]
