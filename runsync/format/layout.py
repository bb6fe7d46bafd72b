"""Where everything of a run lives (spec §2). Paths only; no I/O beyond listing."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RUN_JSON",
    "HISTORY_DIR",
    "STREAMS_DIR",
    "STREAM_RE",
    "ID_RE",
    "RunLayout",
    "StreamLayout",
    "check_stream_name",
    "check_run_id",
    "find_run_dir",
    "iter_run_dirs",
]

RUN_JSON = "run.json"
HISTORY_DIR = "history"
STREAMS_DIR = "streams"
STREAM_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CLAIM_RE = re.compile(r"^claim\.([0-9]{6})\.json$")
_SEG_RE = re.compile(r"^wal\.([0-9]{6})\.([0-9]{6})$")


def check_stream_name(name: str) -> str:
    if not isinstance(name, str) or not STREAM_RE.match(name):
        raise ValueError(f"stream name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return name


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-64 characters of a-z 0-9 _ - (starting with a letter or digit)")
    return run_id


@dataclass(frozen=True)
class StreamLayout:
    """Files of one stream (spec §2.2): ``streams/<name>/``."""

    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

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
    """Files of one run directory (spec §2.1)."""

    dir: Path

    @property
    def run_json(self) -> Path:
        return self.dir / RUN_JSON

    @property
    def history(self) -> Path:
        return self.dir / HISTORY_DIR

    @property
    def streams_dir(self) -> Path:
        return self.dir / STREAMS_DIR

    def stream(self, name: str) -> StreamLayout:
        return StreamLayout(self.dir / STREAMS_DIR / check_stream_name(name))

    def streams(self) -> list[StreamLayout]:
        return [StreamLayout(self.streams_dir / n) for n in sorted(_listdir(self.streams_dir)) if STREAM_RE.match(n)]


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
