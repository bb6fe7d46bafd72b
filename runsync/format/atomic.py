"""Whole-file writes (spec §2.3): every file appears complete or not at all.

A file inside a run directory is written under a temp name in the run's own
``.tmp/`` directory (same filesystem, so rename and link stay atomic) and only
then renamed or linked into place, so stock readers listing ``history/``,
``system/`` or ``media/`` never meet a half-written or leftover temp file (since
1.3). Files outside any run keep the older rule: a dot-named temp sibling.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["write_atomic", "publish_exclusive", "fsync_dir", "fsync_file", "tmp_name", "temporary",
           "TMP_DIR", "TMP_RE", "SIBLING_TMP_RE"]

TMP_DIR = ".tmp"  # a run's temp directory, at the run root (spec §2.3, since 1.3)
TMP_RE = re.compile(r"^.+\.[0-9a-f]{8}\.tmp$")  # a temp file in a run's .tmp/
SIBLING_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # a dot-named temp sibling (outside runs; 1.2 writers)


def tmp_name(final: Path, tmp_dir: Path | None = None) -> Path:
    """Temp name for ``final`` (spec §2.3): ``<tmp_dir>/<name>.<8 hex>.tmp`` inside a run (``tmp_dir`` is
    the run's ``.tmp/``), else the dot-named sibling ``.<name>.<8 hex>.tmp`` stock readers skip."""
    token = secrets.token_hex(4)
    if tmp_dir is None:
        return final.with_name(f".{final.name}.{token}.tmp")
    return tmp_dir / f"{final.name}.{token}.tmp"


def _open_new(tmp: Path, tmp_dir: Path | None) -> int:
    """Create ``tmp`` exclusively; a run's temp directory is made on first use (never the final one's)."""
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:
        if tmp_dir is None or not tmp_dir.parent.is_dir():
            raise
        os.makedirs(tmp_dir, exist_ok=True)
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


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


def _write_tmp(final: Path, data: bytes, durable: bool, tmp_dir: Path | None) -> Path:
    tmp = tmp_name(final, tmp_dir)
    fd = _open_new(tmp, tmp_dir)
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
def temporary(final: Path, tmp_dir: Path | None = None) -> Iterator[Path]:
    """A temp name for ``final`` (§2.3; in ``tmp_dir``, which exists on entry, if given) for a file
    written in steps; removed if the block fails."""
    tmp = tmp_name(final, tmp_dir)
    if tmp_dir is not None and tmp_dir.parent.is_dir():
        os.makedirs(tmp_dir, exist_ok=True)
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


def write_atomic(final: Path, data: bytes, durable: bool = True, tmp_dir: Path | None = None) -> None:
    """Replace ``final`` with ``data``: write a temporary name (in ``tmp_dir``, the run's ``.tmp/``,
    for a file of a run), fsync, rename; then fsync ``final``'s directory."""
    tmp = _write_tmp(final, data, durable, tmp_dir)
    try:
        os.replace(tmp, final)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    if durable:
        fsync_dir(final.parent)


def publish_exclusive(final: Path, data: bytes, durable: bool = True, tmp_dir: Path | None = None) -> bool:
    """Create ``final`` with ``data`` only if it does not exist; return whether we did.

    Uses a hard link from a complete temporary file, so the name never refers to
    a partial file and two racing creators cannot both succeed (spec §2.3).
    Falls back to O_EXCL create where hard links are unsupported. ``tmp_dir``:
    as for ``write_atomic``.
    """
    tmp = _write_tmp(final, data, durable, tmp_dir)
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
