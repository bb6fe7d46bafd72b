"""WAL segments as the writer holds them: a preallocated mmap'd file, or memory.

A file segment is allocated with posix_fallocate before it is mapped, so a
full disk shows up here as an OSError in the flusher — never as SIGBUS inside
log(). A memory segment is the fallback when no file segment is ready; it is
not durable and its size counts against the writer's memory bound.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from ..format.atomic import fsync_dir
from ..format.wal import SEGMENT_HEADER_SIZE, SYNCED_OFF, SYNCED_OFF_POS, encode_segment_header

__all__ = ["Segment", "allocate_file_segment", "memory_segment", "put_record"]


class Segment:
    __slots__ = ("buf", "view", "path", "cap", "segno", "off", "read", "defs", "max_seq", "sealed", "synced", "_fd")

    def __init__(self, buf: mmap.mmap | bytearray, path: Path | None, segno: int, fd: int = -1) -> None:
        self.buf = buf
        self.view = memoryview(buf)
        self.path = path
        self.cap = len(buf)
        self.segno = segno
        self.off = SEGMENT_HEADER_SIZE  # end of committed records (writer)
        self.read = SEGMENT_HEADER_SIZE  # end of decoded records (flusher)
        self.defs = 0  # how many of the writer's definition records it holds
        self.max_seq = -1  # highest seq decoded from it
        self.sealed = False  # writer moved on to a later segment
        self.synced = SEGMENT_HEADER_SIZE  # known on stable storage up to here
        self._fd = fd

    @property
    def durable(self) -> bool:
        return self.path is not None

    def sync(self, upto: int) -> None:
        """msync the records below ``upto``, then record that in ``synced_off`` (spec §8.2).

        Bounds what a power loss can cost: after a reboot, readers trust a
        segment only up to its ``synced_off``.
        """
        if isinstance(self.buf, mmap.mmap) and upto > self.synced:
            self.buf.flush()
            SYNCED_OFF.pack_into(self.buf, SYNCED_OFF_POS, upto)
            self.buf.flush(0, mmap.PAGESIZE)
            self.synced = upto

    def close(self, unlink: bool) -> None:
        self.view.release()
        if isinstance(self.buf, mmap.mmap):
            self.buf.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if unlink and self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def allocate_file_segment(path: Path, size: int, incarnation: int, segno: int) -> Segment:
    """Create, reserve and map a new segment file (raises OSError on a full disk)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.pwrite(fd, encode_segment_header(incarnation, segno), 0)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno not in (95, 22):  # EOPNOTSUPP / EINVAL: filesystem cannot reserve; write zeros
                raise
            _write_zeros(fd, size, SEGMENT_HEADER_SIZE)
        fsync_dir(path.parent)  # the segment's name must survive a power loss (spec §9.2)
        buf = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return Segment(buf, path, segno, fd)


def _write_zeros(fd: int, size: int, off: int) -> None:
    chunk = bytes(1 << 20)
    while off < size:
        off += os.pwrite(fd, chunk[: min(len(chunk), size - off)], off)


def memory_segment(size: int, incarnation: int, segno: int) -> Segment:
    buf = bytearray(size)
    buf[:SEGMENT_HEADER_SIZE] = encode_segment_header(incarnation, segno)
    return Segment(buf, None, segno)


def put_record(seg: Segment, record: bytes) -> bool:
    """Append a complete record (header included), header last. False if it does not fit."""
    off = seg.off
    end = off + len(record)
    if end > seg.cap:
        return False
    seg.buf[off + 8 : end] = record[8:]
    seg.buf[off : off + 8] = record[:8]
    seg.off = end
    return True
