"""Helpers for the syncer tests (tests/test_sync_*.py): run factories, tree hashing, fs proxies, moto.

Not a test module (pytest does not collect it).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import runsync
from runsync.format.manifest import BLOB_ROOT, MANIFEST, is_replaced, stored_at
from runsync.syncer import Remote

MB = 1 << 20
FAST = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5, segment_size=1 << 20)


# --------------------------------------------------------------------------- runs


def make_run(root: Path, run_id: str, steps: int = 50, files: dict[str, bytes] | None = None,
             settings: runsync.Settings | None = None, offset: float = 0.0) -> Path:
    """A finished run ``root/run_id`` with ``steps`` logged steps; then ``files`` (run-relative
    path → bytes, e.g. ``files/ckpt.bin``) written into the run directory by hand."""
    run = runsync.init(dir=root, id=run_id, config={"lr": 0.1, "id": run_id}, settings=settings)
    for s in range(steps):
        run.log({"loss": offset + 1.0 / (s + 1), "acc": s / max(1, steps), "note": f"s{s}"})
    run.summary["best"] = offset + 0.5
    run.finish()
    for rel, data in (files or {}).items():
        p = run.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return Path(run.dir)


def resume_run(root: Path, run_id: str, steps: int = 10) -> None:
    run = runsync.init(dir=root, id=run_id, resume=True)
    for s in range(steps):
        run.log({"loss": 100.0 + s, "extra": s})
    run.summary["best"] = 0.01
    run.finish()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(MB), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_hashes(d: Path, skip: Callable[[str], bool] = lambda rel: False) -> dict[str, str]:
    """run-relative path → sha256 of every regular file under ``d``."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink():
            rel = p.relative_to(d).as_posix()
            if not skip(rel):
                out[rel] = sha_file(p)
    return out


def tree_stats(d: Path) -> dict[str, tuple[int, int, int]]:
    """path → (inode, mtime_ns, size) of every file under ``d`` (relative paths)."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(d).as_posix()] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def all_paths(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*")}


def source_files(run_dir: Path) -> dict[str, str]:
    """What a push must carry of a finished source run: every file but sync state and temporaries."""
    return tree_hashes(run_dir, skip=lambda rel: rel.startswith(".runsync/") or rel.rsplit("/", 1)[-1].startswith("."))


# --------------------------------------------------------------------------- remote inspection


def remote_files(remote: Remote) -> dict[str, bytes]:
    """root-relative path → bytes of every object under the remote root (through a fresh listing)."""
    fs = remote.fs
    fs.invalidate_cache()
    root = remote.root.rstrip("/")
    try:
        found = fs.find(root)
    except FileNotFoundError:
        return {}
    out = {}
    for p in found:
        p = str(p)
        rel = p[len(root):].lstrip("/") if p.startswith(root) else p
        out[rel] = fs.cat_file(p)
    return out


def is_tmp(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(".tmp")


def committed_manifests(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """run id → parsed manifest.json of every committed run in a remote listing."""
    out = {}
    for rel, data in files.items():
        parts = rel.split("/")
        if len(parts) == 2 and parts[1] == MANIFEST:
            out[parts[0]] = json.loads(data)
    return out


def commit_problems(remote: Remote) -> list[str]:
    """Violations of the commit rule (spec §12.3): for each committed manifest, every file it
    names must exist (at its run path or, for blobs, in the blob store) with the stated content."""
    files = remote_files(remote)
    problems = []
    for run_id, m in committed_manifests(files).items():
        for rel, e in m["files"].items():
            where = committed_at(files, run_id, rel, e["sha256"])
            data = files.get(where)
            if data is None:
                problems.append(f"{run_id}: manifest names {rel} but {where} is absent")
            elif sha(data) != e["sha256"] or len(data) != e["size"]:
                problems.append(f"{run_id}: {where} does not have the content its manifest states")
    return problems


def assert_remote_mirrors(remote: Remote, src_root: Path, run_ids: Iterable[str]) -> None:
    """The remote holds exactly the source runs: per run, manifest + every non-blob file at its path
    with identical bytes; blobs in the blob store; nothing else visible (dot-prefixed temporaries
    are tolerated: spec §12.3 allows unreferenced leftovers, stock readers skip dot-files)."""
    files = remote_files(remote)
    visible = {rel for rel in files if not is_tmp(rel)}
    expected: set[str] = set()
    for run_id in run_ids:
        src = source_files(src_root / run_id)
        expected.add(f"{run_id}/{MANIFEST}")
        m = json.loads(files[f"{run_id}/{MANIFEST}"])
        assert {p: e["sha256"] for p, e in m["files"].items()} == src, run_id
        for rel, digest in src.items():
            where = committed_at(files, run_id, rel, digest)
            expected.add(where)
            assert sha(files[where]) == digest, where
            if is_replaced(rel):  # and its run-path copy, refreshed after the commit (spec §12.1.2)
                expected.add(f"{run_id}/{rel}")
                assert sha(files[f"{run_id}/{rel}"]) == digest, rel
    assert visible == expected, (sorted(visible - expected), sorted(expected - visible))


def committed_at(files: dict[str, bytes] | set[str], run_id: str, rel: str, sha256: str) -> str:
    """Where a manifest entry's committed bytes are (spec §12.1.2): its blob, or — for a replaced
    document committed by a run's first push, which writes no blob — its run path."""
    where = stored_at(run_id, rel, sha256)
    return where if where in files or not is_replaced(rel) else f"{run_id}/{rel}"


