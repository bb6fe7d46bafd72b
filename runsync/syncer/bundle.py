"""One-way transfer: a single tar of everything not yet bundled (spec §12.7).

For sites where only single files may cross the air gap (a data diode, a
scanned USB stick). ``runsync bundle SRC -o X.tar`` writes ``runsync-bundle.json``
first — each run's full manifest and which files this bundle carries — then
those files. ``runsync push X.tar REMOTE`` verifies the whole bundle before
sending anything, then pushes with the usual commit rule (manifest last).
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..format.errors import CorruptFileError, FormatError
from ..format.layout import ID_RE
from ..format.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    check_rel_path,
    is_blob,
    is_replaced,
    is_tabular,
    parse_manifest,
    sha256_file,
    staging_path,
    stored_at,
)
from ..format.version import FORMAT_VERSION, check_version
from .push import PushOptions, PushResult, run_selected
from .remote import Remote
from .source import LocalFile, file_stats, find_runs, run_files
from .staging import StagedGone, place, remove_unlisted
from .state import SyncState
from .tails import shipped_files

__all__ = ["BUNDLE_INDEX", "make_bundle", "push_bundle", "BundleResult"]

BUNDLE_INDEX = "runsync-bundle.json"


@dataclass
class BundleResult:
    runs: int = 0
    files: int = 0
    bytes: int = 0
    skipped_runs: int = 0
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "files": self.files, "bytes": self.bytes, "skipped_runs": self.skipped_runs,
                "path": self.path}


def _sha(path: str | Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return sha256_file(f)


def make_bundle(src: Path, out: Path, opts: PushOptions | None = None) -> BundleResult:
    """Write a bundle of what changed since the last bundle of ``src`` (state key: bundle)."""
    opts = opts or PushOptions()
    state = SyncState(src, "bundle:")
    res = BundleResult(path=str(out))
    index: dict[str, Any] = {"format": FORMAT_VERSION, "created": time.time(), "runs": {}}
    carried: list[tuple[str, str, str, int]] = []  # (run, rel, path, size)
    with ExitStack() as built:  # a dead writer's tail as parts (spec §12.4), kept until the tar is written
        for run_dir in find_runs(src):
            if not run_selected(run_dir.name, opts):
                continue
            files = run_files(run_dir)
            stats = file_stats(files)  # of the source files: an unchanged crashed run is skipped by stat()
            if state.unchanged(run_dir.name, stats):
                res.skipped_runs += 1
                continue
            files = built.enter_context(shipped_files(run_dir, files))
            _index_run(run_dir.name, files, stats, state, index, carried)
            res.runs += 1
        _write_tar(out, index, carried, res)
    if not opts.dry_run:
        state.save()
    return res


def _index_run(run_id: str, files: list[LocalFile], stats: list[tuple[str, int, int, int]], state: SyncState,
               index: dict[str, Any], carried: list[tuple[str, str, str, int]]) -> None:
    """Hash one run's files into the bundle index; the ones the last bundle did not carry are carried."""
    old = state.committed(run_id)
    entries: dict[str, dict[str, Any]] = {}
    hashes: dict[str, list[Any]] = {}
    ship: list[str] = []
    for f in files:
        sha, size = _sha(f.path)
        entries[f.rel] = {"size": size, "sha256": sha}
        hashes[f.rel] = [f.size, f.mtime_ns, f.ino, sha]
        if old.get(f.rel) != [size, sha]:
            ship.append(f.rel)
            carried.append((run_id, f.rel, f.path, size))
    index["runs"][run_id] = {"files": entries, "carried": ship}
    state.record(run_id, hashes, {p: [e["size"], e["sha256"]] for p, e in entries.items()}, stats)


