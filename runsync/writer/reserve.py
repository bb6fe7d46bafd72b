"""Room for the final status.json on a full disk (spec §9.4).

A writer-private, dot-named file in the stream directory that readers and the
syncer ignore. It is allocated once the first spare segment exists, deleted to
make space for the last status write when the disk is full, and at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RESERVE_BYTES", "RESERVE_NAME", "Reserve"]

RESERVE_NAME = ".reserve"
RESERVE_BYTES = 64 << 10


class Reserve:
    """The reserve file of one stream directory."""

    def __init__(self, stream_dir: Path) -> None:
        self.path = stream_dir / RESERVE_NAME

    def make(self) -> None:
        """Allocate the reserve; without one the final status write may fail on a full disk, as before."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError:
            return
        try:
            # Allocated, not just sized: a sparse copy of a crashed run's reserve would hold no room.
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except (OSError, AttributeError):
            self.drop()  # an empty reserve would only pretend to free room
        finally:
            os.close(fd)

    def drop(self) -> bool:
        """Delete the reserve; True if there was one to free."""
        try:
            os.unlink(self.path)
            return True
        except OSError:
            return False