def blob_objects(files: dict[str, bytes]) -> list[str]:
    return sorted(rel for rel in files if rel.startswith(BLOB_ROOT + "/") and not is_tmp(rel))


# --------------------------------------------------------------------------- fs proxies

REMOTE_FS_METHODS = frozenset({"cat_file", "exists", "size", "ls", "makedirs", "pipe_file", "put_file", "mv",
                               "copy", "rm_file", "get_file", "open", "info", "find"})
WRITE_METHODS = frozenset({"pipe_file", "put_file", "mv", "copy", "rm_file", "makedirs"})


class ProxyFS:
    """Stands in for a Remote's ``fs``: records every call of the primitives the syncer uses and lets
    a test inject errors. ``fault(method, args) -> BaseException | None`` is asked before each call
    (and, with ``after=True``, may instead be raised after the call went through)."""

    def __init__(self, fs: Any, fault: Callable[[str, tuple], tuple[BaseException, bool] | None] | None = None,
                 delay: Callable[[str, tuple], float] | None = None) -> None:
        self._fs = fs
        self._fault = fault
        self._delay = delay
        self.lock = threading.Lock()
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fs, name)
        if name not in REMOTE_FS_METHODS or not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            with self.lock:
                self.calls.append((name, args))
                f = self._fault(name, args) if self._fault else None
            if self._delay:
                import time

                time.sleep(self._delay(name, args))
            if f is not None and not f[1]:
                raise f[0]
            out = attr(*args, **kw)
            if f is not None:
                raise f[0]
            return out
        return call

    def count(self, *names: str) -> int:
        return sum(1 for n, _ in self.calls if not names or n in names)

    def written(self) -> list[str]:
        """Final paths written (pipe_file/put_file targets; for temp+rename, the rename target)."""
        out = []
        for n, a in self.calls:
            if n in ("pipe_file", "put_file"):
                target = str(a[0] if n == "pipe_file" else a[1])
                if not is_tmp(target):
                    out.append(target)
            elif n in ("mv", "copy"):
                out.append(str(a[1]))
        return out


def flaky(rng: random.Random, p: float, budget: int, exc: Callable[[], BaseException] = lambda: ConnectionError(
        "injected: connection reset by peer")) -> Callable[[str, tuple], tuple[BaseException, bool] | None]:
    """Fault plan of a flaky link that recovers: each call fails with probability ``p`` (before or
    after the operation went through) until ``budget`` faults were injected."""
    left = [budget]

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        if left[0] > 0 and rng.random() < p:
            left[0] -= 1
            return exc(), rng.random() < 0.3
        return None
    return fault


def wrap(remote: Remote, **kw: Any) -> ProxyFS:
    proxy = ProxyFS(remote.fs, **kw)
    remote.fs = proxy
    return proxy
