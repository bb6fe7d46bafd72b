"""WAL segments as the writer holds them: a preallocated mmap'd file, an appended file, or memory.

A mapped segment (spec §8.2) is allocated with posix_fallocate before it is
mapped, so a full disk shows up here as an OSError in the flusher — never as
SIGBUS inside log(). Where the filesystem cannot hold a shared writable mapping
(FUSE with direct_io and several object-store filesystems: mmap fails with
ENODEV), the writer uses append segments instead (spec §8.2.1, since 1.3):
log() packs records into an anonymous in-memory buffer exactly as it would into
a mapping, and the flusher appends the buffered records to an ordinary segment
file with write(2) every round. A memory segment is the fallback when no file
segment is ready; it is not durable and its size counts against the writer's
memory bound.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

from ..format.atomic import fsync_dir
from ..format.meta import Durability
from ..format.wal import FLAG_APPEND, SEGMENT_HEADER_SIZE, SYNCED_OFF, SYNCED_OFF_POS, encode_segment_header

__all__ = [
    "Segment",
    "MappingUnsupported",
    "allocate_file_segment",
    "allocate_append_segment",
    "open_append_file",
    "adopt_file",
    "memory_segment",
    "put_record",
]

# mmap(MAP_SHARED, PROT_WRITE) errors that mean "this filesystem cannot map files", as opposed to
# a failing disk (ENOSPC, EIO) or memory (ENOMEM): FUSE direct_io gives ENODEV.
_NO_MAPPING = frozenset({errno.ENODEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EACCES})


class MappingUnsupported(OSError):
    """The filesystem under a segment does not support shared writable mappings (spec §8.2.1)."""


class Segment:
    __slots__ = ("buf", "view", "path", "cap", "segno", "off", "read", "defs", "max_seq", "sealed", "synced",
                 "mode", "written", "_fd")

    def __init__(self, buf: mmap.mmap | bytearray, path: Path | None, segno: int, fd: int = -1,
                 mode: str = Durability.MAPPED) -> None:
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
        self.mode = mode if path is not None else Durability.MEMORY
        self.written = SEGMENT_HEADER_SIZE  # append mode: the file holds the records below this offset
        self._fd = fd

    @property
    def durable(self) -> bool:
        return self.path is not None

    def sync(self, upto: int) -> None:
        """Make the records below ``upto`` durable, then record that in ``synced_off`` (spec §8.2).

        Mapped: msync. Append (spec §8.2.1): write(2) the records not yet in the
        file, fdatasync, then store ``synced_off``. Raises OSError if the
        filesystem refuses; an append segment's file is then cut back to where
        it was, so it never ends in a torn record and holds none of them.
        Bounds what a power loss (mapped) or a kill (append) can cost.
        """
        if upto <= self.synced:
            return
        if self.mode == Durability.MAPPED:
            assert isinstance(self.buf, mmap.mmap)
            self.buf.flush()
            SYNCED_OFF.pack_into(self.buf, SYNCED_OFF_POS, upto)
            self.buf.flush(0, mmap.PAGESIZE)
            self.synced = upto
        elif self.mode == Durability.APPEND and self._fd >= 0:
            start = off = self.written
            try:
                while off < upto:  # a short write continues where it stopped
                    off += os.pwrite(self._fd, self.view[off:upto], off)
                os.fdatasync(self._fd)
            except OSError:
                # All or nothing: cut the file back to the record boundary it had, so that
                # no torn record is left and the caller knows exactly what is not written.
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
                raise
            self.written = upto
            os.pwrite(self._fd, SYNCED_OFF.pack(upto), SYNCED_OFF_POS)
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
    """Create, reserve and map a new segment file.

    Raises MappingUnsupported when the filesystem cannot map it (the file is
    removed again; use ``allocate_append_segment``), OSError on a full disk.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.pwrite(fd, encode_segment_header(incarnation, segno), 0)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystem cannot reserve: write zeros
                raise
            _write_zeros(fd, size, SEGMENT_HEADER_SIZE)
            _check_reserved(fd, size, path)
        fsync_dir(path.parent)  # the segment's name must survive a power loss (spec §9.2)
        try:
            buf = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            if e.errno in _NO_MAPPING:
                raise MappingUnsupported(e.errno, e.strerror, str(path)) from None
            raise
    except BaseException:
        _discard(fd, path)
        raise
    return Segment(buf, path, segno, fd)


def _check_reserved(fd: int, size: int, path: Path) -> None:
    """A mapped page without a block behind it SIGBUSes on a full disk: check the zeros took room.

    Where posix_fallocate is unsupported, the zeros written instead must leave
    the file ``size`` bytes long with its blocks allocated. A filesystem that
    holds fewer blocks (one that compresses or drops zeros) cannot guarantee
    the pages, so the segment is refused as unmappable and the writer appends
    instead (spec §8.2 step 3, §8.2.1).
    """
    st = os.fstat(fd)
    if st.st_size < size:
        raise OSError(errno.ENOSPC, "segment could not be reserved", str(path))
    if 0 < st.st_blocks * 512 < size - (64 << 10):  # blocks reported and fewer than the size: sparse
        raise MappingUnsupported(errno.EOPNOTSUPP, "filesystem does not reserve blocks for the segment", str(path))


def open_append_file(path: Path, incarnation: int, segno: int) -> int:
    """Create an append-mode segment file holding just its header (spec §8.2.1); return its fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.pwrite(fd, encode_segment_header(incarnation, segno, FLAG_APPEND), 0)
        fsync_dir(path.parent)
    except BaseException:
        _discard(fd, path)
        raise
    return fd


def _discard(fd: int, path: Path) -> None:
    """A segment whose creation failed half-way: closed and removed, so no file is left to recover."""
    os.close(fd)
    try:
        os.unlink(path)
    except OSError:
        pass


def allocate_append_segment(path: Path, size: int, incarnation: int, segno: int) -> Segment:
    """Create an append-mode segment (spec §8.2.1): the file has its header; records follow each flush.

    ``size`` is the capacity of its in-memory buffer (an anonymous mapping, so
    untouched pages cost nothing), which log() fills as it would a mapping.
    """
    fd = open_append_file(path, incarnation, segno)
    try:
        buf = mmap.mmap(-1, size)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    buf[:SEGMENT_HEADER_SIZE] = encode_segment_header(incarnation, segno, FLAG_APPEND)
    return Segment(buf, path, segno, fd, mode=Durability.APPEND)


def adopt_file(seg: Segment, path: Path, fd: int) -> None:
    """Make a memory segment an append segment writing to ``fd`` (its file holds only the header yet).

    In append mode a memory segment — taken when no spare was ready — is not a
    weaker kind: its records reach a file at the next flush like any others.
    """
    seg.path = path
    seg._fd = fd
    seg.mode = Durability.APPEND
    seg.written = seg.synced = SEGMENT_HEADER_SIZE


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
