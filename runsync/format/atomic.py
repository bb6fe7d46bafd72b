"""Whole-file writes (spec §2.3): every file appears complete or not at all."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["write_atomic", "publish_exclusive", "fsync_dir", "fsync_file", "tmp_name", "temporary"]


def tmp_name(final: Path) -> Path:
    """Temporary sibling of ``final``: a dot-name stock readers skip (spec §2.3)."""
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable; best effort where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_tmp(final: Path, data: bytes, durable: bool) -> Path:
    tmp = tmp_name(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    return tmp


@contextmanager
def temporary(final: Path) -> Iterator[Path]:
    """A temp name beside ``final`` (§2.3) for a file written in steps; removed if the block fails."""
    tmp = tmp_name(final)
    try:
        yield tmp
    except BaseException:
        _unlink_quiet(tmp)
        raise


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic(final: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``final`` with ``data``: write a temporary name, fsync, rename."""
    tmp = _write_tmp(final, data, durable)
    try:
        os.replace(tmp, final)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    if durable:
        fsync_dir(final.parent)


def publish_exclusive(final: Path, data: bytes, durable: bool = True) -> bool:
    """Create ``final`` with ``data`` only if it does not exist; return whether we did.

    Uses a hard link from a complete temporary file, so the name never refers to
    a partial file and two racing creators cannot both succeed (spec §2.3).
    Falls back to O_EXCL create where hard links are unsupported.
    """
    tmp = _write_tmp(final, data, durable)
    try:
        os.link(tmp, final)
        created = True
    except FileExistsError:
        created = False
    except OSError:
        # No hard links on this filesystem (some FUSE/SMB mounts): O_EXCL create.
        created = _create_excl(final, data, durable)
    finally:
        _unlink_quiet(tmp)
    if created and durable:
        fsync_dir(final.parent)
    return created


def _create_excl(final: Path, data: bytes, durable: bool) -> bool:
    try:
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    return True
