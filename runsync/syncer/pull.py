"""``runsync pull`` and ``runsync verify``: read runs back from a remote, checking every hash."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..format.errors import CorruptFileError, FormatError
from ..format.layout import ID_RE
from ..format.manifest import MANIFEST, Manifest, check_rel_path, is_replaced, parse_manifest, sha256_file, stored_at
from .remote import Remote, RemoteError

__all__ = ["remote_runs", "pull", "verify", "PullResult", "VerifyResult"]


def remote_runs(remote: Remote) -> list[str]:
    """Run ids on ``remote``: directories holding a committed manifest."""
    remote.check_root()
    # A read, not exists(): some filesystems (HTTP) answer exists() False on any error, which would
    # drop a run silently; a read raises (and retries) on errors and returns None only when absent.
    return [n for n in remote.listdir() if ID_RE.match(n) and remote.read(f"{n}/{MANIFEST}") is not None]


def _manifest(remote: Remote, run_id: str) -> Manifest:
    raw = remote.read(f"{run_id}/{MANIFEST}")
    if raw is None:
        raise FormatError(f"no committed manifest for run {run_id}", remote.display)
    return parse_manifest(raw, f"{remote.display}/{run_id}/{MANIFEST}")


def _source_of(remote: Remote, run_id: str, rel: str, sha: str) -> str:
    """Where a file's committed bytes are (spec §12.1): its run path, or the blob store."""
    target = stored_at(run_id, rel, sha)
    if target != f"{run_id}/{rel}" and not remote.exists(target):
        return f"{run_id}/{rel}"  # a pushed copy laid out by an older pusher
    return target


@dataclass
class PullResult:
    runs: int = 0
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "files": self.files, "bytes": self.bytes, "skipped": self.skipped,
                "failures": [{"run": r, "error": e} for r, e in self.failures]}


def _sha_of_local(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return sha256_file(f)[0]
    except FileNotFoundError:
        return None


def _previous(run_dir: Path) -> dict[str, tuple[str, int]]:
    """Entries of the manifest a previous pull left in ``run_dir`` (what those files hold)."""
    try:
        m = parse_manifest((run_dir / MANIFEST).read_bytes(), run_dir / MANIFEST)
    except (OSError, FormatError):
        return {}
    return {rel: (e.sha256, e.size) for rel, e in m.files.items()}


def pull(remote: Remote, dest: Path, run_ids: list[str] | None = None, *,
         only: Callable[[str], bool] | None = None, trust_previous: bool = False,
         prune: bool = False) -> PullResult:
    """Copy runs from ``remote`` into ``dest``: every file checked against its hash.

    Paths come only from validated manifest entries and are resolved inside the
    run's directory; a hostile manifest cannot write outside ``dest``. ``only``
    selects run-relative paths (e.g. documents only). ``trust_previous`` skips a
    file that the previous pull's manifest names with the same hash and that has
    the same size (a cache runsync alone writes); ``prune`` removes files of the
    local copy that the manifest no longer names (parts merged away).
    """
    res = PullResult()
    ids = run_ids or remote_runs(remote)
    dest = dest.resolve()
    for run_id in ids:
        res.runs += 1
        try:
            if not ID_RE.match(run_id):
                raise FormatError(f"invalid run id {run_id!r}")
            m = _manifest(remote, run_id)
            run_dir = dest / run_id
            before = _previous(run_dir) if trust_previous else {}
            for rel, e in sorted(m.files.items()):
                if only is not None and not only(rel):
                    continue
                target = (run_dir / check_rel_path(rel)).resolve()
                if not target.is_relative_to(run_dir.resolve()):
                    raise CorruptFileError(f"manifest path {rel!r} escapes the run directory", remote.display)
                if before.get(rel) == (e.sha256, e.size) and _size(target) == e.size:
                    res.skipped += 1
                    continue
                if _sha_of_local(target) == e.sha256:
                    res.skipped += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
                try:
                    remote.download(_source_of(remote, run_id, rel, e.sha256), str(tmp))
                    got = _sha_of_local(tmp)
                    if got != e.sha256:
                        raise CorruptFileError(f"{rel}: content hash {got} does not match manifest {e.sha256}",
                                               remote.display)
                    os.replace(tmp, target)
                finally:
                    if tmp.exists():
                        tmp.unlink()
                res.files += 1
                res.bytes += e.size
            if prune:
                _prune(run_dir, set(m.files))
            (run_dir / MANIFEST).write_bytes(m.to_bytes())
        except (RemoteError, FormatError, OSError) as err:
            res.failures.append((run_id, str(err)))
    return res


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _prune(run_dir: Path, keep: set[str]) -> None:
    for dirpath, _dirs, names in os.walk(run_dir):
        for n in names:
            p = Path(dirpath) / n
            rel = p.relative_to(run_dir).as_posix()
            if rel != MANIFEST and rel not in keep and not n.startswith("."):
                p.unlink()


@dataclass
class VerifyResult:
    runs: int = 0
    files: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "files": self.files, "ok": self.ok,
                "missing": [f"{r}/{p}" for r, p in self.missing], "corrupt": [f"{r}/{p}" for r, p in self.corrupt],
                "failures": [{"run": r, "error": e} for r, e in self.failures]}


def verify(remote: Remote, run_ids: list[str] | None = None) -> VerifyResult:
    """Recompute every file's hash against its run's manifest."""
    res = VerifyResult()
    for run_id in run_ids or remote_runs(remote):
        res.runs += 1
        try:
            m = _manifest(remote, run_id)
        except (RemoteError, FormatError) as err:
            res.failures.append((run_id, str(err)))
            continue
        for rel, e in sorted(m.files.items()):
            res.files += 1
            places = [_source_of(remote, run_id, rel, e.sha256)]
            if is_replaced(rel):  # and the run-path copy direct readers use (spec §12.1.2)
                places.append(f"{run_id}/{rel}")
            for src in dict.fromkeys(places):
                got = remote.sha256(src)
                if got is None:
                    res.missing.append((run_id, rel))
                    break
                if got != e.sha256:
                    res.corrupt.append((run_id, rel))
                    break
    return res
