"""The console log files of a run (spec §15): ``console/<stream>.<inc>.<n>.log``, whole lines only.

Created exclusively, only appended, rolled by size before a line that would not fit; a write that fails
part-way is cut back to its last whole line, and a file left with nothing is removed.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from .console_fds import high_fd

__all__ = ["LogFiles"]


class LogFiles:
    """``<prefix>.<n:06d>.log`` files in ``directory``: whole lines appended, rolled by size."""

    def __init__(self, directory: Path, prefix: str, roll_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.prefix = prefix
        self.roll_bytes = roll_bytes
        self.n = _next_number(directory, prefix)
        self.fd = -1
        self.size = 0

    def path(self) -> Path:
        return self.directory / f"{self.prefix}.{self.n:06d}.log"

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines); raises OSError, after which nothing more is written."""
        while data:
            if self.fd < 0:
                self._open()
            room = self.roll_bytes - self.size
            if len(data) <= room:
                cut = len(data)
            else:
                cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
                if cut == 0:  # the next line does not fit
                    if self.size:
                        self._roll()
                        continue
                    cut = data.find(b"\n") + 1 or len(data)  # longer than roll_bytes: whole, alone
            self._write(data[:cut])
            data = data[cut:]
            if data:
                self._roll()

    def _open(self) -> None:
        for _ in range(1000):
            try:
                fd = os.open(self.path(), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                self.n += 1
                continue
            self.fd = high_fd(fd)  # fd 1 or 2 may be closed: a log file there would catch the program's output
            self.size = 0
            return
        raise OSError(errno.EEXIST, "no free log file number", str(self.path()))

    def _write(self, chunk: bytes) -> None:
        if os.fstat(self.fd).st_nlink == 0:
            raise OSError(errno.ENOENT, "log file was deleted", str(self.path()))
        view = memoryview(chunk)
        done = 0
        try:
            while done < len(chunk):
                n = os.write(self.fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path()))
                done += n
        except OSError:
            keep = chunk.rfind(b"\n", 0, done) + 1
            if keep < done:  # a partial line reached the file: cut back to the last whole line
                try:
                    os.ftruncate(self.fd, self.size + keep)
                except OSError:
                    pass
            self.size += keep
            if self.size == 0:  # nothing whole in a file we created: leave no empty file behind
                try:
                    os.unlink(self.path())
                except OSError:
                    pass
            raise
        self.size += done

    def _roll(self) -> None:
        self.close()
        self.n += 1

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass


def _next_number(directory: Path, prefix: str) -> int:
    """One past the highest number of an existing ``<prefix>.<n>.log``; 0 if none."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d{6,})\.log")
    top = -1
    for name in os.listdir(directory):
        m = pattern.fullmatch(name)
        if m:
            top = max(top, int(m.group(1)))
    return top + 1
