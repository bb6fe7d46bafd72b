"""Well-formed WAL records and resynchronisation after a damaged one (spec §8.5, since 1.3).

A record that fails its framing or CRC while intact records follow it in the segment
is bit rot, not the end of the log (a kill never leaves a torn record, §8.2 I2). The
reader then looks for the next record from which every record up to the end of the
written data is *well-formed* — a strict check, so that bytes that merely look like a
record are never decoded as rows:

- ``length`` ≥ 16, a multiple of 8, within the readable end;
- a known kind (1–5) and zero bytes 9–11;
- kinds other than ROW: ``crc`` equals the CRC-32 of the body (those always carry one);
- ROW: a non-zero ``crc`` matches; the schema is defined (or skipped for an unknown type
  code, §8.3.2); ``length`` is the schema's exact length and the padding is zero;
- SCHEMA and GENERIC items name defined keys and known type codes and fit the record;
- seqs strictly increase along the chain, starting above the last seq decoded.

A chain ends at a zero ``length`` or at the end; it is accepted when it reaches that end,
or earlier at its first record whose non-zero CRC matched (decoding resumes there and a
later damage is resynchronised again).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .records import Kind

__all__ = ["Loss", "describe_losses", "find_resync"]

_HEADER = struct.Struct("<II")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_GEN_ITEM = struct.Struct("<IB")
_KINDS = (Kind.KEYDEF, Kind.SCHEMA, Kind.ROW, Kind.GENERIC, Kind.META)
_FIXED = {1: 8, 2: 8, 3: 1}  # FLOAT, INT, BOOL value sizes
_MAX_CHAIN = 1 << 16  # records walked per candidate before accepting a CRC-less chain as long enough


@dataclass(frozen=True)
class Loss:
    """Records of one segment that could not be read (spec §8.5)."""

    path: str
    offset: int  # of the first damaged record
    after_seq: int  # greatest seq decoded before it (-1: none)
    next_seq: int | None  # first seq decoded after resynchronising; None: nothing after it was readable

    def describe(self) -> str:
        first = self.after_seq + 1
        if self.next_seq is None:
            lost = f"every record after seq {self.after_seq}" if self.after_seq >= 0 else "every record"
            return f"{self.path}: damaged WAL record at offset {self.offset}: {lost} in this segment is lost"
        last = self.next_seq - 1
        rng = f"seq {first}" if first == last else f"seqs {first}–{last}"
        return (f"{self.path}: damaged WAL record at offset {self.offset}: {rng} lost; "
                f"reading resumed at seq {self.next_seq}")


# A schema id → (record length, bytes its fields use) of its ROW records; (0, 0) for a schema
# skipped for an unknown type code (§8.3.2); None if undefined.
def describe_losses(losses: list[Loss]) -> list[str]:
    """One sentence per damaged segment: the segment, the seqs lost, and that the rest was read."""
    by_path: dict[str, list[Loss]] = {}
    for loss in losses:
        by_path.setdefault(loss.path, []).append(loss)
    out = []
    for path, group in by_path.items():
        if len(group) == 1:
            out.append(group[0].describe())
            continue
        spans = []
        for loss in group:
            lo, hi = loss.after_seq + 1, (None if loss.next_seq is None else loss.next_seq - 1)
            spans.append(f"{lo}–end" if hi is None else (str(lo) if lo == hi else f"{lo}–{hi}"))
        shown = ", ".join(spans[:4]) + (f", … ({len(spans)} ranges)" if len(spans) > 4 else "")
        out.append(f"{path}: {len(group)} damaged WAL records (the first at offset {group[0].offset}): "
                   f"seqs {shown} lost; the other records were read")
    return out


SchemaLen = Callable[[int], "tuple[int, int] | None"]


def _record(mv: memoryview, q: int, end: int, schema_len: SchemaLen, keys: dict[int, str]) -> tuple[int, int, bool] | None:
    """(length, seq or -1, crc verified) of a well-formed record at ``q``, else None."""
    if q + 16 > end:
        return None
    length, crc = _HEADER.unpack_from(mv, q)
    if length < 16 or length % 8 or q + length > end:
        return None
    kind = mv[q + 8]
    if kind not in _KINDS or mv[q + 9] or mv[q + 10] or mv[q + 11]:
        return None
    verified = False
    if crc or kind != Kind.ROW:
        if zlib.crc32(mv[q + 8 : q + length]) != crc:
            return None
        verified = crc != 0
    if kind == Kind.KEYDEF:
        n = _U16.unpack_from(mv, q + 16)[0]
        return (length, -1, verified) if 18 + n <= length else None
    if kind == Kind.SCHEMA:
        n = _U16.unpack_from(mv, q + 16)[0]
        return (length, -1, verified) if 18 + 5 * n <= length else None
    if length < 40:
        return None
    seq = _I64.unpack_from(mv, q + 16)[0]
    if kind == Kind.ROW:
        shape = schema_len(_U32.unpack_from(mv, q + 12)[0])
        if shape is None or (shape[0] and length != shape[0]):
            return None
        if not verified and shape[0] and any(mv[q + shape[1] : q + length]):
            return None  # no CRC: the padding after the values must at least be zero
    elif kind == Kind.GENERIC and not _generic_items_ok(mv, q, length, keys):
        return None
    return length, seq, verified


def _generic_items_ok(mv: memoryview, q: int, length: int, keys: dict[int, str]) -> bool:
    n = _U32.unpack_from(mv, q + 12)[0]
    p, stop = q + 40, q + length
    for _ in range(n):
        if p + 5 > stop:
            return False
        key_id, vtype = _GEN_ITEM.unpack_from(mv, p)
        p += 5
        if key_id not in keys:
            return False
        if vtype in _FIXED:
            p += _FIXED[vtype]
        elif vtype in (4, 5):  # STRING, MEDIA
            if p + 4 > stop:
                return False
            p += 4 + _U32.unpack_from(mv, p)[0]
        elif vtype != 0:
            return True  # a type code of a newer minor: the CRC vouched for the record
        if p > stop:
            return False
    return not any(mv[p:stop])


def find_resync(mv: memoryview, pos: int, end: int, last_seq: int, schema_len: SchemaLen,
                keys: dict[int, str]) -> tuple[int, int | None] | None:
    """(offset, its first seq) after ``pos`` from which decoding can safely resume, or None.

    Tries every 8-aligned offset that could start a record (a numpy prefilter), nearest
    first: the damaged record's own length may be the damaged field, so it is not trusted.
    """
    cands: list[int] = []
    start = pos + 8
    if start + 16 > end:
        return None
    nonzero = np.flatnonzero(np.frombuffer(mv, dtype="<u8", count=(end - start) // 8, offset=start))
    if not len(nonzero):
        return None  # only zeros follow: the end of the log (the common case, checked fast)
    # No record starts in the zeros at the end (a record itself may end in zeros: lengths use ``end``).
    n = min((end - start) // 8 - 1, int(nonzero[-1]) + 1)
    if n > 0:
        words = np.frombuffer(mv, dtype="<u4", count=2 * (n + 1), offset=start)
        lens = words[0:-2:2].astype(np.int64)
        crcs = words[1:-1:2]
        second = words[2::2]  # kind byte and bytes 9-11 as one little-endian u32
        offs = start + 8 * np.arange(n, dtype=np.int64)
        kind = second & 0xFF
        ok = (lens >= 16) & (lens % 8 == 0) & (offs + lens <= end) & ((second >> 8) == 0)
        ok &= (kind >= Kind.KEYDEF) & (kind <= Kind.META) & ((crcs != 0) | (kind == Kind.ROW))
        cands.extend(int(o) for o in offs[ok])
    bad: set[int] = set()
    for q in cands:
        if q in bad:
            continue
        first = _chain(mv, q, end, last_seq, schema_len, keys, bad)
        if first is not False:
            return q, first
    return None


def _chain(mv: memoryview, q: int, end: int, last_seq: int, schema_len: SchemaLen, keys: dict[int, str],
           bad: set[int]) -> int | None | bool:
    """The first seq of an acceptable chain at ``q`` (None: it has none), or False (module docstring).

    Marks the records of a failed chain in ``bad``: a chain through them fails the same way.
    """
    visited: list[int] = []
    first: int | None = None
    prev = last_seq
    ok = False
    p = q
    while True:
        if p + 8 > end or _HEADER.unpack_from(mv, p)[0] == 0:
            ok = bool(visited)
            break
        if p in bad or len(visited) >= _MAX_CHAIN:
            ok = len(visited) >= _MAX_CHAIN
            break
        rec = _record(mv, p, end, schema_len, keys)
        if rec is None:
            break
        length, seq, verified = rec
        if seq >= 0:
            if seq <= prev:
                break
            prev = seq
            first = seq if first is None else first
        visited.append(p)
        if verified and seq >= 0:
            ok = True
            break
        p += length
    if not ok:
        bad.update(visited)
        return False
    return first
