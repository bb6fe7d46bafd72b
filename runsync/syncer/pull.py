"""``runsync pull`` and ``runsync verify``: read runs back from a remote, checking every hash."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..format.atomic import TMP_DIR, temporary
from ..format.errors import CorruptFileError, FormatError
from ..format.layout import ID_RE, RUN_JSON
from ..format.manifest import (
    MANIFEST,
    TABULAR_DIRS,
    FileEntry,
    Manifest,
    check_rel_path,
    is_replaced,
    parse_manifest,
    sha256_file,
    stored_at,
)
from ..format.meta import RunInfo, describe_run, load_doc, parse_doc, same_run
from .errors import RemoteError, RunConflictError
from .pools import Progress, each_run, in_flight
from .remote import Remote

__all__ = ["remote_runs", "pull", "verify", "PullResult", "VerifyResult"]

_DOCUMENT_MAX = 16 << 20  # a run.json larger than this is not one


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
    got = _digest_local(path)
    return None if got is None else got[0]


def _digest_local(path: Path) -> tuple[str, int] | None:
    try:
        with open(path, "rb") as f:
            return sha256_file(f)
    except FileNotFoundError:
        return None


def _previous(run_dir: Path) -> dict[str, tuple[str, int]]:
    """Entries of the manifest a previous pull left in ``run_dir`` (what those files hold)."""
    try:
        m = parse_manifest((run_dir / MANIFEST).read_bytes(), run_dir / MANIFEST, run_dir.name)
    except (OSError, FormatError):
        return {}
    return {rel: (e.sha256, e.size) for rel, e in m.files.items()}


def _each_run(remote: Remote, run_ids: list[str] | None, jobs: int, res: Any, progress: Progress | None,
              work: Callable[[str, Manifest, ThreadPoolExecutor], str]) -> None:
    """``work(run_id, manifest, files_pool)`` for each run (pools.each_run). Listed directories without a
    committed manifest are not runs (yet) and are passed over; a run asked for by id must have one. A
    manifest must name its own directory's run, and on a local remote be no symbolic link (spec §12.6)."""
    ids = list(dict.fromkeys(run_ids or _listed(remote)))  # a run named twice is fetched once
    res.runs = len(ids)

    def one(run_id: str, files: ThreadPoolExecutor) -> str | None:
        if not ID_RE.match(run_id):
            raise FormatError(f"invalid run id {run_id!r}")
        remote.refuse_link(f"{run_id}/{MANIFEST}")
        raw = remote.read(f"{run_id}/{MANIFEST}")
        if raw is None:
            if not run_ids:
                return None
            raise FormatError(f"no committed manifest for run {run_id}", remote.display)
        return work(run_id, parse_manifest(raw, f"{remote.display}/{run_id}/{MANIFEST}", run_id), files)

    each_run(ids, one, jobs, res, progress or (lambda run_id, outcome, res: None))


def _listed(remote: Remote) -> list[str]:
    remote.check_root()
    return [n for n in remote.listdir() if ID_RE.match(n)]


def _fetch_checked(remote: Remote, run_id: str, rel: str, e: FileEntry) -> bytes:
    """A small file's committed bytes, checked against the manifest (size and hash)."""
    if e.size > _DOCUMENT_MAX:  # read into memory: a hostile manifest must not make it a huge read
        raise CorruptFileError(f"{rel}: {e.size} bytes is not a document", f"{remote.display}/{run_id}/{MANIFEST}")
    src = _source_of(remote, run_id, rel, e.sha256)
    remote.refuse_link(src)
    raw = remote.read(src)
    if raw is None:
        raise CorruptFileError(f"{rel}: missing (the manifest names it)", f"{remote.display}/{src}")
    got = hashlib.sha256(raw).hexdigest()
    if (got, len(raw)) != (e.sha256, e.size):
        raise CorruptFileError(f"{rel}: content (sha256 {got}, {len(raw)} bytes) does not match the manifest "
                               f"(sha256 {e.sha256}, {e.size} bytes)", f"{remote.display}/{src}")
    return raw


def _holds_files(d: Path) -> bool:
    """Whether ``d`` holds any file but temporary dot-names (what an interrupted write leaves)."""
    for _dirpath, _dirs, names in os.walk(d):
        if any(not n.startswith(".") for n in names):
            return True
    return False


def _conflict(remote: Remote, run_id: str, m: Manifest, local: Path) -> str | None:
    """Why ``local`` cannot take an incremental pull of the remote run (a different run, spec §12.6), or
    None: nothing there, the same run.json, or the same run by identity (id and created)."""
    e = m.files[RUN_JSON]
    if _sha_of_local(local / RUN_JSON) == e.sha256 or not _holds_files(local):
        return None
    theirs = parse_doc(RunInfo, _fetch_checked(remote, run_id, RUN_JSON, e), f"{remote.display}/{run_id}/{RUN_JSON}")
    try:
        ours = load_doc(RunInfo, local / RUN_JSON)
    except FormatError as err:  # no run.json (NotARunError), or one that does not parse
        return f"{local} holds files that are not known to be run {run_id} of {remote.display} ({err})"
    if same_run(ours, theirs):
        return None
    return (f"{local} holds a different run with the same id: here {describe_run(ours)}, on {remote.display} "
            f"{describe_run(theirs)}")


