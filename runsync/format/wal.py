"""Write-ahead log segments (spec §8): the durable record of every accepted call.

A segment is a preallocated, zero-filled file. Records are appended back to back
from offset 64; each starts with ``u32 length, u32 crc32(body)`` and the writer
stores that header *last*, so a reader that meets a zero length has reached the
end and a kill can never leave a torn record behind. ROW records (the hot path)
carry crc 0, "not computed"; the segment header's ``synced_off`` says how far
the segment is known to be on stable storage, which bounds what is trusted after
a reboot (spec §8.2, §9). An append-mode segment (since 1.3, flag
``FLAG_APPEND``) is not preallocated: the writer's flusher appends whole
records with write(2), so its end is the file end (spec §8.2.1).

This module defines the byte layout and decodes it into columns. The writer
packs records with the Struct objects defined here.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptFileError
from .records import Kind, MetaOp
from .values import ValueType
from .version import FORMAT_MAJOR, FORMAT_MINOR, check_version
from .walcheck import Loss, find_resync

__all__ = [
    "MAGIC",
    "SEGMENT_HEADER",
    "SEGMENT_HEADER_SIZE",
    "SYNCED_OFF",
    "SYNCED_OFF_POS",
    "FLAG_APPEND",
    "HEADER",
    "Kind",
    "MetaOp",
    "ROW_PREFIX",
    "GENERIC_PREFIX",
    "KEYDEF",
    "SCHEMA_PREFIX",
    "SCHEMA_ITEM",
    "META_PREFIX",
    "VALUE_CODES",
    "align8",
    "encode_segment_header",
    "decode_segment_header",
    "Decoder",
    "Columns",
    "MetaRecord",
    "Loss",
]

MAGIC = b"RSYNCWAL"
# magic, format major, format minor, incarnation, segment number, flags (since 1.3; reserved zero
# before), synced_off; padded to 64 bytes.
SEGMENT_HEADER = struct.Struct("<8sHHIIIQ")
SEGMENT_HEADER_SIZE = 64
SYNCED_OFF = struct.Struct("<Q")
SYNCED_OFF_POS = 24
FLAG_APPEND = 1  # header flag (since 1.3): records are appended with write(2), not mapped (spec §8.2.1)
HEADER = struct.Struct("<II")  # record length (incl. header, multiple of 8), crc32 of body


# Bodies start at offset 8 of a record; all integers little-endian.
ROW_PREFIX = struct.Struct("<B3xIqqd")  # kind, schema id, seq, step, time (unix s)
GENERIC_PREFIX = struct.Struct("<B3xIqqd")  # kind, n items, seq, step, time
KEYDEF = struct.Struct("<B3xIH")  # kind, key id, utf-8 length; then the bytes
SCHEMA_PREFIX = struct.Struct("<B3xIH")  # kind, schema id, n; then n SCHEMA_ITEM
SCHEMA_ITEM = struct.Struct("<IB")  # key id, value type
META_PREFIX = struct.Struct("<B3xIqdI")  # kind, op, seq, time, json length; then json

# Fixed-size value encodings used by ROW records, by type code.
VALUE_CODES = {ValueType.FLOAT: "d", ValueType.INT: "q", ValueType.BOOL: "?"}
_NP_CODES = {ValueType.FLOAT: "<f8", ValueType.INT: "<i8", ValueType.BOOL: "u1"}
_GEN_ITEM = struct.Struct("<IB")
_F64 = struct.Struct("<d")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")


def align8(n: int) -> int:
    return (n + 7) & ~7


def encode_segment_header(incarnation: int, segno: int, flags: int = 0) -> bytes:
    head = SEGMENT_HEADER.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, incarnation, segno, flags, SEGMENT_HEADER_SIZE)
    return head.ljust(SEGMENT_HEADER_SIZE, b"\0")


def decode_segment_header(data: bytes, path: Path | str | None = None) -> tuple[int, int, int] | None:
    """Return (incarnation, segno, synced_off) of a segment, checking magic and version.

    None for a segment whose creation was interrupted (shorter than its header,
    or a header still all zeros): it holds no records (spec §8.5).
    """
    if len(data) < SEGMENT_HEADER_SIZE or not any(data[:SEGMENT_HEADER_SIZE]):
        return None
    magic, major, minor, inc, segno, _flags, synced = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptFileError("not a runsync WAL segment (bad magic)", path)
    check_version(f"{major}.{minor}", path)
    return inc, segno, synced


@dataclass
class MetaRecord:
    """A decoded META record: a summary or config mutation."""

    seq: int
    time: float
    op: int
    payload: Any


@dataclass
class Columns:
    """Decoded history rows, grouped by key, in log order within each key.

    ``chunks[key]`` is a list of (type, steps, times, seqs, values) where values is
    a numpy array for FLOAT/INT/BOOL, a list of str for STRING and None for NULL.
    """

    chunks: dict[str, list[tuple[int, np.ndarray, np.ndarray, np.ndarray, Any]]] = field(default_factory=dict)
    meta: list[MetaRecord] = field(default_factory=list)
    rows: int = 0
    max_seq: int = -1
    # Damaged records met while decoding (spec §8.5, since 1.3); the caller reports them.
    losses: list[Loss] = field(default_factory=list)

    def add(self, key: str, vtype: int, steps: np.ndarray, times: np.ndarray, seqs: np.ndarray, values: Any) -> None:
        self.chunks.setdefault(key, []).append((vtype, steps, times, seqs, values))
        self.rows += len(steps)

    def extend(self, other: Columns) -> None:
        for key, lst in other.chunks.items():
            self.chunks.setdefault(key, []).extend(lst)
        self.meta.extend(other.meta)
        self.losses.extend(other.losses)
        self.rows += other.rows
        self.max_seq = max(self.max_seq, other.max_seq)

    def __bool__(self) -> bool:
        return self.rows > 0 or bool(self.meta)


_ROW_HEAD = struct.Struct("<IIBxxxI")  # length, crc, kind, schema id


@dataclass
class _Schema:
    key_ids: list[int]
    types: list[int]
    dtype_cache: dict[int, np.dtype] = field(default_factory=dict)
    _struct: struct.Struct | None = None
    _shape: tuple[int, int] | None = None

    def shape(self) -> tuple[int, int]:
        """(record length, bytes used by the fields) of this schema's ROW records (spec §8.3.3)."""
        if self._shape is None:
            used = 8 + ROW_PREFIX.size + sum(struct.calcsize(VALUE_CODES[ValueType(t)]) for t in self.types)
            self._shape = (align8(used), used)
        return self._shape

    def struct(self) -> struct.Struct:
        if self._struct is None:
            self._struct = struct.Struct(ROW_PREFIX.format + "".join(VALUE_CODES[ValueType(t)] for t in self.types))
        return self._struct

    def dtype(self, length: int) -> np.dtype:
        dt = self.dtype_cache.get(length)
        if dt is None:
            names = ["len", "crc", "kind", "schema", "seq", "step", "time"]
            formats: list[str] = ["<u4", "<u4", "u1", "<u4", "<i8", "<i8", "<f8"]
            offsets = [0, 4, 8, 12, 16, 24, 32]
            off = 40
            for i, t in enumerate(self.types):
                names.append(f"v{i}")
                formats.append(_NP_CODES[ValueType(t)])
                offsets.append(off)
                off += struct.calcsize(VALUE_CODES[ValueType(t)])
            dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": length})
            self.dtype_cache[length] = dt
        return dt


