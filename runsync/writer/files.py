"""``run.save()``: saved files (spec §13.5), copied by a background thread, content-addressed.

A saved file's bytes go to ``files/sha256/<aa>/<sha256>`` (once per run, however
often it is saved) and its name to the stream's ``files.json``. Copies stream in
1 MiB chunks, so a 200 GB checkpoint costs no memory; they run on the sidecar's
thread, never the caller's. ``policy="live"`` re-saves a file whenever its size
or modification time changes; ``"end"`` saves it when the run finishes.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..format.atomic import TMP_DIR, fsync_dir, temporary
from ..format.files import FILES_DIR, FileEntry, FilesDoc, object_path
from ..format.manifest import check_rel_path
from ..format.meta import load_doc, save_doc
from .reporter import Reporter

__all__ = ["FileSaver", "POLICIES", "resolve_save"]

POLICIES = ("now", "end", "live")
_CHUNK = 1 << 20
_LIVE_POLL = 2.0


def resolve_save(pattern: str | os.PathLike[str], base_path: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """(name, absolute path) of every file ``pattern`` matches, names relative to the allowed root.

    The root is ``base_path`` or the working directory; a match outside it (also
    through a symlink) is refused, as is a pattern matching nothing.
    """
    base = Path(os.path.abspath(base_path if base_path is not None else os.getcwd()))
    root = base.resolve()
    pat = os.fspath(pattern)
    full = pat if os.path.isabs(pat) else os.path.join(base, pat)
    matches = sorted(globlib.glob(full, recursive=True)) if globlib.has_magic(full) else [full]
    files = [m for m in matches if os.path.isfile(m)]
    if not files:
        what = "matches no file" if globlib.has_magic(full) else "is not a file" if os.path.exists(full) else \
            "does not exist"
        raise FileNotFoundError(f"save(): {pat!r} {what} (looked in {root})")
    out = []
    for m in files:
        # Named by the path it was saved under (a symlink keeps its own name, and "live" follows it when it
        # is re-pointed); allowed only if what it points to is inside the root as well.
        link = Path(os.path.abspath(m))
        try:
            link.resolve().relative_to(root)
            rel = _relative(link, base, root)
        except ValueError:
            raise ValueError(f"save(): {m!r} is outside the allowed root {root}; pass base_path= a directory that "
                             "holds it") from None
        try:
            check_rel_path(rel)
        except Exception:
            raise ValueError(f"save(): cannot store {rel!r}: names are '/'-separated parts of letters, digits and "
                             "._+=@,- (rename the file or save a copy)") from None
        out.append((rel, link))
    return out


def _relative(path: Path, base: Path, root: Path) -> str:
    """``path`` relative to the save root, spelled as given (``base``) or resolved (``root``)."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.relative_to(root).as_posix()


@dataclass
class _Watched:
    name: str
    path: Path
    policy: str
    seen: tuple[int, int] | None = None  # (size, mtime_ns) when last saved
    done: bool = False


@dataclass
class FileSaver:
    """The saved-files sidecar of one stream."""

    run_dir: Path
    index: Path  # streams/<s>/files.json
    reporter: Reporter
    name: str = "saved files"
    _queue: list[_Watched] = field(default_factory=list)
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _stop: bool = False
    _forked: bool = False
    _doc: FilesDoc | None = None

    # -- caller's thread -----------------------------------------------------------------
    def add(self, files: list[tuple[str, Path]], policy: str) -> None:
        with self._cv:
            for name, path in files:
                self._queue.append(_Watched(name, path, policy))
            self._cv.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runsync-files", daemon=True)
            self._thread.start()

    # -- sidecar protocol ------------------------------------------------------------------
    def stop(self, state: str, exit_code: int | None, timeout: float) -> None:
        if self._forked:
            return
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.reporter.problem("files", f"saving files did not finish within {timeout:.0f} s; "
                                      "files not yet copied are not in the run")
        else:
            self._round(final=True)

    def terminate(self, exit_code: int) -> None:
        self._stop = True  # no time for copies: what is saved is saved

    def mark_forked(self) -> None:
        self._forked = True

    # -- background thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                final = self._stop
            self._round(final)
            if final:
                return
            with self._cv:
                if not self._stop:
                    self._cv.wait(_LIVE_POLL)

    def _round(self, final: bool) -> None:
        with self._cv:
            items = list(self._queue)
        for w in items:
            if w.done or (w.policy == "end" and not final):
                continue
            try:
                st = w.path.stat()
            except OSError as e:
                if w.seen is None:
                    w.done = True
                    self.reporter.problem("files", f"saved file {w.name!r} could not be read ({e.strerror or e})")
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if stamp == w.seen:
                continue
            try:
                self._store(w.name, w.path, w.policy)
                w.seen = stamp
                if w.policy != "live":
                    w.done = True
            except OSError as e:
                self.reporter.problem("files", f"could not save {w.name!r} into the run: {e.strerror or e}; "
                                      "will retry")

    def _store(self, name: str, path: Path, policy: str) -> None:
        """Copy ``path`` into the object store by content hash, then record it in files.json (§13.5)."""
        objects = self.run_dir / FILES_DIR
        os.makedirs(objects, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with temporary(objects / "object", self.run_dir / TMP_DIR) as tmp:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                st = os.fstat(src.fileno())
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            sha = h.hexdigest()
            final = self.run_dir / object_path(sha)
            if final.exists():
                os.unlink(tmp)
            else:
                os.makedirs(final.parent, exist_ok=True)
                os.replace(tmp, final)
                fsync_dir(final.parent)
        doc = self._load()
        doc.files.append(FileEntry(name=name, sha256=sha, size=size, mtime=st.st_mtime, time=time.time(),
                                   policy=policy))
        save_doc(doc, self.index, tmp_dir=self.run_dir / TMP_DIR)

    def _load(self) -> FilesDoc:
        if self._doc is None:
            try:
                self._doc = load_doc(FilesDoc, self.index)
            except FileNotFoundError:
                self._doc = FilesDoc()
        return self._doc

    def entries(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self._load().files]
