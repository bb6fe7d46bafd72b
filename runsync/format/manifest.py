"""Run manifests (spec §12): what a pushed copy of a run holds, by content hash.

A manifest lists every file of a run by its run-relative path, size and
SHA-256. Files whose content a reader may share between runs (saved files and
media) are stored once per remote as content-addressed blobs; everything else
stays at its run-relative path so stock readers work on the remote. The
manifest is written last: it commits the files it names (spec §12.3).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import CorruptFileError, FormatError
from .meta import dump_json
from .version import FORMAT_VERSION, check_version

__all__ = [
    "MANIFEST",
    "BLOB_ROOT",
    "BLOB_PREFIXES",
    "FileEntry",
    "Manifest",
    "check_rel_path",
    "blob_path",
    "is_blob",
    "is_replaced",
    "is_tabular",
    "TABULAR_DIRS",
    "STAGING_ROOT",
    "staging_dir",
    "staging_path",
    "stored_at",
    "sha256_file",
    "parse_manifest",
    "MAX_SIZE",
]

MANIFEST = "manifest.json"
BLOB_ROOT = ".runsync/blobs/sha256"
BLOB_PREFIXES = ("files/",)  # saved files (§13.5); media parts are tabular since 1.2
# Where stock readers read a pushed run (`<remote>/<id>/history` …): only committed files may sit here (§12.3).
TABULAR_DIRS = ("history", "system", "media")
STAGING_ROOT = ".runsync/staging"  # <remote>/.runsync/staging/<run id>/<sha256>: tabular files before commit
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._+=@,-]{1,200}$")
_CHUNK = 1 << 20


def check_rel_path(path: str) -> str:
    """Validate a run-relative path from a manifest or a source tree (spec §12.2).

    Forward slashes only; no empty, ``.`` or ``..`` components; no absolute
    paths; only a conservative character set. A hostile manifest cannot make a
    reader or puller write outside the run directory.
    """
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise FormatError(f"invalid run-relative path {path!r}")
    if path.startswith("/") or "\\" in path:
        raise FormatError(f"run-relative path {path!r} must be relative and use '/'")
    for part in path.split("/"):
        if part in ("", ".", "..") or not _SEGMENT_RE.match(part):
            raise FormatError(f"run-relative path {path!r} has an invalid component {part!r}")
    return str(PurePosixPath(path))


_REPLACED_RE = re.compile(
    r"^streams/[A-Za-z0-9_-]{1,64}/(system/)?(status|summary|config|files)\.json$"  # replaced documents
    r"|^console/[A-Za-z0-9_-]{1,64}\.[0-9]{6}\.[0-9]{6}\.log$"  # console logs, appended in place (§15)
)


def is_blob(path: str) -> bool:
    """Saved files are content-addressed blobs on a remote (spec §12.1.1)."""
    return path.startswith(BLOB_PREFIXES)


def is_replaced(path: str) -> bool:
    """Files a writer changes in place (replaced documents, growing console logs): on a remote their
    committed content is a blob (spec §12.1.2)."""
    return bool(_REPLACED_RE.match(path))


def is_tabular(path: str) -> bool:
    """Files under a run's ``history/``, ``system/`` or ``media/``: the paths stock readers read, which a
    pusher fills only through the staging area, at its commit (spec §12.3, since 1.3)."""
    return path.split("/", 1)[0] in TABULAR_DIRS and "/" in path


def staging_dir(run_id: str) -> str:
    """Root-relative staging directory of one run's tabular files (spec §12.1, since 1.3)."""
    return f"{STAGING_ROOT}/{run_id}"


def staging_path(run_id: str, sha256: str) -> str:
    """Root-relative staging name of a tabular file of ``run_id``, by content: a killed push resumes
    without sending a file again."""
    if not _SHA_RE.match(sha256):
        raise FormatError(f"invalid sha256 {sha256!r}")
    return f"{staging_dir(run_id)}/{sha256}"


def stored_at(run_id: str, path: str, sha256: str) -> str:
    """Root-relative location of a manifest entry's committed bytes on a remote (spec §12.1)."""
    return blob_path(sha256) if is_blob(path) or is_replaced(path) else f"{run_id}/{path}"


def blob_path(sha256: str) -> str:
    """Root-relative path of a blob: ``.runsync/blobs/sha256/<2 hex>/<64 hex>``."""
    if not _SHA_RE.match(sha256):
        raise FormatError(f"invalid sha256 {sha256!r}")
    return f"{BLOB_ROOT}/{sha256[:2]}/{sha256}"


def sha256_file(f: BinaryIO) -> tuple[str, int]:
    """(hex digest, size) of a file object, read in 1 MiB chunks (bounded memory)."""
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass
class Manifest:
    """``<run>/manifest.json`` (spec §12.2)."""

    run_id: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    format: str = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        d = asdict(self)
        d["files"] = {p: asdict(e) for p, e in sorted(self.files.items())}
        return dump_json(d)


MAX_SIZE = 2**50  # 1 PiB: a file size above it is a damaged or hostile manifest (spec §12.2)


def _size_ok(size: object) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_SIZE


def parse_manifest(data: bytes, where: str | Path, run_id: str | None = None) -> Manifest:
    """Parse and validate a manifest; every path, size and hash is checked (spec §12.2).

    ``run_id``: the name of the directory the manifest was read from; a manifest
    naming another run is refused (it would put one run's files under another's id).
    """
    import json

    from .layout import ID_RE

    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"invalid manifest JSON ({e})", where) from None
    if not isinstance(d, dict) or not isinstance(d.get("files"), dict) or not isinstance(d.get("run_id"), str):
        raise CorruptFileError("manifest lacks run_id or files", where)
    check_version(d.get("format", "1.0"), where)
    if not ID_RE.match(d["run_id"]):
        raise CorruptFileError(f"manifest rejected: invalid run_id {d['run_id']!r}", where)
    if run_id is not None and d["run_id"] != run_id:
        raise CorruptFileError(f"manifest rejected: it names run {d['run_id']!r}, not {run_id!r} (the directory "
                               "it is in)", where)
    created = d.get("created", 0.0)
    if isinstance(created, bool) or not isinstance(created, (int, float)) or created != created:
        raise CorruptFileError(f"manifest rejected: created {created!r} is not a number", where)
    files: dict[str, FileEntry] = {}
    for p, e in d["files"].items():
        try:
            path = check_rel_path(p)
            if path == MANIFEST:
                raise FormatError(f"{MANIFEST} is never listed in itself")
            if not isinstance(e, dict) or not _SHA_RE.match(str(e.get("sha256"))):
                raise FormatError(f"bad entry for {p!r}")
            if not _size_ok(e.get("size")):
                raise FormatError(f"size {e.get('size')!r} of {p!r} is not an integer from 0 to 2**50")
        except FormatError as err:
            raise CorruptFileError(f"manifest rejected: {err}", where) from None
        files[path] = FileEntry(int(e["size"]), str(e["sha256"]))
    return Manifest(run_id=d["run_id"], files=files, created=float(created), format=d.get("format", "1.0"))