def pull(remote: Remote, dest: Path, run_ids: list[str] | None = None, *,
         only: Callable[[str], bool] | None = None, trust_previous: bool = False,
         prune: bool = False, force: bool = False, jobs: int = 4, progress: Progress | None = None) -> PullResult:
    """Copy runs from ``remote`` into ``dest``: every file checked against its size and hash.

    Paths come only from validated manifest entries and are resolved inside the
    run's directory; a hostile manifest cannot write outside ``dest``. ``only``
    selects run-relative paths (e.g. documents only; run.json always comes, first).
    ``trust_previous`` skips a file that the previous pull's manifest names with
    the same hash and that has the same size (a cache runsync alone writes);
    ``prune`` removes files of the local copy that the manifest no longer names
    (parts merged away). A local directory holding a different run under the same
    id (spec §12.6) fails that run and is left as it was, unless ``force``: then it
    is replaced whole, in one rename, by a copy pulled beside it. ``jobs`` runs,
    and as many files, are fetched at a time.
    """
    res = PullResult()
    dest = dest.resolve()
    lock = threading.Lock()

    def fetch(run_id: str, rel: str, sha: str, size: int, target: Path) -> None:
        """One file, counted in the result as it lands (progress moves per file, and per byte in flight)."""
        def landed() -> None:
            res.files += 1
            res.bytes += size
        src = _source_of(remote, run_id, rel, sha)
        remote.refuse_link(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with in_flight(res, lock, landed) as progress, temporary(target, dest / run_id / TMP_DIR) as tmp:
            remote.download(src, str(tmp), progress=progress)
            got = _digest_local(tmp) or ("", 0)
            if got != (sha, size):
                raise CorruptFileError(f"{rel}: content (sha256 {got[0]}, {got[1]} bytes) does not match the "
                                       f"manifest (sha256 {sha}, {size} bytes)", f"{remote.display}/{src}")
            os.replace(tmp, target)

    def fill(run_id: str, m: Manifest, run_dir: Path, files: ThreadPoolExecutor) -> bool:
        """Bring ``run_dir`` to the manifest's state, run.json first (so that any directory a pull wrote
        in says which run its files belong to); whether anything was fetched."""
        before = _previous(run_dir) if trust_previous else {}
        todo: list[Future[None]] = []
        skipped = 0
        try:
            for rel, e in sorted(m.files.items(), key=lambda item: item[0] != RUN_JSON):
                if only is not None and not only(rel) and rel != RUN_JSON:
                    continue
                target = (run_dir / check_rel_path(rel)).resolve()
                if not target.is_relative_to(run_dir.resolve()):
                    raise CorruptFileError(f"manifest path {rel!r} escapes the run directory", remote.display)
                if (before.get(rel) == (e.sha256, e.size) and _size(target) == e.size) or \
                        _digest_local(target) == (e.sha256, e.size):
                    skipped += 1
                    continue
                todo.append(files.submit(fetch, run_id, rel, e.sha256, e.size, target))
                if rel == RUN_JSON:
                    todo[-1].result()  # landed before any other file is written
        finally:
            wait(todo)  # a run failing here leaves no download running behind it
        with lock:
            res.skipped += skipped
        for f in todo:
            f.result()  # the first failure fails the run (after every other file landed)
        if prune:
            _prune(run_dir, set(m.files))
        (run_dir / MANIFEST).write_bytes(m.to_bytes())
        return bool(todo)

    def work(run_id: str, m: Manifest, files: ThreadPoolExecutor) -> str:
        if RUN_JSON not in m.files:
            raise CorruptFileError(f"manifest names no {RUN_JSON}: not a pushed run",
                                   f"{remote.display}/{run_id}/{MANIFEST}")
        local = dest / run_id
        conflict = _conflict(remote, run_id, m, local)
        if conflict is None:
            return "pulled" if fill(run_id, m, local, files) else "up to date"
        if not force:
            raise RunConflictError(f"{conflict}. Nothing was changed. Pull into another directory, or pass --force "
                                   "to replace the local run whole with the remote one (its files the remote "
                                   "manifest does not list are removed).")
        staged = dest / ".runsync" / "pull" / f"{run_id}.{secrets.token_hex(4)}"
        try:
            fill(run_id, m, staged, files)
            _replace_dir(staged, local)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return "replaced"

    _each_run(remote, run_ids, jobs, res, progress, work)
    return res


def _replace_dir(new: Path, old: Path) -> None:
    """Put the directory ``new`` where ``old`` is: never a mix of the two (a crash between the renames
    leaves the old run beside, under ``.runsync/pull/``, and no run at ``old``)."""
    aside = new.with_name(new.name + ".old")
    if old.exists() or old.is_symlink():
        os.rename(old, aside)
    os.rename(new, old)
    shutil.rmtree(aside, ignore_errors=True)


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

    def check(run_id: str, rel: str, e: FileEntry) -> str | None:
        """"missing", "corrupt" (hash or size differ), "stale" or None (ok) for one manifest entry (§12.6)."""
        committed = _source_of(remote, run_id, rel, e.sha256)
        remote.refuse_link(committed)
        got = remote.digest(committed)
        if got is None:
            return "missing"
        if got != (e.sha256, e.size):
            return "corrupt"
        copy = f"{run_id}/{rel}"
        if is_replaced(rel) and copy != committed:
            remote.refuse_link(copy)
            if remote.digest(copy) != (e.sha256, e.size):
                return "stale"  # the run-path copy direct readers use lags its intact blob (spec §12.1.2)
        return None

    def work(run_id: str, m: Manifest, files: ThreadPoolExecutor) -> str:
        entries = sorted(m.files.items())
        found = list(files.map(lambda item: check(run_id, *item), entries))
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
