"""``runsync pull`` and ``runsync verify``: read runs back from a remote, checking every hash."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..format.atomic import TMP_DIR, temporary
from ..format.errors import CorruptFileError, FormatError
from ..format.layout import ID_RE
from ..format.manifest import (
    MANIFEST,
    TABULAR_DIRS,
    Manifest,
    check_rel_path,
    is_replaced,
    parse_manifest,
    sha256_file,
    stored_at,
)
from .errors import RemoteError
from .pools import Progress, each_run, in_flight
from .remote import Remote

__all__ = ["remote_runs", "pull", "verify", "PullResult", "VerifyResult"]


def remote_runs(remote: Remote) -> list[str]:
    """Run ids on ``remote``: directories holding a committed manifest."""
    # A read, not exists(): some filesystems (HTTP) answer exists() False on any error, which would
    # drop a run silently; a read raises (and retries) on errors and returns None only when absent.
    return [n for n in _listed(remote) if remote.read(f"{n}/{MANIFEST}") is not None]


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
    bytes_in_flight: int = 0  # of files still downloading (for progress; not in as_dict)

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


def _each_run(remote: Remote, run_ids: list[str] | None, jobs: int, res: Any, progress: Progress | None,
              work: Callable[[str, Manifest, ThreadPoolExecutor], str]) -> None:
    """``work(run_id, manifest, files_pool)`` for each run (pools.each_run). Listed directories without a
    committed manifest are not runs (yet) and are passed over; a run asked for by id must have one."""
    ids = list(dict.fromkeys(run_ids or _listed(remote)))  # a run named twice is fetched once
    res.runs = len(ids)

    def one(run_id: str, files: ThreadPoolExecutor) -> str | None:
        if not ID_RE.match(run_id):
            raise FormatError(f"invalid run id {run_id!r}")
        raw = remote.read(f"{run_id}/{MANIFEST}")
        if raw is None:
            if not run_ids:
                return None
            raise FormatError(f"no committed manifest for run {run_id}", remote.display)
        return work(run_id, parse_manifest(raw, f"{remote.display}/{run_id}/{MANIFEST}"), files)

    each_run(ids, one, jobs, res, progress or (lambda run_id, outcome, res: None))


def _listed(remote: Remote) -> list[str]:
    remote.check_root()
    return [n for n in remote.listdir() if ID_RE.match(n)]


def pull(remote: Remote, dest: Path, run_ids: list[str] | None = None, *,
         only: Callable[[str], bool] | None = None, trust_previous: bool = False,
         prune: bool = False, jobs: int = 4, progress: Progress | None = None) -> PullResult:
    """Copy runs from ``remote`` into ``dest``: every file checked against its hash.

    Paths come only from validated manifest entries and are resolved inside the
    run's directory; a hostile manifest cannot write outside ``dest``. ``only``
    selects run-relative paths (e.g. documents only). ``trust_previous`` skips a
    file that the previous pull's manifest names with the same hash and that has
    the same size (a cache runsync alone writes); ``prune`` removes files of the
    local copy that the manifest no longer names (parts merged away). ``jobs``
    runs, and as many files, are fetched at a time.
    """
    res = PullResult()
    dest = dest.resolve()
    lock = threading.Lock()

    def fetch(run_id: str, rel: str, sha: str, size: int, target: Path) -> None:
        """One file, counted in the result as it lands (progress moves per file, and per byte in flight)."""
        def landed() -> None:
            res.files += 1
            res.bytes += size
        target.parent.mkdir(parents=True, exist_ok=True)
        with in_flight(res, lock, landed) as progress, temporary(target, dest / run_id / TMP_DIR) as tmp:
            remote.download(_source_of(remote, run_id, rel, sha), str(tmp), progress=progress)
            got = _sha_of_local(tmp)
            if got != sha:
                raise CorruptFileError(f"{rel}: content hash {got} does not match manifest {sha}", remote.display)
            os.replace(tmp, target)

    def work(run_id: str, m: Manifest, files: ThreadPoolExecutor) -> str:
        run_dir = dest / run_id
        before = _previous(run_dir) if trust_previous else {}
        todo: list[Future[None]] = []
        skipped = 0
        try:
            for rel, e in sorted(m.files.items()):
                if only is not None and not only(rel):
                    continue
                target = (run_dir / check_rel_path(rel)).resolve()
                if not target.is_relative_to(run_dir.resolve()):
                    raise CorruptFileError(f"manifest path {rel!r} escapes the run directory", remote.display)
                if (before.get(rel) == (e.sha256, e.size) and _size(target) == e.size) or \
                        _sha_of_local(target) == e.sha256:
                    skipped += 1
                    continue
                todo.append(files.submit(fetch, run_id, rel, e.sha256, e.size, target))
        finally:
            wait(todo)  # a run failing here leaves no download running behind it
        with lock:
            res.skipped += skipped
        for f in todo:
            f.result()  # the first failure fails the run (after every other file landed)
        if prune:
            _prune(run_dir, set(m.files))
        (run_dir / MANIFEST).write_bytes(m.to_bytes())
        return "pulled" if todo else "up to date"

    _each_run(remote, run_ids, jobs, res, progress, work)
    return res


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _prune(run_dir: Path, keep: set[str]) -> None:
    for dirpath, dirs, names in os.walk(run_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .tmp/ (spec §2.3) is not the run's content
        for n in names:
            p = Path(dirpath) / n
            rel = p.relative_to(run_dir).as_posix()
            if rel != MANIFEST and rel not in keep and not n.startswith("."):
                p.unlink()


@dataclass
class VerifyResult:
    """Verify's outcomes (spec §12.6): every file a manifest names is ok, missing, corrupt or (a replaced
    document's run-path copy) stale; a file under a run's tabular paths that it does not name is unlisted."""

    runs: int = 0
    files: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    stale: list[tuple[str, str]] = field(default_factory=list)
    unlisted: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    unlisted_unchecked: list[str] = field(default_factory=list)  # runs on a server that lists no directory

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.stale or self.unlisted or self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "files": self.files, "ok": self.ok,
                "missing": [f"{r}/{p}" for r, p in self.missing], "corrupt": [f"{r}/{p}" for r, p in self.corrupt],
                "stale": [f"{r}/{p}" for r, p in self.stale], "unlisted": [f"{r}/{p}" for r, p in self.unlisted],
                "failures": [{"run": r, "error": e} for r, e in self.failures]}


def verify(remote: Remote, run_ids: list[str] | None = None, *, jobs: int = 4,
           progress: Progress | None = None) -> VerifyResult:
    """Recompute every file's hash against its run's manifest (``jobs`` runs and files at a time)."""
    res = VerifyResult()
    lock = threading.Lock()

    def check(run_id: str, rel: str, sha: str) -> str | None:
        """"missing", "corrupt", "stale" or None (ok) for one manifest entry (spec §12.6)."""
        committed = _source_of(remote, run_id, rel, sha)
        got = remote.sha256(committed)
        if got is None:
            return "missing"
        if got != sha:
            return "corrupt"
        copy = f"{run_id}/{rel}"
        if is_replaced(rel) and copy != committed and remote.sha256(copy) != sha:
            return "stale"  # the run-path copy direct readers use lags its intact blob (spec §12.1.2)
        return None

    def work(run_id: str, m: Manifest, files: ThreadPoolExecutor) -> str:
        entries = sorted(m.files.items())
        found = list(files.map(lambda item: check(run_id, item[0], item[1].sha256), entries))
        # Where stock readers read, nothing the manifest does not name (spec §12.3): one listing per table.
        unlisted: list[str] = []
        try:
            unlisted = [f"{d}/{name}" for d in TABULAR_DIRS for name in remote.files(f"{run_id}/{d}")
                        if f"{d}/{name}" not in m.files]
        except RemoteError:
            if not remote.read_only:
                raise
            with lock:  # a web server that lists no directory (403): every named file is still checked
                res.unlisted_unchecked.append(run_id)
        with lock:
            res.files += len(entries)
            for outcome, into in (("missing", res.missing), ("corrupt", res.corrupt), ("stale", res.stale)):
                into += [(run_id, rel) for (rel, _), f in zip(entries, found) if f == outcome]
            res.unlisted += [(run_id, rel) for rel in unlisted]
        return "PROBLEMS" if any(found) or unlisted else "verified"

    _each_run(remote, run_ids, jobs, res, progress, work)
    for found in (res.missing, res.corrupt, res.stale, res.unlisted):
        found.sort()
    res.unlisted_unchecked.sort()
    return res
