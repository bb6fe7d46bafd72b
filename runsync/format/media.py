"""The media table (spec §13): images, histograms, tables and texts logged with log().

A history row of type MEDIA (5) says *that* a key holds media at a step; the
media rows say *what*: one row per item, joined to history on (stream, seq,
key). Media parts are Parquet files named and written exactly like history
parts (§4.1, §2.3) in ``media/``, so the same cover rule applies, and a stock
reader reads them with one glob. Items are content-addressed: an item whose
SHA-256 an earlier media part of the run already stores has ``data`` null.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import CorruptFileError
from .history import list_parts, read_part, select_cover, write_part

__all__ = [
    "MEDIA_DIR",
    "MEDIA_SCHEMA",
    "KINDS",
    "FORMATS",
    "MediaRow",
    "media_table",
    "write_media_part",
    "read_media",
    "decode",
    "HistogramData",
]

MEDIA_DIR = "media"
KINDS = ("image", "histogram", "table", "text")
FORMATS = {"image": "png", "histogram": "json", "table": "parquet", "text": "utf8"}

MEDIA_SCHEMA = pa.schema(
    [
        pa.field("stream", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("meta", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("data", pa.large_binary()),
    ]
)

# Encoded media are already compressed (PNG, zstd Parquet): only the small columns get zstd.
_OPTS: dict[str, Any] = dict(
    compression={f.name: ("none" if f.name == "data" else "zstd") for f in MEDIA_SCHEMA},
    use_dictionary=["stream", "key", "kind", "format"],
)


@dataclass
class MediaRow:
    """One encoded item, as stored (spec §13.2)."""

    stream: str
    seq: int
    step: int
    key: str
    index: int
    kind: str
    format: str
    caption: str | None
    meta: dict[str, Any]
    sha256: str
    size: int
    data: bytes | None = field(repr=False, default=None)


def media_table(rows: list[MediaRow]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in MEDIA_SCHEMA}
    for r in rows:
        for name in cols:
            v = getattr(r, name)
            cols[name].append(json.dumps(v, sort_keys=True, separators=(",", ":")) if name == "meta" else v)
    return pa.table([pa.array(cols[f.name], f.type) for f in MEDIA_SCHEMA], schema=MEDIA_SCHEMA)


def write_media_part(media_dir: Path, stream: str, lo: int, hi: int, tables: Any) -> Any:
    """Write one media part atomically (§2.3); name and cover rule as history parts (§4.1, §4.4)."""
    return write_part(media_dir, stream, lo, hi, tables, schema=MEDIA_SCHEMA, options=_OPTS)


def read_media(media_dir: Path, keys: list[str] | None = None) -> pa.Table:
    """Every media row of a run (the cover of its media parts), ``data`` included."""
    parts = select_cover(list_parts(media_dir))
    tables = [read_part(p.path, schema=MEDIA_SCHEMA) for p in parts]
    table = pa.concat_tables(tables) if tables else MEDIA_SCHEMA.empty_table()
    if keys is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table.column("key"), pa.array(list(keys), pa.string())))
    return table


@dataclass(frozen=True)
class HistogramData:
    """A decoded histogram: ``counts[i]`` values fell in ``[edges[i], edges[i+1])``."""

    counts: Any  # numpy int64 array
    edges: Any  # numpy float64 array, one longer than counts


def decode(kind: str, fmt: str, data: bytes, path: Any = None) -> Any:
    """The usable object for stored bytes: image → numpy HxWxC uint8 (HxW for grey), histogram →
    HistogramData, table → pyarrow Table, text → str. Raises CorruptFileError on bad bytes."""
    try:
        if fmt == "png":
            try:
                from PIL import Image
            except ImportError:
                raise ImportError("decoding images needs pillow: pip install 'runsync[media]'") from None
            import numpy as np

            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im)
        if fmt == "json":
            import numpy as np

            doc = json.loads(data)
            return HistogramData(np.asarray(doc["counts"], dtype=np.int64), np.asarray(doc["edges"], dtype=np.float64))
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(pa.BufferReader(data))
        if fmt == "utf8":
            return data.decode("utf-8")
    except ImportError:
        raise
    except Exception as e:
        raise CorruptFileError(f"undecodable {kind} media ({type(e).__name__}: {e})", path) from None
    raise CorruptFileError(f"unknown media format {fmt!r} (written by a newer runsync?)", path)
