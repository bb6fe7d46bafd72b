"""Where everything of a run lives (spec §2). Paths only; no I/O beyond listing."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .atomic import SIBLING_TMP_RE, TMP_DIR, TMP_RE

__all__ = [
    "RUN_JSON",
    "HISTORY_DIR",
    "SYSTEM_DIR",
    "TABLES",
    "STREAMS_DIR",
    "STREAM_RE",
    "PART_RE",
    "ID_RE",
    "RunLayout",
    "TMP_DIR",
    "PART_DIRS",
    "StreamLayout",
    "check_stream_name",
    "stream_order",
    "check_run_id",
    "find_run_dir",
    "iter_run_dirs",
    "wal_stream_dir",
]

RUN_JSON = "run.json"
HISTORY_DIR = "history"
SYSTEM_DIR = "system"
TABLES = (HISTORY_DIR, SYSTEM_DIR)  # long-form tables of a run (spec §4, §14)
PART_DIRS = (HISTORY_DIR, SYSTEM_DIR, "media")  # directories of parts, read by stock readers (§4, §13, §14)
STREAMS_DIR = "streams"
RESUME_DIR = ".resume"  # <root>/.resume/<key>.json: auto-resume hints (spec §2.1, since 1.3)
STREAM_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# <stream>.<lo>-<hi>.parquet, lo/hi zero-padded to 12 digits (spec §4.1); also system and media parts.
PART_RE = re.compile(r"^(?P<stream>[A-Za-z0-9_-]{1,64})\.(?P<lo>[0-9]{12})-(?P<hi>[0-9]{12})\.parquet$")
_CLAIM_RE = re.compile(r"^claim\.([0-9]{6})\.json$")
_SEG_RE = re.compile(r"^wal\.([0-9]{6})\.([0-9]{6})$")


def resume_hint_path(root: Path, key: str) -> Path:
    """``<root>/.resume/<key>.json``: the run a script started from one place resumes with ``resume="auto"``
    and no id (spec §2.1, since 1.3). Not a run directory (it has no run.json), so readers skip it."""
    return root / RESUME_DIR / f"{key}.json"


def check_stream_name(name: str) -> str:
    if not isinstance(name, str) or not STREAM_RE.match(name):
        raise ValueError(f"stream name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return name


_RANK_RE = re.compile(r"^rank([0-9]+)$")


def stream_order(name: str) -> tuple[int, int, bytes]:
    """Sort key of the reader's stream order (spec §4.6, since 1.3): ``main``, then ``rank<N>`` by the
    number N, then every other stream by name in byte order.

    Rank 0 (or the single process) comes first: it is where per-step output of
    several ranks is listed first and whose summary value a run shows (§3.3).
    """
    if name == "main":
        return (0, 0, b"")
    m = _RANK_RE.match(name)
    if m is not None:
        return (1, int(m.group(1)), name.encode())
    return (2, 0, name.encode())


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-64 characters of a-z 0-9 _ - (starting with a letter or digit)")
    return run_id


@dataclass(frozen=True)
class StreamLayout:
    """Files of one stream of one table (spec §2.2): ``streams/<name>/`` for history,
    ``streams/<name>/<table>/`` for the other tables (§14)."""

    dir: Path
    stream: str = ""  # the stream's name when ``dir`` is not named after it
    run: Path | None = None  # the run directory, when known: its ``.tmp/`` holds temp files (§2.3)

    @property
    def name(self) -> str:
        return self.stream or self.dir.name

    @property
    def tmp(self) -> Path | None:
        """Where temp files of this stream's documents are written (spec §2.3): the run's ``.tmp/``."""
        return self.run / TMP_DIR if self.run is not None else None

    def claim(self, incarnation: int) -> Path:
        return self.dir / f"claim.{incarnation:06d}.json"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"

    def segment(self, incarnation: int, segno: int) -> Path:
        return self.dir / f"wal.{incarnation:06d}.{segno:06d}"

    def incarnations(self) -> list[int]:
        """Claimed incarnation numbers, ascending."""
        out = []
        for n in _listdir(self.dir):
            m = _CLAIM_RE.match(n)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def segments(self) -> list[tuple[int, int, Path]]:
        """(incarnation, segno, path) of WAL segments present, in order."""
        out = []
        for n in _listdir(self.dir):
            m = _SEG_RE.match(n)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), self.dir / n))
        return sorted(out)


@dataclass(frozen=True)
class RunLayout:
    """Files of one run directory (spec §2.1), seen through one of its long-form tables.

    ``table`` is ``history`` (the default: user logs, §4) or ``system`` (system
    metrics, §14). Both tables have the same part schema and stream machinery;
    only their directories differ, so writer and reader code serves both.
    """

    dir: Path
    table: str = HISTORY_DIR

    @property
    def run_json(self) -> Path:
        return self.dir / RUN_JSON

    @property
    def tmp(self) -> Path:
        """The run's temp directory (spec §2.3, since 1.3): every temp file of a file of the run."""
        return self.dir / TMP_DIR

    @property
    def history(self) -> Path:
        """The directory holding this table's parts (``history/`` or ``system/``)."""
        return self.dir / self.table

    @property
    def streams_dir(self) -> Path:
        return self.dir / STREAMS_DIR

    def temp_leftovers(self) -> list[Path]:
        """Temp files of the run (spec §2.3): those in ``.tmp/``, and dot-named siblings in the part
        directories (written there by 1.2 writers). Garbage unless a live writer is writing them."""
        out = [self.tmp / n for n in sorted(_listdir(self.tmp)) if TMP_RE.match(n)]
        for d in PART_DIRS:
            out += [self.dir / d / n for n in sorted(_listdir(self.dir / d)) if SIBLING_TMP_RE.match(n)]
        return out

    def with_table(self, table: str) -> RunLayout:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
        return RunLayout(self.dir, table)

    def _stream_dir(self, name: str) -> Path:
        d = self.dir / STREAMS_DIR / name
        return d if self.table == HISTORY_DIR else d / self.table

    def stream(self, name: str) -> StreamLayout:
        return StreamLayout(self._stream_dir(check_stream_name(name)), name, self.dir)

    def streams(self) -> list[StreamLayout]:
        names = [n for n in sorted(_listdir(self.streams_dir)) if STREAM_RE.match(n)]
        if self.table != HISTORY_DIR:
            names = [n for n in names if os.path.isdir(self._stream_dir(n))]
        return [StreamLayout(self._stream_dir(n), n, self.dir) for n in names]


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def find_run_dir(root: Path, run_id: str) -> Path | None:
    """The directory of run ``run_id`` under ``root`` (``<root>/<id>``, spec §2.1), if any."""
    d = root / check_run_id(run_id)
    return d if (d / RUN_JSON).is_file() else None


def iter_run_dirs(root: Path) -> list[Path]:
    """Run directories directly under ``root`` (those holding a run.json), sorted by name."""
    return [root / n for n in sorted(_listdir(root)) if (root / n / RUN_JSON).is_file()]


def wal_stream_dir(wal_root: Path, run_dir: Path, stream_dir: Path) -> Path:
    """Where a stream keeps its WAL segments under a local ``wal_dir`` (spec §8.5, since 1.3).

    ``<wal_root>/<run id>.<8 hex of the run directory's absolute path>/<stream dir relative to the
    run>``: runs of the same id in different roots do not collide. Absolute, because the claim
    records it (spec §6.1 ``wal_dir``) for readers and the next writer on the same host.
    """
    run_abs = os.path.abspath(run_dir)
    tag = hashlib.sha256(run_abs.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    rel = os.path.relpath(os.path.abspath(stream_dir), run_abs)
    return Path(os.path.abspath(wal_root)) / f"{Path(run_abs).name}.{tag}" / rel
