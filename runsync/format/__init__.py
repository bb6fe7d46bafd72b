"""The run format (spec/): on-disk structures, their encodings and rules.

Knows nothing of the writer or the syncer; both depend on it.
"""

from .errors import (
    CorruptFileError,
    FormatError,
    NotARunError,
    RunsyncError,
    StreamClaimedError,
    UnsupportedVersionError,
)
from .version import FORMAT_VERSION

__all__ = [
    "FORMAT_VERSION",
    "RunsyncError",
    "FormatError",
    "CorruptFileError",
    "UnsupportedVersionError",
    "NotARunError",
    "StreamClaimedError",
]