class Decoder:
    """Decodes the records of one incarnation's segments, in segment order.

    Keeps the key and schema tables across segments. ``verify`` checks each
    record's crc32 (recovery after a crash); a live in-process flusher skips it.
    """

    def __init__(self, verify: bool = True, time_floor: float = float("-inf")) -> None:
        self.verify = verify
        # Times are made non-decreasing in seq order within a stream (spec §4.3).
        self.time_floor = time_floor
        self.keys: dict[int, str] = {}
        self.schemas: dict[int, _Schema] = {}
        self.unknown_schemas: set[int] = set()

    def state(self) -> tuple[dict[int, str], dict[int, _Schema], set[int], float]:
        """The tables and time floor, to decode a segment again from the same start (tail.py)."""
        return dict(self.keys), dict(self.schemas), set(self.unknown_schemas), self.time_floor

    def restore(self, state: tuple[dict[int, str], dict[int, _Schema], set[int], float]) -> None:
        keys, schemas, unknown, floor = state
        self.keys, self.schemas, self.unknown_schemas, self.time_floor = dict(keys), dict(schemas), set(unknown), floor

    def decode(self, data: bytes | memoryview, start: int, end: int, out: Columns, path: Any = None,
               resync_at: set[int] | None = None) -> int:
        """Decode whole records in ``data[start:end]`` into ``out``; return the end offset.

        Stops at the first zero length (end of written data) or at a record that runs
        past ``end``. When verifying, a record that fails its framing or CRC while
        well-formed records follow is damage: it is recorded in ``out.losses`` and
        decoding resumes after it (spec §8.5, since 1.3). ``resync_at``, if given,
        limits that to damage at these offsets (a confirming second read); elsewhere
        decoding stops as before 1.3.
        """
        mv = memoryview(data)
        pos = start
        acc = _Scalars()
        try:
            while True:
                pos, damaged = self._decode(mv, pos, end, out, acc, path)
                if not self.verify or pos + 8 > end or (resync_at is not None and pos not in resync_at):
                    return pos
                acc.flush(out)  # out.max_seq is the last seq decoded before the damage
                found = find_resync(mv, pos, end, out.max_seq, self._shape, self.keys)
                if found is None:
                    if damaged:
                        out.losses.append(Loss(str(path), pos, out.max_seq, None))
                    return pos
                q, next_seq = found
                out.losses.append(Loss(str(path), pos, out.max_seq, next_seq))
                pos = q
        finally:
            acc.flush(out)

    def _shape(self, schema_id: int) -> tuple[int, int] | None:
        schema = self.schemas.get(schema_id)
        if schema is not None:
            return schema.shape()
        return (0, 0) if schema_id in self.unknown_schemas else None

    def _decode(self, mv: memoryview, pos: int, end: int, out: Columns, acc: _Scalars,
                path: Any) -> tuple[int, bool]:
        """Decode from ``pos``; return where it stopped and whether a record there is damaged."""
        while pos + 8 <= end:
            length, crc = HEADER.unpack_from(mv, pos)
            if length == 0:
                return pos, False
            if length < 16 or length % 8 or pos + length > end:
                if self.verify:
                    return pos, True  # damaged framing (a kill leaves no torn record, §8.2)
                raise CorruptFileError(f"bad WAL record length {length} at offset {pos}", path)
            kind = mv[pos + 8]
            if kind == Kind.ROW:
                schema_id = _U32.unpack_from(mv, pos + 12)[0]
                n = self._row_run(mv, pos, end, length, schema_id, out, acc, path)
                if n == 0:
                    return pos, True
                pos += n * length
                continue
            # Kinds other than ROW always carry their CRC, which may itself be 0 (since 1.3).
            if self.verify and zlib.crc32(mv[pos + 8 : pos + length]) != crc:
                return pos, True
            if kind == Kind.KEYDEF:
                _, key_id, n = KEYDEF.unpack_from(mv, pos + 8)
                s = pos + 8 + KEYDEF.size
                self.keys[key_id] = bytes(mv[s : s + n]).decode("utf-8")
            elif kind == Kind.SCHEMA:
                _, schema_id, n = SCHEMA_PREFIX.unpack_from(mv, pos + 8)
                s = pos + 8 + SCHEMA_PREFIX.size
                items = [SCHEMA_ITEM.unpack_from(mv, s + i * SCHEMA_ITEM.size) for i in range(n)]
                if all(t in _NP_CODES for _, t in items):
                    self.schemas[schema_id] = _Schema([k for k, _ in items], [t for _, t in items])
                else:  # a type code of a newer minor version: its ROW records are skipped
                    self.schemas.pop(schema_id, None)
                    self.unknown_schemas.add(schema_id)
            elif kind == Kind.GENERIC:
                self._generic(mv, pos, out, acc, path)
            elif kind == Kind.META:
                _, op, seq, t, n = META_PREFIX.unpack_from(mv, pos + 8)
                s = pos + 8 + META_PREFIX.size
                out.meta.append(MetaRecord(seq, t, op, json.loads(bytes(mv[s : s + n]))))
                out.max_seq = max(out.max_seq, seq)
            # unknown kinds: skipped by length (spec §8.3)
            pos += length
        return pos, False

    def _row_run(
        self, mv: memoryview, pos: int, end: int, length: int, schema_id: int, out: Columns, acc: _Scalars, path: Any
    ) -> int:
        """Decode the longest run of ROW records of one schema and length at ``pos``."""
        schema = self.schemas.get(schema_id)
        if schema is None:
            if schema_id in self.unknown_schemas:
                return 1  # skipped by length (spec §1.2)
            if self.verify:
                return 0
            raise CorruptFileError(f"ROW record uses undefined schema {schema_id}", path)
        if self.verify and length != schema.shape()[0]:
            return 0  # not the length its schema gives (since 1.3: damage, §8.5)
        nxt = pos + length
        if nxt + 16 > end or _ROW_HEAD.unpack_from(mv, nxt)[::3] != (length, schema_id):
            return self._row_one(mv, pos, length, schema, out, acc, path)
        count = (end - pos) // length
        arr = np.frombuffer(mv, dtype=schema.dtype(length), count=count, offset=pos)
        bad = (arr["len"] != length) | (arr["kind"] != Kind.ROW) | (arr["schema"] != schema_id)
        if bad.any():
            count = int(bad.argmax())
            arr = arr[:count]
        if self.verify:
            crcs = arr["crc"]
            for i in np.nonzero(crcs)[0].tolist():
                s = pos + i * length
                if zlib.crc32(mv[s + 8 : s + length]) != int(crcs[i]):
                    count = i
                    arr = arr[:count]
                    break
        if count == 0:
            return 0
        steps = np.array(arr["step"], dtype=np.int64)
        times = np.maximum.accumulate(np.maximum(np.array(arr["time"], dtype=np.float64), self.time_floor))
        self.time_floor = float(times[-1])
        seqs = np.array(arr["seq"], dtype=np.int64)
        for i, (key_id, vtype) in enumerate(zip(schema.key_ids, schema.types)):
            values = np.array(arr[f"v{i}"])
            if vtype == ValueType.BOOL:
                values = values.astype(bool)
            out.add(self._key(key_id, pos, path), vtype, steps, times, seqs, values)
        out.max_seq = max(out.max_seq, int(seqs[-1]))
        del arr
        return count

    def _row_one(
        self, mv: memoryview, pos: int, length: int, schema: _Schema, out: Columns, acc: _Scalars, path: Any
    ) -> int:
        """A lone ROW record (schemas alternate): decoded with struct, not numpy."""
        st = schema.struct()
        _k, _s, seq, step, t, *values = st.unpack_from(mv, pos + 8)
        if self.verify:
            crc = HEADER.unpack_from(mv, pos)[1]
            if crc and zlib.crc32(mv[pos + 8 : pos + length]) != crc:
                return 0
        t = self.time_floor = max(t, self.time_floor)
        for key_id, vtype, v in zip(schema.key_ids, schema.types, values):
            acc.add(self._key(key_id, pos, path), vtype, step, t, seq, v)
        out.max_seq = max(out.max_seq, seq)
        return 1

    def _key(self, key_id: int, pos: int, path: Any) -> str:
        """The name of ``key_id``; a record naming an id no KEYDEF defined is corrupt (spec §1.3, §8.3.6)."""
        try:
            return self.keys[key_id]
        except KeyError:
            raise CorruptFileError(
                f"WAL record at offset {pos} uses key id {key_id}, which no KEYDEF record of this incarnation "
                "defines (spec §8.3.6)", path) from None

    def _generic(self, mv: memoryview, pos: int, out: Columns, acc: _Scalars, path: Any) -> None:
        _, n, seq, step, t = GENERIC_PREFIX.unpack_from(mv, pos + 8)
        p = pos + 8 + GENERIC_PREFIX.size
        items: list[tuple[str, int, Any]] = []
        for _ in range(n):
            key_id, vtype = _GEN_ITEM.unpack_from(mv, p)
            p += _GEN_ITEM.size
            value: Any
            if vtype == ValueType.FLOAT:
                value = _F64.unpack_from(mv, p)[0]
                p += 8
            elif vtype == ValueType.INT:
                value = _I64.unpack_from(mv, p)[0]
                p += 8
            elif vtype == ValueType.BOOL:
                value = bool(mv[p])
                p += 1
            elif vtype == ValueType.STRING or vtype == ValueType.MEDIA:
                ln = _U32.unpack_from(mv, p)[0]
                value = bytes(mv[p + 4 : p + 4 + ln]).decode("utf-8")
                p += 4 + ln
            elif vtype == ValueType.NULL:
                value = None
            else:
                # a type code of a newer minor version: skip the record (spec §1.2); a skipped
                # record is not read, so like a ROW of a skipped schema it does not move the time floor (§4.3)
                return
            items.append((self._key(key_id, pos, path), vtype, value))
        t = self.time_floor = max(t, self.time_floor)
        for key, vtype, value in items:
            acc.add(key, vtype, step, t, seq, value)
        out.max_seq = max(out.max_seq, seq)


