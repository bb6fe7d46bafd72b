"""History parts (spec §4): the fixed-schema long table of every logged value.

One row per (logged key, log call). Every part of every run has exactly
``SCHEMA``, so stock readers see keys that first appear late in a run. Parts are
immutable Parquet files named by the seq range they cover; compaction writes a
part covering the union of smaller ones, and readers pick a non-overlapping cover.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import TMP_DIR, fsync_dir, fsync_file, temporary
from .errors import CorruptFileError
from .layout import PART_RE, stream_order
from .values import ValueType
from .version import FORMAT_VERSION, check_version
from .wal import Columns

__all__ = [
    "PART_RE",
    "ROW_GROUP_ROWS",
    "SCHEMA",
    "Part",
    "columns_to_table",
    "empty_table",
    "list_parts",
    "merge_parts",
    "parse_part_name",
    "part_name",
    "read_part",
    "remove_parts",
    "resolve",
    "select_cover",
    "sort_rows",
    "to_wide",
    "warm_up",
    "write_part",
]

SCHEMA = pa.schema(
    [
        pa.field("step", pa.int64(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("type", pa.int8(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("int", pa.int64()),
        pa.field("text", pa.string()),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
    ]
)


_WRITE_OPTS: dict[str, Any] = dict(
    compression="zstd",
    use_dictionary=["key", "stream", "text", "type"],
    column_encoding={
        "step": "DELTA_BINARY_PACKED",
        "time": "DELTA_BINARY_PACKED",
        "seq": "DELTA_BINARY_PACKED",
        "int": "DELTA_BINARY_PACKED",
        "value": "BYTE_STREAM_SPLIT",
    },
    write_statistics=True,
)

# Every part carries a CRC-32 in each page header (spec §4.2, since 1.3): bit rot in a page is an
# error, not a changed number. Stock readers ignore the field unless asked to check it.
_CHECKSUMS: dict[str, Any] = {"write_page_checksum": True}


@dataclass(frozen=True, order=True)
class Part:
    stream: str
    lo: int
    hi: int
    path: Path


def part_name(stream: str, lo: int, hi: int) -> str:
    return f"{stream}.{lo:012d}-{hi:012d}.parquet"


def parse_part_name(path: Path) -> Part | None:
    m = PART_RE.match(path.name)
    if m is None:
        return None
    return Part(m["stream"], int(m["lo"]), int(m["hi"]), path)


def list_parts(history_dir: Path) -> list[Part]:
    """All well-named parts in ``history_dir``; other names are ignored (spec §4.1)."""
    try:
        names = os.listdir(history_dir)
    except FileNotFoundError:
        return []
    parts = [parse_part_name(history_dir / n) for n in names]
    return sorted(p for p in parts if p is not None)


def select_cover(parts: list[Part]) -> list[Part]:
    """Per stream, the parts to read: drop parts whose seq range another part contains.

    While compaction runs, a merged part and its sources coexist; the merged part
    contains their ranges, so each row is read once (spec §4.4).
    """
    out: list[Part] = []
    by_stream: dict[str, list[Part]] = {}
    for p in parts:
        by_stream.setdefault(p.stream, []).append(p)
    for stream_parts in by_stream.values():
        stream_parts.sort(key=lambda p: (p.lo, -p.hi))
        last_hi = -1
        for p in stream_parts:
            if p.hi <= last_hi:
                continue  # contained in an already chosen part
            out.append(p)
            last_hi = p.hi
    return out


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def columns_to_table(cols: Columns, stream: str) -> pa.Table:
    """Rows decoded from the WAL → a history table sorted by key, then seq (spec §4.2).

    Built with a fixed, small number of numpy/Arrow calls however many keys
    there are: each such call may release the GIL, and getting it back costs the
    flusher up to a switch interval while the training thread runs Python.
    """
    groups: list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray, Any]] = []
    for key in sorted(cols.chunks):
        by_type: dict[int, list[tuple[Any, ...]]] = {}
        for chunk in cols.chunks[key]:
            by_type.setdefault(chunk[0], []).append(chunk)
        for vtype, chunks in sorted(by_type.items()):
            groups.append((key, vtype, *_concat(vtype, chunks)))
    if not groups:
        return empty_table()
    counts = np.array([len(g[2]) for g in groups], dtype=np.int64)
    n = int(counts.sum())
    steps = np.concatenate([g[2] for g in groups])
    times = np.concatenate([g[3] for g in groups])
    seqs = np.concatenate([g[4] for g in groups])
    vtypes = np.repeat(np.array([g[1] for g in groups], dtype=np.int8), counts)
    group_idx = np.repeat(np.arange(len(groups), dtype=np.int32), counts)
    value = np.zeros(n, dtype=np.float64)
    ints = np.zeros(n, dtype=np.int64)
    texts: np.ndarray | None = None
    starts = np.concatenate([[0], np.cumsum(counts)])
    for i, (_key, vtype, _s, _t, _q, vals) in enumerate(groups):
        a, b = starts[i], starts[i + 1]
        if vtype == ValueType.FLOAT:
            value[a:b] = vals
        elif vtype in (ValueType.INT, ValueType.BOOL):
            value[a:b] = vals
            if vtype == ValueType.INT:
                ints[a:b] = vals
        elif vtype == ValueType.STRING or vtype == ValueType.MEDIA:
            if texts is None:
                texts = np.full(n, None, dtype=object)
            texts[a:b] = vals
    # Rows must be in (key, seq) order; chunks of one key (several types, or runs
    # and lone records of one drain) can interleave in seq.
    key_rank = np.unique(np.array([g[0] for g in groups], dtype=object), return_inverse=True)[1]
    row_key = key_rank[group_idx]
    same = row_key[1:] == row_key[:-1]
    if not np.all((row_key[1:] > row_key[:-1]) | (same & (seqs[1:] >= seqs[:-1]))):
        order = np.lexsort((seqs, row_key))
        steps, times, seqs, vtypes, group_idx = steps[order], times[order], seqs[order], vtypes[order], group_idx[order]
        value, ints = value[order], ints[order]
        if texts is not None:
            texts = texts[order]
    has_value = (vtypes == ValueType.FLOAT) | (vtypes == ValueType.INT) | (vtypes == ValueType.BOOL)
    time_us = np.round(times * 1e6).astype(np.int64)
    key_dict = pa.array([g[0] for g in groups], pa.string())
    return pa.table(
        [
            pa.array(steps, pa.int64()),
            pa.array(time_us, pa.timestamp("us", tz="UTC")),
            pa.DictionaryArray.from_arrays(pa.array(group_idx), key_dict).cast(pa.string()),
            pa.array(vtypes, pa.int8()),
            pa.array(value, pa.float64(), mask=~has_value),
            pa.array(ints, pa.int64(), mask=vtypes != ValueType.INT),
            pa.nulls(n, pa.string()) if texts is None else pa.array(texts, pa.string()),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([stream])).cast(pa.string()),
            pa.array(seqs, pa.int64()),
        ],
        schema=SCHEMA,
    )


def warm_up() -> None:
    """Run the numpy → Arrow conversion once now.

    pyarrow imports pandas (when installed) lazily on its first conversion; if
    that first conversion is the final flush at interpreter exit, the import
    fails ("can't register atexit after shutdown") and the run cannot finish.
    """
    cols = Columns()
    cols.add("k", ValueType.STRING, np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64), ["x"])
    columns_to_table(cols, "warmup")


def _concat(vtype: int, chunks: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    if len(chunks) == 1:
        return chunks[0][1], chunks[0][2], chunks[0][3], chunks[0][4]
    steps = np.concatenate([c[1] for c in chunks])
    times = np.concatenate([c[2] for c in chunks])
    seqs = np.concatenate([c[3] for c in chunks])
    values: Any
    if vtype == ValueType.STRING or vtype == ValueType.MEDIA:
        values = [v for c in chunks for v in c[4]]
    elif vtype == ValueType.NULL:
        values = None
    else:
        values = np.concatenate([c[4] for c in chunks])
    return steps, times, seqs, values


# Rows per row group of a part (spec §4.2): parts are sorted by key, so a row group holds few keys and
# its min/max statistics on `key` let a reader of some keys skip the others (DuckDB's default is 122,880).
ROW_GROUP_ROWS = 1 << 17
# A merge (§4.4) holds about this many rows at once, whatever the size of the parts it merges.
MERGE_BATCH_ROWS = 1 << 20


def write_part(history_dir: Path, stream: str, lo: int, hi: int, tables: Iterable[pa.Table] | pa.Table,
               schema: pa.Schema = SCHEMA, options: dict[str, Any] | None = None) -> Part:
    """Write a part atomically (temp name, fsync, rename, fsync dir) and return it.

    ``tables`` may be several tables (compaction streams them as row groups, so
    memory stays bounded by one input part). ``schema``/``options`` serve the
    other part-structured tables (media, §13), which share naming and atomicity.
    ``history_dir`` is a directory of the run (``history/``, ``system/``, ``media/``): the temp file
    is written in the run's ``.tmp/``, where stock readers of the parts do not look (§2.3, since 1.3).
    """
    final = history_dir / part_name(stream, lo, hi)
    meta = {b"runsync.format": FORMAT_VERSION.encode(), b"runsync.stream": stream.encode()}
    items = [tables] if isinstance(tables, pa.Table) else tables
    with temporary(final, history_dir.parent / TMP_DIR) as tmp:
        opts = {**(options or _WRITE_OPTS), **_CHECKSUMS}
        with pq.ParquetWriter(tmp, schema.with_metadata(meta), **opts) as w:
            for t in items:
                w.write_table(t.replace_schema_metadata(meta), row_group_size=ROW_GROUP_ROWS)
        fsync_file(tmp)
        os.replace(tmp, final)
    fsync_dir(history_dir)
    return Part(stream, lo, hi, final)


def merge_parts(history_dir: Path, stream: str, paths: list[Path], lo: int, hi: int) -> Part:
    """Merge parts of one stream into the part ``[lo, hi]`` (spec §4.4), sorted by (key, seq) as a whole.

    The merged part is one key order, not its inputs' row groups one after another, so its row-group
    statistics on ``key`` stay selective (§4.2). Keys are taken in batches of about MERGE_BATCH_ROWS
    rows, each read from every input with a key filter (the inputs' statistics skip the other row
    groups), so memory stays bounded whatever the merged size; a single key with more rows than a
    batch is one batch of its own.
    """
    counts: dict[str, int] = {}
    for path in paths:
        keys = pq.read_table(path, columns=["key"]).column("key")
        for item in pc.value_counts(keys).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    batches: list[list[str]] = []
    size = 0
    for key in sorted(counts, key=lambda k: k.encode("utf-8")):
        if not batches or size + counts[key] > MERGE_BATCH_ROWS:
            batches.append([])
            size = 0
        batches[-1].append(key)
        size += counts[key]

    def tables() -> Iterator[pa.Table]:
        for batch in batches:
            wanted = pa.array(batch, pa.string())
            parts = [read_part(path, keys=batch) for path in paths]
            merged = pa.concat_tables(parts) if parts else empty_table()
            merged = merged.filter(pc.is_in(merged.column("key"), wanted))
            yield sort_rows(merged)

    return write_part(history_dir, stream, lo, hi, tables())


def sort_rows(table: pa.Table) -> pa.Table:
    """Rows by key (byte order), then seq: the row order of a row group (spec §4.2).

    A merged part read back is its row groups concatenated, sorted only piecewise; sorting
    each input again keeps every row group of a merge of merged parts sorted too.
    """
    names = table.column_names
    if "key" not in names or "seq" not in names:
        return table
    return table.sort_by([("key", "ascending"), ("seq", "ascending")])


def remove_parts(paths: Iterable[Path]) -> None:
    """Unlink parts a merged part now covers (spec §4.4: only after the merged part is in place)."""
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def read_part(path: Path | str, filesystem: Any = None, schema: pa.Schema = SCHEMA,
              keys: list[str] | None = None) -> pa.Table:
    """Read one part, checking it is a runsync part (of ``schema``) of a known version.

    With ``keys``, only rows of those keys, and only the row groups whose ``key`` statistics can hold
    one of them are decoded (parts are sorted by key, spec §4.2).

    Page checksums are verified where the part has them (spec §4.2, since 1.3): a page
    that fails its CRC is a ``CorruptFileError`` naming the file, never changed values.
    Each column must have the type the spec gives it: a flipped type in the (unchecksummed)
    footer is an error, not a silent reinterpretation of the bytes.
    """
    try:
        pf = _open(path, filesystem)
        md = pf.schema_arrow.metadata or {}
        version = md.get(b"runsync.format")
        if version is None:
            raise CorruptFileError("Parquet file without runsync.format metadata: not a history part", path)
        check_version(version.decode("utf-8", "replace"), path)
        if keys is None or "key" not in pf.schema_arrow.names:
            table = pf.read()
        else:
            table = pf.read_row_groups(_row_groups_with(pf.metadata, keys))
            table = table.filter(pc.is_in(table.column("key"), pa.array(keys, pa.string())))
    except FileNotFoundError:
        raise
    except _READ_ERRORS as e:
        raise CorruptFileError(f"unreadable part ({_reason(e)}); restore it from a copy (runsync pull)", path) from None
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise CorruptFileError(f"part lacks columns {missing}", path)
    table = table.select(schema.names)
    for f in schema:
        got = table.schema.field(f.name).type
        if got != f.type:
            raise CorruptFileError(f"column {f.name!r} has type {got}, the spec requires {f.type}", path)
    return table.cast(schema)


# What pyarrow raises on damaged bytes (a failed page CRC is an OSError; a damaged footer
# can surface as any of these while Thrift or the Arrow schema is decoded).
_READ_ERRORS = (pa.ArrowException, OSError, ValueError, KeyError, IndexError, TypeError, EOFError)


def _reason(e: BaseException) -> str:
    text = str(e).split("\n")[0][:200]
    return f"{type(e).__name__}: {text}" if not isinstance(e, (pa.ArrowException, OSError)) else text


def _open(path: Path | str, filesystem: Any = None) -> pq.ParquetFile:
    """A ParquetFile that verifies page checksums on read (parts without them still read)."""
    if filesystem is not None:
        return pq.ParquetFile(path, filesystem=filesystem, page_checksum_verification=True)
    return pq.ParquetFile(path, page_checksum_verification=True)


def _row_groups_with(md: Any, keys: list[str]) -> list[int]:
    """Row groups whose min/max statistics on ``key`` admit one of ``keys`` (all, where there are none)."""
    col = md.schema.names.index("key")
    out = []
    for i in range(md.num_row_groups):
        st = md.row_group(i).column(col).statistics
        if st is None or not st.has_min_max:
            out.append(i)
            continue
        lo, hi = st.min, st.max
        lo = lo.decode("utf-8", "surrogateescape") if isinstance(lo, bytes) else lo
        hi = hi.decode("utf-8", "surrogateescape") if isinstance(hi, bytes) else hi
        if any(lo <= k <= hi for k in keys):
            out.append(i)
    return out


def resolve(table: pa.Table) -> pa.Table:
    """Keep, per (stream, step, key), the row with the greatest (time, seq) (spec §4.5).

    Repeats within a stream (``commit=False``, explicit steps, a resume) are
    corrections: the last call wins. Rows of different streams (ranks) are
    different measurements and are all kept (since 1.3). Returns the winners
    sorted by step, then key, then stream (byte order).
    """
    if table.num_rows == 0:
        return table
    if _cannot_repeat(table):
        return table
    order = table.sort_by(
        [("step", "ascending"), ("key", "ascending"), ("stream", "ascending"), ("time", "descending"),
         ("seq", "descending")]
    )
    steps = order.column("step").to_numpy()
    n = len(steps)
    first = np.ones(n, dtype=bool)
    if n > 1:
        keys, streams = order.column("key"), order.column("stream")
        same_key = pc.equal(keys.slice(1), keys.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        same_stream = pc.equal(streams.slice(1), streams.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        first[1:] = ~((steps[1:] == steps[:-1]) & same_key & same_stream)
    return order.filter(pa.array(first))


def _cannot_repeat(table: pa.Table) -> bool:
    """Rows of one stream and one key whose steps strictly increase: already resolved and in order.

    The common read (``history(keys=[k])`` of a one-stream run) then costs no sort. Rows are read in
    seq order (parts by range, rows by (key, seq) within a part, §4.2), so strictly increasing steps
    mean no (stream, step, key) repeats, and the rows are already sorted by step as ``resolve`` returns.
    """
    key, stream = table.column("key"), table.column("stream")
    n = table.num_rows
    if n > 1 and (pc.count_distinct(key).as_py() != 1 or pc.count_distinct(stream).as_py() != 1):
        return False
    steps = table.column("step").to_numpy()
    return bool(np.all(steps[1:] > steps[:-1]))


def to_wide(resolved: pa.Table, keys: list[str] | None = None, by_stream: bool = False) -> pa.Table:
    """Resolved long rows → one row per step with a column per key (spec §4.6).

    Column types: all INT → int64; INT/FLOAT mixes → float64; all BOOL → bool;
    STRING → string; mixed string and number → string of the value's JSON-free repr.
    ``time`` of a step is the latest time among its winning rows.

    ``by_stream`` (a run with several streams, since 1.3): one row per
    (stream, step) instead, with a ``stream`` column after ``step``; rows by
    stream in reader order (``layout.stream_order``), then step. Column types
    are decided over all streams together, so every stream's cells share them.
    """
    if keys is not None and not set(pc.unique(resolved.column("key")).to_pylist()) <= set(keys):
        resolved = resolved.filter(pc.is_in(resolved.column("key"), pa.array(keys, pa.string())))
    if resolved.num_rows == 0:
        empty: dict[str, pa.Array] = {"step": pa.array([], pa.int64())}
        if by_stream:
            empty["stream"] = pa.array([], pa.string())
        empty["time"] = pa.array([], pa.timestamp("us", tz="UTC"))
        return pa.table(empty)
    steps_all = resolved.column("step").to_numpy()
    out: dict[str, pa.Array] = {}
    if by_stream:
        enc_s = resolved.column("stream").combine_chunks().dictionary_encode()
        names = enc_s.dictionary.to_pylist()
        rank = np.empty(len(names), dtype=np.int64)
        rank[sorted(range(len(names)), key=lambda i: stream_order(names[i]))] = np.arange(len(names))
        pairs = np.stack([rank[enc_s.indices.to_numpy()], steps_all], axis=1)
        uniq_pairs, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        by_rank = sorted(names, key=stream_order)
        out["step"] = pa.array(uniq_pairs[:, 1], pa.int64())
        out["stream"] = pa.array([by_rank[r] for r in uniq_pairs[:, 0].tolist()], pa.string())
        n = len(uniq_pairs)
    elif len(steps_all) < 2 or bool(np.all(steps_all[1:] > steps_all[:-1])):
        uniq, inverse = steps_all, np.arange(len(steps_all))  # one key's resolved rows: no sort needed
        out["step"] = pa.array(uniq, pa.int64())
        n = len(uniq)
    else:
        uniq, inverse = np.unique(steps_all, return_inverse=True)
        out["step"] = pa.array(uniq, pa.int64())
        n = len(uniq)
    times = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(times, inverse, resolved.column("time").cast(pa.int64()).to_numpy())
    out["time"] = pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    cols = list(out.items())
    key_col = resolved.column("key").combine_chunks()
    enc = key_col.dictionary_encode()
    dictionary = enc.dictionary.to_pylist()
    indices = enc.indices.to_numpy()
    types = resolved.column("type").to_numpy()
    value = resolved.column("value")
    ints = resolved.column("int")
    text = resolved.column("text")
    order = sorted(range(len(dictionary)), key=lambda i: dictionary[i])
    if keys is not None:
        rank = {k: i for i, k in enumerate(keys)}
        order = sorted(order, key=lambda i: rank.get(dictionary[i], len(rank)))
    for di in order:
        key = dictionary[di]
        sel = np.nonzero(indices == di)[0]
        pos = inverse[sel]
        ktypes = set(np.unique(types[sel]).tolist()) - {ValueType.NULL}
        take = pa.array(sel)
        col: pa.Array
        if not ktypes or ktypes <= {ValueType.FLOAT, ValueType.INT} and ktypes != {ValueType.INT}:
            col = _scatter_arrow(n, pos, value.take(take), pa.float64())
        elif ktypes == {ValueType.INT}:
            col = _scatter_arrow(n, pos, ints.take(take), pa.int64())
        elif ktypes == {ValueType.BOOL}:
            col = _scatter_arrow(n, pos, pc.not_equal(value.take(take), 0.0), pa.bool_())
        else:
            col = _scatter_arrow(n, pos, _as_text(types[sel], value.take(take), ints.take(take), text.take(take)), pa.string())
        cols.append((key, col))
    # A key named "stream" (valid, §5.1) keeps its own column beside the stream column (§4.6).
    return pa.Table.from_arrays([c for _n, c in cols], names=[n for n, _c in cols])


def _scatter_arrow(n: int, pos: np.ndarray, vals: pa.Array, typ: pa.DataType) -> pa.Array:
    idx = np.full(n, -1, dtype=np.int64)
    idx[pos] = np.arange(len(pos))
    mask = idx < 0
    idx[mask] = 0
    if len(vals) == 0:
        return pa.nulls(n, typ)
    taken = pc.take(vals.cast(typ), pa.array(idx))
    return pc.if_else(pa.array(~mask), taken, pa.nulls(n, typ))


def _as_text(types: np.ndarray, value: pa.Array, ints: pa.Array, text: pa.Array) -> pa.Array:
    """A key logged with strings and other types: render every value as text."""
    out: list[str | None] = []
    vals, ivals, tvals = value.to_pylist(), ints.to_pylist(), text.to_pylist()
    for t, v, i, s in zip(types.tolist(), vals, ivals, tvals):
        if t == ValueType.STRING or t == ValueType.MEDIA:
            out.append(s)
        elif t == ValueType.INT:
            out.append(str(i))
        elif t == ValueType.BOOL:
            out.append("true" if v else "false")
        elif t == ValueType.FLOAT:
            out.append(repr(v))
        else:
            out.append(None)
    return pa.array(out, pa.string())


@dataclass(frozen=True)
class PartStats:
    rows: int
    max_step: int
    max_time: float  # unix seconds
    max_seq: int


def part_stats(path: Path) -> PartStats:
    """Row count and maxima of a part from its Parquet statistics (no data read)."""
    try:
        md = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptFileError(f"unreadable history part ({e})", path) from None
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    idx = {n: names.index(n) for n in ("step", "time", "seq")}
    max_step = max_time = max_seq = -1
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        if rg.num_rows == 0:
            continue
        st = {n: rg.column(i).statistics for n, i in idx.items()}
        max_step = max(max_step, st["step"].max)
        t = st["time"].max
        max_time = max(max_time, t.timestamp() if hasattr(t, "timestamp") else t / 1e6)
        max_seq = max(max_seq, st["seq"].max)
    named = parse_part_name(Path(path))
    if named is not None and max_seq >= 0 and not named.lo <= max_seq <= named.hi:
        # The footer has no checksum (spec §10): a flipped statistic must not move a resume's seqs.
        raise CorruptFileError(f"statistics give seq {max_seq}, outside the part's range [{named.lo}, {named.hi}]", path)
    return PartStats(md.num_rows, max_step, max_time, max_seq)
