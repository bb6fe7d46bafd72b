"""Whether a part's pages carry CRC-32 checksums (spec §4.2, since 1.3).

pyarrow verifies a page's checksum when asked (``page_checksum_verification``) and
silently passes pages without one, so a checker cannot tell "verified" from "nothing
to verify" by reading. This module looks at the first page header of every column
chunk instead: a Parquet ``PageHeader`` is a Thrift compact-protocol struct whose
optional field 4 is the page's ``crc`` (i32), after fields 1–3 (type, sizes).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

__all__ = ["has_page_checksums"]

_I32 = 5  # Thrift compact type id of i32
_CRC_FIELD = 4


def has_page_checksums(path: Path | str) -> bool:
    """True if every column chunk of the part begins with a page that carries a CRC.

    Raises OSError / pyarrow errors for an unreadable footer; the caller decides what
    that means (read_part turns it into CorruptFileError).
    """
    md = pq.ParquetFile(path).metadata
    offsets: list[int] = []
    for r in range(md.num_row_groups):
        rg = md.row_group(r)
        for c in range(rg.num_columns):
            col = rg.column(c)
            off = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            if off is not None:
                offsets.append(int(off))
    if not offsets:
        return False
    with open(path, "rb") as f:
        for off in offsets:
            f.seek(off)
            if not _header_has_crc(f.read(64)):
                return False
    return True


def _header_has_crc(buf: bytes) -> bool:
    """Scan the leading i32 fields of a compact-protocol PageHeader for field 4."""
    pos, field = 0, 0
    while pos < len(buf):
        head = buf[pos]
        pos += 1
        delta, ctype = head >> 4, head & 0x0F
        if head == 0 or delta == 0 or ctype != _I32:
            return False  # stop byte, long-form field id, or a non-i32 field: past the sizes
        field += delta
        if field == _CRC_FIELD:
            return True
        if field > _CRC_FIELD:
            return False
        while pos < len(buf) and buf[pos] & 0x80:  # skip the zigzag varint value
            pos += 1
        pos += 1
    return False