def _write_tar(out: Path, index: dict[str, Any], carried: list[tuple[str, str, str, int]], res: BundleResult) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        raw = json.dumps(index, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(BUNDLE_INDEX)
        info.size, info.mtime = len(raw), int(time.time())
        tar.addfile(info, io.BytesIO(raw))
        for run_id, rel, path, size in carried:
            info = tarfile.TarInfo(f"{run_id}/{rel}")
            info.size, info.mtime, info.mode = size, int(time.time()), 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
            res.files += 1
            res.bytes += size
    tmp.replace(out)


def _member_name(name: str) -> tuple[str, str]:
    run_id, _, rel = name.partition("/")
    if not ID_RE.match(run_id) or not rel:
        raise FormatError(f"bundle member {name!r} is not <run id>/<path>")
    return run_id, check_rel_path(rel)


def _read_index(tar: tarfile.TarFile, where: str) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != BUNDLE_INDEX or not first.isfile():
        raise CorruptFileError(f"not a runsync bundle (no {BUNDLE_INDEX} first)", where)
    f = tar.extractfile(first)
    assert f is not None
    try:
        index = json.loads(f.read())
        if not isinstance(index, dict) or not isinstance(index.get("runs"), dict):
            raise FormatError("the index must be an object whose 'runs' is an object of run id -> run")
        check_version(index.get("format", "1.0"), where)
        for run_id, r in index["runs"].items():
            if not ID_RE.match(run_id):
                raise FormatError(f"invalid run id {run_id!r}")
            if not isinstance(r, dict) or not isinstance(r.get("carried"), list):
                raise FormatError(f"run {run_id!r}: expected an object with 'files' and a 'carried' list")
            listed = parse_manifest(json.dumps({"run_id": run_id, "files": r["files"]}).encode(), where).files
            for rel in r["carried"]:
                if check_rel_path(rel) not in listed:
                    raise FormatError(f"run {run_id!r} carries {rel!r}, which its file list does not name")
    except (ValueError, KeyError, TypeError, AttributeError, FormatError) as e:
        raise CorruptFileError(f"bundle index rejected: {e}", where) from None
    return index  # type: ignore[no-any-return]


def verify_bundle(path: Path) -> dict[str, Any]:
    """Check every member against the index; raise naming every damaged or missing file."""
    where = str(path)
    damaged: list[str] = []
    seen: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tar:
            index = _read_index(tar, where)
            for m in tar:
                if m.name == BUNDLE_INDEX and m.offset == 0:
                    continue
                if not m.isfile():  # links, devices, directories: never unpacked
                    damaged.append(f"{m.name} (not a regular file)")
                    continue
                try:
                    run_id, rel = _member_name(m.name)
                    e = index["runs"][run_id]["files"][rel]
                except (FormatError, KeyError):
                    damaged.append(f"{m.name} (not in the bundle index)")
                    continue
                f = tar.extractfile(m)
                assert f is not None
                digest, n = sha256_file(f)
                if n != e["size"] or digest != e["sha256"]:
                    damaged.append(f"{m.name} (content does not match its hash)")
                seen.add(m.name)
    except (tarfile.TarError, EOFError, OSError) as e:
        damaged.append(f"(archive unreadable or truncated: {e})")
        index = locals().get("index", {"runs": {}})
    for run_id, r in index["runs"].items():
        for rel in r["carried"]:
            if f"{run_id}/{rel}" not in seen:
                damaged.append(f"{run_id}/{rel} (missing: bundle truncated?)")
    if damaged:
        raise CorruptFileError("bundle rejected, nothing was pushed; damaged files: " + "; ".join(damaged), where)
    return index


def push_bundle(path: Path, remote: Remote) -> PushResult:
    """Verify the whole bundle, then push it: files first, each run's manifest last."""
    t0 = time.monotonic()
    remote.check_writable()
    index = verify_bundle(path)
    res = PushResult(runs=len(index["runs"]))
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if m.name == BUNDLE_INDEX and m.offset == 0:
                continue
            run_id, rel = _member_name(m.name)
            sha = index["runs"][run_id]["files"][rel]["sha256"]
            # Tabular files wait in the staging area until their run's commit (spec §12.3).
            target = staging_path(run_id, sha) if is_tabular(rel) else stored_at(run_id, rel, sha)
            if target != f"{run_id}/{rel}" and remote.size(target) == m.size:
                res.bytes_deduplicated += m.size if is_blob(rel) else 0
                continue
            f = tar.extractfile(m)
            remote.write_stream(target, f)
            res.files_sent += 1
            res.bytes_sent += m.size
    for run_id, r in index["runs"].items():
        files = {p: FileEntry(e["size"], e["sha256"]) for p, e in r["files"].items()}
        missing = [p for p, e in files.items() if p not in r["carried"]
                   and remote.size(stored_at(run_id, p, e.sha256)) != e.size]
        if missing:
            res.failures.append((run_id, f"files from an earlier bundle are not on {remote.display}: "
                                 f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; push that bundle first"))
            continue
        old_raw = remote.read(f"{run_id}/{MANIFEST}")
        by_sha: dict[str, list[str]] = {}
        for p in r["carried"]:
            if is_tabular(p):
                by_sha.setdefault(files[p].sha256, []).append(p)
        try:
            for sha, rels in by_sha.items():
                place(remote, run_id, sha, rels)
        except StagedGone as gone:
            res.failures.append((run_id, f"not committed: {gone} vanished (a concurrent push?); push the bundle again"))
            continue
        remote.write(f"{run_id}/{MANIFEST}", Manifest(run_id=run_id, files=files).to_bytes())
        for p, e in files.items():  # after the commit: run-path copies of replaced documents
            if is_replaced(p) and p in r["carried"]:
                data = remote.read(stored_at(run_id, p, e.sha256))
                if data is not None:
                    remote.write(f"{run_id}/{p}", data)
        old = set(parse_manifest(old_raw, remote.display).files) if old_raw is not None else set()
        for rel in old - set(files):
            if not is_blob(rel) and not is_tabular(rel):
                remote.remove(f"{run_id}/{rel}")
        remove_unlisted(remote, run_id, files, old, moved=by_sha)
        res.runs_pushed += 1
    res.seconds = time.monotonic() - t0
    return res
