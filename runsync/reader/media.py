"""Reading media (spec §13): history's MEDIA rows joined with the media table, decoded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..format.history import resolve
from ..format.media import MEDIA_DIR, decode, read_media
from ..format.values import ValueType

__all__ = ["MediaItem", "media_items", "media_keys"]


@dataclass
class MediaItem:
    """One logged media item. ``value`` is the decoded object (None when ``missing``):
    image → numpy HxW / HxWxC uint8 array; histogram → HistogramData(counts, edges);
    table → pandas DataFrame (pyarrow Table without pandas); text → str."""

    step: int
    key: str
    index: int
    kind: str
    caption: str | None
    meta: dict[str, Any]
    sha256: str | None
    stream: str
    seq: int
    time: Any
    missing: bool = False  # the history row exists but its media were never stored (spec §13.4)
    _data: bytes | None = field(default=None, repr=False)
    _format: str = field(default="", repr=False)
    _path: Path | None = field(default=None, repr=False)

    @property
    def value(self) -> Any:
        if self.missing or self._data is None:
            return None
        obj = decode(self.kind, self._format, self._data, self._path)
        if self.kind == "table":
            try:
                return obj.to_pandas()
            except ImportError:
                return obj
        return obj

    @property
    def data(self) -> bytes | None:
        """The stored bytes (PNG, JSON, Parquet or UTF-8), e.g. to save an image file as is."""
        return self._data


def media_keys(rows: pa.Table) -> list[str]:
    t = rows.filter(pc.equal(rows.column("type"), int(ValueType.MEDIA)))
    return sorted(set(t.column("key").to_pylist()))


def media_items(run_dir: Path, rows: pa.Table, key: str) -> list[MediaItem]:
    """Items of ``key`` at every step, in step, stream (byte order), then index order, from resolved history
    rows: each stream's items are kept (spec §4.5, resolution is within a stream since 1.3)."""
    refs = resolve(rows.filter(pc.equal(rows.column("key"), key)))
    refs = refs.filter(pc.equal(refs.column("type"), int(ValueType.MEDIA)))
    if refs.num_rows == 0:
        return []
    table = read_media(run_dir / MEDIA_DIR, [key])
    by_sha: dict[str, bytes] = {}
    stored = read_media(run_dir / MEDIA_DIR) if _has_null_data(table) else table
    for sha, data in zip(stored.column("sha256").to_pylist(), stored.column("data").to_pylist()):
        if data is not None:
            by_sha.setdefault(sha, data)
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in table.drop_columns(["data"]).to_pylist():
        found.setdefault((r["stream"], r["seq"]), []).append(r)
    out: list[MediaItem] = []
    for ref in refs.select(["step", "stream", "seq", "time", "text"]).to_pylist():
        items = sorted(found.get((ref["stream"], ref["seq"]), []), key=lambda r: r["index"])
        if not items:
            out.append(MediaItem(ref["step"], key, 0, ref["text"] or "", None, {}, None, ref["stream"], ref["seq"],
                                 ref["time"], missing=True))
            continue
        for r in items:
            data = by_sha.get(r["sha256"])
            out.append(MediaItem(r["step"], key, r["index"], r["kind"], r["caption"], json.loads(r["meta"]),
                                 r["sha256"], r["stream"], r["seq"], ref["time"], missing=data is None, _data=data,
                                 _format=r["format"], _path=run_dir / MEDIA_DIR))
    return out


def _has_null_data(table: pa.Table) -> bool:
    return table.num_rows > 0 and table.column("data").null_count > 0