class _Scalars:
    """Rows decoded one at a time, gathered per (key, type) into one chunk each."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], tuple[list[int], list[float], list[int], list[Any]]] = {}

    def add(self, key: str, vtype: int, step: int, t: float, seq: int, value: Any) -> None:
        lists = self.rows.get((key, vtype))
        if lists is None:
            lists = self.rows[(key, vtype)] = ([], [], [], [])
        lists[0].append(step)
        lists[1].append(t)
        lists[2].append(seq)
        lists[3].append(value)

    def flush(self, out: Columns) -> None:
        for (key, vtype), (steps, times, seqs, values) in self.rows.items():
            vals: Any
            if vtype == ValueType.FLOAT:
                vals = np.array(values, dtype=np.float64)
            elif vtype == ValueType.INT:
                vals = np.array(values, dtype=np.int64)
            elif vtype == ValueType.BOOL:
                vals = np.array(values, dtype=bool)
            elif vtype == ValueType.STRING or vtype == ValueType.MEDIA:
                vals = values
            else:
                vals = None
            out.add(key, vtype, np.array(steps, dtype=np.int64), np.array(times, dtype=np.float64),
                    np.array(seqs, dtype=np.int64), vals)
        self.rows.clear()


def encode_generic_items(items: list[tuple[int, int, Any]]) -> bytes:
    """Encode (key id, type, value) items of a GENERIC record body."""
    parts: list[bytes] = []
    for key_id, vtype, value in items:
        parts.append(_GEN_ITEM.pack(key_id, vtype))
        if vtype == ValueType.FLOAT:
            parts.append(_F64.pack(value))
        elif vtype == ValueType.INT:
            parts.append(_I64.pack(value))
        elif vtype == ValueType.BOOL:
            parts.append(b"\x01" if value else b"\x00")
        elif vtype == ValueType.STRING or vtype == ValueType.MEDIA:
            raw = value.encode("utf-8")
            parts.append(_U32.pack(len(raw)) + raw)
    return b"".join(parts)


def encode_meta_payload(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
