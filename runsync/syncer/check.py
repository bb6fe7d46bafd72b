"""``runsync verify DIR`` on a local runs directory: is every stored byte still what was written?

No manifest is needed (spec §12.8, since 1.3). Every part is read with its page
checksums verified (§4.2), every WAL segment's records with their framing and CRCs
(§8.5), every JSON document is parsed, and every saved file is hashed against its
content address (§13.5). A remote is verified against its manifests instead (pull.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format.errors import RunsyncError
from ..format.history import SCHEMA, read_part
from ..format.layout import PART_RE, RunLayout, iter_run_dirs
from ..format.media import MEDIA_DIR, MEDIA_SCHEMA
from ..format.pagecrc import has_page_checksums
from ..format.tail import read_tail
from ..format.walcheck import describe_losses

__all__ = ["LocalCheck", "check_local", "local_runs"]

_TABLES = (("history", SCHEMA), ("system", SCHEMA), (MEDIA_DIR, MEDIA_SCHEMA))
_BLOB_RE_LEN = 64


@dataclass
class LocalCheck:
    """What ``check_local`` looked at, and each damaged file with the reason."""

    root: str
    runs: int = 0
    parts: int = 0
    parts_without_checksums: int = 0
    segments: int = 0
    documents: int = 0
    saved_files: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def ok(self) -> bool:
        return not self.damaged

    @property
    def files(self) -> int:
        return self.parts + self.segments + self.documents + self.saved_files

    def summary(self) -> str:
        crc = f" ({self.parts_without_checksums} without page checksums: read, not verified)" \
            if self.parts_without_checksums else ""
        found = "OK" if self.ok else f"{len(self.damaged)} DAMAGED"
        return (f"{self.runs} runs: {self.parts} parts{crc}, {self.segments} WAL segments, {self.documents} "
                f"documents, {self.saved_files} saved files checked: {found}")

    def as_dict(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "runs": self.runs, "parts": self.parts,
                "parts_without_checksums": self.parts_without_checksums, "segments": self.segments,
                "documents": self.documents, "saved_files": self.saved_files,
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged]}


def local_runs(root: Path) -> list[Path]:
    """``root`` itself if it is a run directory (it holds run.json, §2.1), else the runs directly under it."""
    return [root] if (root / "run.json").is_file() else iter_run_dirs(root)


def check_local(root: Path, progress: Callable[[int, int, LocalCheck], None] | None = None) -> LocalCheck:
    """Check every run under ``root`` (or the run ``root``); ``progress(done, total, res)`` after each run."""
    runs = local_runs(root)
    res = LocalCheck(str(root))
    for i, run in enumerate(runs):
        _check_run(run, res)
        res.runs += 1
        if progress is not None:
            progress(i + 1, len(runs), res)
    return res


def _check_run(run: Path, res: LocalCheck) -> None:
    for table, schema in _TABLES:
        d = run / table
        for name in _names(d):
            if PART_RE.match(name):
                _check_part(d / name, schema, res)
    layout = RunLayout(run)
    for tab in ("history", "system"):
        for st in layout.with_table(tab).streams():
            for inc in sorted({inc for inc, _s, _p in st.segments()}):
                _check_wal(st, inc, res)
    for path in _json_documents(run):
        _check_document(path, res)
    _check_saved_files(run / "files" / "sha256", res)


def _names(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _check_part(path: Path, schema: Any, res: LocalCheck) -> None:
    res.parts += 1
    try:
        read_part(path, schema=schema)  # page CRCs verified, columns and types checked (spec §4.2)
        if not has_page_checksums(path):
            res.parts_without_checksums += 1
    except FileNotFoundError:
        res.parts -= 1  # merged away by a live writer meanwhile (spec §4.4)
    except (RunsyncError, OSError, ValueError) as e:
        res.damaged.append((str(path), _why(e, path)))


def _check_wal(st: Any, inc: int, res: LocalCheck) -> None:
    paths = [p for i, _s, p in st.segments() if i == inc]
    res.segments += len(paths)
    try:
        cols = read_tail(st, inc, -1, warn=False)  # every record, framing and CRCs (spec §8.5)
    except (RunsyncError, OSError, ValueError, KeyError) as e:
        path = getattr(e, "path", None) or str(paths[0] if paths else st.dir)
        res.damaged.append((str(path), _why(e, Path(path))))
        return
    for loss, text in zip(_first_per_path(cols.losses), describe_losses(cols.losses)):
        res.damaged.append((loss, text.split(": ", 1)[1] if text.startswith(loss) else text))


def _first_per_path(losses: list[Any]) -> list[str]:
    seen: list[str] = []
    for loss in losses:
        if loss.path not in seen:
            seen.append(loss.path)
    return seen


def _json_documents(run: Path) -> list[Path]:
    """Every ``*.json`` a runsync writer or pusher stores in the run (temp and dot files skipped)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(run):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "files")
        out.extend(Path(dirpath) / n for n in sorted(filenames) if n.endswith(".json") and not n.startswith("."))
    return out


def _check_document(path: Path, res: LocalCheck) -> None:
    res.documents += 1
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        res.documents -= 1  # replaced meanwhile
        return
    except OSError as e:
        res.damaged.append((str(path), f"unreadable ({e})"))
        return
    if not raw and path.name == "status.json":
        return  # a power loss can leave a running writer's status empty; readers take it as crashed (§2.3)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        res.damaged.append((str(path), f"not valid JSON ({e})"))
        return
    if not isinstance(doc, dict):
        res.damaged.append((str(path), f"not a JSON object (a {type(doc).__name__})"))


def _check_saved_files(store: Path, res: LocalCheck) -> None:
    """Saved files are named by their SHA-256 (spec §13.5): the name is the checksum."""
    for aa in _names(store):
        for name in _names(store / aa):
            if len(name) != _BLOB_RE_LEN or name.startswith("."):
                continue
            path = store / aa / name
            res.saved_files += 1
            h = hashlib.sha256()
            try:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            except OSError as e:
                res.damaged.append((str(path), f"unreadable ({e})"))
                continue
            if h.hexdigest() != name:
                res.damaged.append((str(path), f"content does not match its name (SHA-256 {h.hexdigest()})"))


def _why(e: BaseException, path: Path) -> str:
    return str(e).removeprefix(f"{path}: ")
