"""The framing of W&B's ``.wandb`` transaction log, decoded (issue 17).

The file is LevelDB's published log format with W&B's own 7-byte file header:
``":W&B"``, the magic ``0xBEE1`` (uint16, little-endian) and version 0. After
it, 32 KiB blocks (the header counts in block 0) of chunks, each with a 7-byte
header — CRC-32 (zlib's, of the type byte then the data; uint32 LE), data
length (uint16 LE), type (1 full, 2 first, 3 middle, 4 last) — a record being
one full chunk or a first, middles and a last. Fewer than 7 bytes left in a
block are padding. Each record is a ``wandb.proto.wandb_internal_pb2.Record``;
this module only frames bytes, the caller parses them with W&B's classes.

W&B's package has a Go reader (``wandb leet inspect``) but no Python one; this
one reports instead of stopping: a chunk failing its CRC costs the rest of its
block (LevelDB's resynchronisation point), and every loss is described.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

__all__ = ["BLOCK", "HEADER", "read_records"]

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
_CHUNK = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _crc(kind: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF


def read_records(data: bytes, name: str, problems: list[str]) -> Iterator[bytes]:
    """Every intact record of a ``.wandb`` file's bytes; what cannot be read is appended to ``problems``."""
    if data[:4] != HEADER[:4] or len(data) < len(HEADER):
        problems.append(f"{name}: not a W&B transaction log (no ':W&B' header)")
        return
    if data[4:7] != HEADER[4:7]:
        problems.append(f"{name}: W&B log header version {data[4:7].hex()} not known; reading it as version 0")
    pos, pending, n = len(HEADER), None, 0
    size = len(data)
    while pos < size:
        left = BLOCK - pos % BLOCK
        if left < _CHUNK.size:
            pos += left
            continue
        if pos + _CHUNK.size > size:
            problems.append(f"{name}: cut short after record {n} (a partial chunk header at byte {pos})")
            break
        crc, length, kind = _CHUNK.unpack_from(data, pos)
        if crc == 0 and length == 0 and kind == 0:
            pos += left  # zeroed tail of a preallocated block
            continue
        if pos + _CHUNK.size + length > size:
            problems.append(f"{name}: cut short after record {n} (the last {size - pos} bytes are a partial record)")
            pending = None
            break
        chunk = data[pos + _CHUNK.size:pos + _CHUNK.size + length]
        if length > left - _CHUNK.size or kind not in (_FULL, _FIRST, _MIDDLE, _LAST) or _crc(kind, chunk) != crc:
            problems.append(f"{name}: damaged chunk at byte {pos} after record {n}; skipped the rest of its "
                            f"32 KiB block ({left} bytes)")
            pending = None
            pos += left
            continue
        pos += _CHUNK.size + length
        if kind == _FULL:
            pending = None
            n += 1
            yield chunk
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif pending is None:
            continue  # the tail of a record whose start was lost (already reported)
        elif kind == _MIDDLE:
            pending += chunk
        else:
            n += 1
            yield bytes(pending + chunk)
            pending = None
    if pending is not None:
        problems.append(f"{name}: cut short inside record {n + 1}")
