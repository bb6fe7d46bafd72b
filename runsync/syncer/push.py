"""``runsync push``: deduplicating, resumable, idempotent push of runs (spec §12.3).

Per run: hash what changed (cached by size/mtime/inode), send files the remote
lacks — data files first, blobs once per remote, the files stock readers read
(``history/``, ``system/``, ``media/``) to a staging area by content hash — then
move the staged files into place, commit with the run's manifest, then remove
every file at those paths the manifest does not name. A push killed at any
point leaves the remote in a state that was true locally, and nothing stock
readers would read twice; the next push sends only what is missing. A source
file that vanishes mid-push (a part merged away) makes the run be listed and
pushed again, as it is now (spec §9.3).
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format.errors import CorruptFileError, FormatError
from ..format.layout import RUN_JSON, RunLayout
from ..format.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    blob_path,
    check_rel_path,
    is_blob,
    is_replaced,
    is_tabular,
    parse_manifest,
    sha256_file,
    staging_dir,
    staging_path,
    stored_at,
)
from ..format.meta import RunInfo, load_doc
from .errors import RemoteError
from .pools import Progress, each_run, in_flight
from .remote import Remote, RemoteSetupError
from .source import LocalFile, file_stats, find_runs, run_files
from .staging import StagedGone, place, remove_unlisted
from .state import SyncState
from .tails import shipped_files

__all__ = ["PushOptions", "PushResult", "PushStopped", "push", "run_selected", "Progress"]

_OBJECT_RE = re.compile(r"^files/sha256/[0-9a-f]{2}/([0-9a-f]{64})$")
_SMALL = 1 << 20  # files up to this size are read once, hashed and sent from memory
_VANISHED_TRIES = 6  # a run whose files keep vanishing mid-push (a writer merging parts) is listed again this often


class _Vanished(Exception):
    """A source file listed for this push was gone when it was read or sent (merged away, recovered)."""


@dataclass
class PushOptions:
    dry_run: bool = False
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    jobs: int = 4
    verify: bool = False
    # asked before each run and each file: True stops the push there (push --watch on a signal); a run
    # stopped before its commit is left as unreferenced files, which the next push completes (spec §12.3)
    stop: Callable[[], bool] | None = None


class PushStopped(RemoteError):
    """The push was asked to stop; this run was not committed (the next push completes it)."""


@dataclass
class PushResult:
    runs: int = 0
    runs_pushed: int = 0
    skipped: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    bytes_deduplicated: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    bytes_in_flight: int = 0  # of files still being sent (for progress output; not in as_dict)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "runs_pushed": self.runs_pushed, "skipped": self.skipped,
                "files_sent": self.files_sent, "bytes_sent": self.bytes_sent,
                "bytes_deduplicated": self.bytes_deduplicated, "seconds": round(self.seconds, 3),
                "failures": [{"run": r, "error": e} for r, e in self.failures]}


def run_selected(run_id: str, opts: PushOptions) -> bool:
    exclude = list(opts.exclude) + [g for g in os.environ.get("RUNSYNC_IGNORE_GLOBS", "").split(",") if g.strip()]
    if opts.include and not any(fnmatch.fnmatch(run_id, g) for g in opts.include):
        return False
    return not any(fnmatch.fnmatch(run_id, g.strip()) for g in exclude)


class _Pusher:
    def __init__(self, src: Path, remote: Remote, opts: PushOptions, progress: Progress):
        self.src = src
        self.remote = remote
        self.opts = opts
        self.progress = progress
        self.state = SyncState(src, remote.display)
        self.result = PushResult()
        self.lock = threading.Lock()
        self.blobs_known: set[str] = set()
        self.blob_locks: dict[str, threading.Lock] = {}
        self.remote_ids: set[str] | None = None  # run directories on the remote, listed once per push
        self.damaged: set[str] = set()  # runs whose remote manifest does not parse (--verify rewrites it)

    def run(self) -> PushResult:
        t0 = time.monotonic()
        runs = [r for r in find_runs(self.src) if run_selected(r.name, self.opts)]
        self.result.runs = len(runs)
        if runs and not self.opts.verify:
            # One listing of the remote root (one request on an object store): a run whose directory is gone
            # from the remote is pushed again, whatever the local sync state says (spec §12.5). --verify
            # reads every run's manifest anyway.
            try:
                self.remote_ids = set(self.remote.listdir())
            except RemoteSetupError:
                raise
            except RemoteError as e:  # the remote cannot be read now: no run can be pushed, each says why
                for run_dir in runs:
                    self.result.failures.append((run_dir.name, str(e)))
                    self.progress(run_dir.name, "failed", self.result)
                self.result.seconds = time.monotonic() - t0
                return self.result
        # Unchanged runs are recognised here, by stat() alone and that listing: no thread, no other request.
        todo: list[tuple[Path, list[LocalFile], list[tuple[str, int, int, int]]]] = []
        for run_dir in runs:
            try:
                files = self._source_files(run_dir)
            except (FormatError, OSError) as e:
                self.result.failures.append((run_dir.name, str(e)))
                self.progress(run_dir.name, "failed", self.result)
                continue
            stats = file_stats(files)
            listed = self.remote_ids is not None and run_dir.name in self.remote_ids
            if listed and self.state.unchanged(run_dir.name, stats):
                self.result.skipped += 1
                self.progress(run_dir.name, "unchanged", self.result)
                continue
            todo.append((run_dir, files, stats))
        # Outcomes: "pushed" (something committed), "checked" (looked at, nothing to send); "unchanged"
        # (recognised by stat alone) and "failed" were told above.
        work = {run_dir.name: (run_dir, files, stats) for run_dir, files, stats in todo}
        each_run(list(work), lambda run_id, pool: "pushed" if self._push_shipped(*work[run_id], pool) else "checked",
                 self.opts.jobs, self.result, self.progress)
        if not self.opts.dry_run and self.state.dirty:
            self.state.save()
        self.result.seconds = time.monotonic() - t0
        return self.result

    def _check_stop(self) -> None:
        if self.opts.stop is not None and self.opts.stop():
            raise PushStopped("stopped before this run's commit; the next push completes it")

    def _source_files(self, run_dir: Path) -> list[LocalFile]:
        files = run_files(run_dir)
        # A pushed copy (e.g. a removable drive) keeps blobs in its own blob store.
        mpath = run_dir / MANIFEST
        if mpath.is_file():
            have = {f.rel for f in files}
            for rel, e in parse_manifest(mpath.read_bytes(), str(mpath), run_dir.name).files.items():
                if rel not in have and is_blob(rel):
                    p = self.src / blob_path(e.sha256)
                    st = p.stat()
                    files.append(LocalFile(rel, str(p), st.st_size, st.st_mtime_ns, st.st_ino))
        return files

    def _push_shipped(self, run_dir: Path, files: list[LocalFile], stats: list[tuple[str, int, int, int]],
                      pool: ThreadPoolExecutor) -> bool:
        """Push what is shipped for ``files`` (a dead writer's tail as parts, spec §12.4); ``stats`` stay those
        of the source files, so an unchanged crashed run is still recognised by stat() alone."""
        with shipped_files(run_dir, files) as shipped:
            return self._push_run(run_dir, shipped, stats, pool)

    def _push_run(self, run_dir: Path, files: list[LocalFile], stats: list[tuple[str, int, int, int]],
                  pool: ThreadPoolExecutor) -> bool:
        """Push one run (``_push_once``); a file that vanished meanwhile is no failure: the run is listed
        again and what is true now is pushed (spec §9.3), a bounded number of times."""
        gone = ""
        for _ in range(_VANISHED_TRIES):
            try:
                return self._push_once(run_dir, files, stats, pool)
            except _Vanished as e:
                gone = str(e)
                files = self._source_files(run_dir)
                stats = file_stats(files)
        raise FormatError(f"files of the run kept vanishing while it was pushed ({_VANISHED_TRIES} tries, last "
                          f"{gone}): a writer is replacing them faster than they can be sent; nothing new was "
                          "committed for this run — push again", run_dir)

    def _push_once(self, run_dir: Path, files: list[LocalFile], stats: list[tuple[str, int, int, int]],
                   pool: ThreadPoolExecutor) -> bool:
        """Push one run, its files sent concurrently in ``pool``; whether anything was committed (or would
        be, in a dry run)."""
        run_id = run_dir.name
        self._check_stop()
        # An unreadable run fails here, alone (its error is listed): run.json and every claim must parse.
        from ..format.liveness import stream_state

        load_doc(RunInfo, run_dir / RUN_JSON)
        for st in RunLayout(run_dir).streams():
            stream_state(st)
        old, trusted = self._remote_manifest(run_id)
        repair = run_id in self.damaged  # --verify: what the damaged manifest said is unknown; check each file
        # A run's first commit: its replaced documents go straight to their run paths, before the
        # manifest, without blob copies (nothing committed can be invalidated yet; spec §12.1.2).
        first = not old and not self.opts.verify
        hashes: dict[str, list[Any]] = {}
        entries: dict[str, FileEntry] = {}
        refresh: list[tuple[str, bytes]] = []
        sends: list[Future[bool]] = []  # a run's files go out concurrently (one big file does not wait alone)
        tabular: list[tuple[LocalFile, bytes | None, str, int]] = []  # go through staging (spec §12.3)
        for f in files:
            data, sha, size, st = self._hash(run_id, f)
            hashes[f.rel] = [st[0], st[1], st[2], sha]
            entries[f.rel] = FileEntry(size, sha)
            unchanged = old.get(f.rel) == (size, sha)
            if first and is_replaced(f.rel) and data is not None:
                sends.append(pool.submit(self._put_at_run_path, run_id, f, data, size))
                continue
            if is_replaced(f.rel) and data is not None and (not unchanged or self._stale_copy(run_id, f.rel, sha, size,
                                                                                                trusted)):
                refresh.append((f.rel, data))  # the run-path copy, rewritten after the commit
            if (unchanged or repair) and not (self.opts.verify and not self._present(run_id, f.rel, sha, size)):
                continue
            if is_tabular(f.rel):
                tabular.append((f, data, sha, size))
                continue
            sends.append(pool.submit(self._send, run_id, f, data, sha, size))
        # Staged by content hash: what a killed push staged already is not sent again (one listing).
        staged = self.remote.files(staging_dir(run_id)) if tabular and not self.opts.dry_run else None
        for f, data, sha, size in tabular:
            if staged is None or self.opts.verify or staged.get(sha) != size:
                sends.append(pool.submit(self._stage, run_id, f, data, sha, size))
        wait(sends)  # every file is there (or failed) before anything else happens
        sent = any([s.result() for s in sends])  # raises the first failure: no commit
        manifest = Manifest(run_id=run_id, files=entries)
        committed = {p: [e.size, e.sha256] for p, e in entries.items()}
        changed = sent or {p: tuple(v) for p, v in committed.items()} != old
        if self.opts.dry_run:
            return bool(changed)
        self._into_place(run_id, [(f.rel, sha) for f, _d, sha, _s in tabular], pool)
        if changed:
            self.remote.write(f"{run_id}/{MANIFEST}", manifest.to_bytes())  # the commit (spec §12.3)
        # After the commit: refresh run-path copies of replaced documents, drop what is gone.
        for rel, data in refresh:
            self.remote.write(f"{run_id}/{rel}", data)
            if old.get(rel) == (entries[rel].size, entries[rel].sha256):
                with self.lock:  # --verify repairing a copy, not a change
                    self.result.files_sent += 1
                    self.result.bytes_sent += len(data)
        if changed:
            for rel in set(old) - set(entries):
                if not is_blob(rel) and not is_tabular(rel):
                    self.remote.remove(f"{run_id}/{rel}")
        if changed or not trusted:  # what a killed or raced push left where stock readers read
            remove_unlisted(self.remote, run_id, entries, old, staged, {sha for _f, _d, sha, _s in tabular})
        if changed:
            with self.lock:
                self.result.runs_pushed += 1
        with self.lock:  # a first commit raced by another pusher is re-checked by the next push
            self.state.record(run_id, hashes, committed, stats, trusted=not first)
        return bool(changed)

    def _stage(self, run_id: str, f: LocalFile, data: bytes | None, sha: str, size: int) -> bool:
        """Send a tabular file to the staging area, named by its content (spec §12.3, since 1.3)."""
        check_rel_path(f.rel)
        self._put(staging_path(run_id, sha), f, data, size)
        return True

    def _into_place(self, run_id: str, staged: list[tuple[str, str]], pool: ThreadPoolExecutor) -> None:
        """Move staged tabular files to their run paths, just before the commit (spec §12.3 step 2). A
        staged object gone meanwhile (a concurrent pusher committed and cleaned up): _Vanished."""
        by_sha: dict[str, list[str]] = {}
        for rel, sha in staged:
            by_sha.setdefault(sha, []).append(rel)
        done = [pool.submit(place, self.remote, run_id, sha, rels) for sha, rels in by_sha.items()]
        wait(done)
        for d in done:
            try:
                d.result()
            except StagedGone as e:
                raise _Vanished(str(e)) from None

    def _put_at_run_path(self, run_id: str, f: LocalFile, data: bytes, size: int) -> bool:
        self._put(f"{run_id}/{f.rel}", f, data, size)
        return True

    def _remote_manifest(self, run_id: str) -> tuple[dict[str, tuple[int, str]], bool]:
        """The committed manifest, and whether a completed push of ours vouches for it.

        Untrusted (read from the remote): an earlier push may have died between
        the commit and refreshing run-path copies, so those are checked.
        """
        if self.remote_ids is not None and run_id not in self.remote_ids:
            return {}, False  # not on the remote when this push began (whatever the local state says)
        committed = None if self.opts.verify else self.state.committed(run_id)
        if committed and self.state.trusted(run_id):
            return {p: (int(v[0]), str(v[1])) for p, v in committed.items()}, True
        raw = self.remote.read(f"{run_id}/{MANIFEST}")
        if raw is None:
            return {}, False
        try:
            m = parse_manifest(raw, f"{self.remote.display}/{run_id}/{MANIFEST}", run_id)
        except CorruptFileError as e:
            if not self.opts.verify:
                raise CorruptFileError(f"{e} (`runsync push --verify SRC REMOTE` rewrites it from the source "
                                       "runs)") from None
            with self.lock:  # damaged: rewritten from the source, every file checked (spec §12.3)
                self.damaged.add(run_id)
            return {}, False
        return {p: (e.size, e.sha256) for p, e in m.files.items()}, False

    def _stale_copy(self, run_id: str, rel: str, sha: str, size: int, trusted: bool) -> bool:
        if trusted:
            return False
        if self.opts.verify:
            return self.remote.sha256(f"{run_id}/{rel}") != sha
        return self.remote.size(f"{run_id}/{rel}") != size

    def _present(self, run_id: str, rel: str, sha: str, size: int) -> bool:
        """--verify: is the committed content really there? Compared by hash (downloads the file)."""
        return self.remote.sha256(stored_at(run_id, rel, sha)) == sha

    def _hash(self, run_id: str, f: LocalFile) -> tuple[bytes | None, str, int, tuple[int, int, int]]:
        """Content hash of ``f`` (and its bytes if small), from one open file: a document
        replaced meanwhile is read whole, old or new, never mixed. One gone since it was listed: _Vanished."""
        try:
            fh = open(f.path, "rb")
        except FileNotFoundError:
            raise _Vanished(f.rel) from None
        with fh:
            st = os.fstat(fh.fileno())
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
            if st.st_size <= _SMALL:
                data = fh.read()
                import hashlib

                return data, hashlib.sha256(data).hexdigest(), len(data), key
            cached = self.state.hash_of(run_id, f.rel, *key)
            if cached is not None:
                return None, cached, st.st_size, key
            named = _OBJECT_RE.match(f.rel)
            if named and not self.opts.verify:
                # A saved-file object is named by the hash its writer computed while copying it (§13.5);
                # --verify re-hashes, and `runsync verify` checks the remote's bytes against it.
                return None, named.group(1), st.st_size, key
            sha, size = sha256_file(fh)
            return None, sha, size, key

    def _send(self, run_id: str, f: LocalFile, data: bytes | None, sha: str, size: int) -> bool:
        """Send one file to where its committed bytes live; a blob already there is not sent again."""
        self._check_stop()
        check_rel_path(f.rel)
        target = stored_at(run_id, f.rel, sha)
        shared = target != f"{run_id}/{f.rel}"
        if not shared:
            self._put(target, f, data, size)
            return True
        with self.lock:
            sha_lock = self.blob_locks.setdefault(sha, threading.Lock())
        with sha_lock:  # runs pushed in parallel that share a blob send it once
            with self.lock:
                known = sha in self.blobs_known
            # On an object store a small blob is cheaper to write again (same name, same bytes) than
            # to probe for; on a filesystem a stat is cheap and an existing blob is never replaced.
            probe = size > _SMALL or not self.remote.atomic_put
            present = known or (self.remote.sha256(target) == sha if self.opts.verify
                                else probe and self.remote.size(target) == size)
            if present:
                with self.lock:
                    self.blobs_known.add(sha)
                    if is_blob(f.rel):
                        self.result.bytes_deduplicated += size
                return False
            self._put(target, f, data, size)
            with self.lock:
                self.blobs_known.add(sha)
        return True

    def _put(self, target: str, f: LocalFile, data: bytes | None, size: int) -> None:
        def landed() -> None:
            self.result.files_sent += 1
            self.result.bytes_sent += size
        with in_flight(self.result, self.lock, landed) as progress:
            if not self.opts.dry_run:
                if data is not None:
                    self.remote.write(target, data)
                    return
                try:
                    self.remote.upload(str(f.path), target, progress=progress)
                except RemoteError:
                    if not os.path.exists(f.path):
                        raise _Vanished(f.rel) from None
                    raise


def push(src: str | Path, remote: Remote, opts: PushOptions | None = None,
         progress: Progress = lambda run, outcome, res: None) -> PushResult:
    """Push the run directory ``src``, or every run under it, to ``remote``."""
    src = Path(src)
    if not src.is_dir():
        raise FormatError("no such directory", src)
    remote.check_writable()
    return _Pusher(src, remote, opts or PushOptions(), progress).run()
