"""Reading the WAL tail of an incarnation: what it logged beyond its parts (spec §8.5).

Used read-only by readers (a live or crashed writer's newest rows) and by the
writer's recovery, which turns a dead incarnation's tail into a part.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from .errors import CorruptFileError
from .history import list_parts, part_stats
from .layout import StreamLayout
from .liveness import same_boot as ran_in_this_boot
from .meta import Claim, load_doc
from .wal import SEGMENT_HEADER_SIZE, Columns, Decoder, decode_segment_header

__all__ = ["read_tail", "filter_seq", "tail_time_floor", "stream_tails"]

_RESCANS = 5


def filter_seq(cols: Columns, above: int) -> Columns:
    """Rows and META records of ``cols`` whose seq is greater than ``above``."""
    out = Columns()
    for key, chunks in cols.chunks.items():
        for vtype, steps, times, seqs, values in chunks:
            if len(seqs) and seqs[0] > above:
                out.add(key, vtype, steps, times, seqs, values)
                continue
            mask = seqs > above
            if not mask.any():
                continue
            idx = np.nonzero(mask)[0]
            vals = None if values is None else (values[idx] if isinstance(values, np.ndarray) else [values[i] for i in idx])
            out.add(key, vtype, steps[idx], times[idx], seqs[idx], vals)
    out.meta = [m for m in cols.meta if m.seq > above]
    out.max_seq = cols.max_seq if out else -1
    return out


def _read_segment(path: Path) -> bytes:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m:
            return bytes(m)


def read_tail(
    stream: StreamLayout, incarnation: int, above: int, time_floor: float = float("-inf"), same_boot: bool = True
) -> Columns:
    """Decode every record of ``incarnation`` with seq > ``above`` from its segments.

    Each segment is decoded with checksums verified and up to its first torn or
    unwritten record. If the machine rebooted since the writer ran
    (``same_boot=False``), only the part below each segment's ``synced_off`` is
    trusted (spec §8.5). Segments that vanish meanwhile (released by their
    writer after their rows reached a part) are skipped.
    """
    decoder = Decoder(verify=True, time_floor=time_floor)
    cols = Columns()
    for inc, _segno, path in stream.segments():
        if inc != incarnation:
            continue
        try:
            data = _read_segment(path)
        except FileNotFoundError:
            continue
        header = decode_segment_header(data, path)
        if header is None:
            continue  # creation interrupted or in progress: no records
        got_inc, _, synced = header
        if got_inc != incarnation:
            raise CorruptFileError(f"segment claims incarnation {got_inc}", path)
        end = len(data) if same_boot else min(len(data), synced)
        decoder.decode(data, SEGMENT_HEADER_SIZE, end, cols, path)
    return filter_seq(cols, above)


def tail_time_floor(parts_dir: Path, stream: str, claim_floor: float) -> float:
    """The time floor a tail of ``stream`` is decoded from (spec §4.3, §8.5).

    The greater of the claim's ``time_floor`` and the greatest time in the stream's
    parts. The writer's own floor also counted rows of segments it has since released
    into parts; those rows are in the parts, so their greatest time restores it, and a
    tail read live equals what the writer later stores.
    """
    for _ in range(_RESCANS):
        floor = claim_floor
        try:
            for p in list_parts(parts_dir):
                if p.stream == stream:
                    floor = max(floor, part_stats(p.path).max_time)
            return floor
        except FileNotFoundError:
            continue  # merged away while listed: list again, the merged part holds its rows
    return floor


def stream_tails(parts_dir: Path, stream: StreamLayout, above: int) -> list[tuple[int, Columns]]:
    """Every incarnation's tail of ``stream`` with seq > ``above``, oldest first (spec §8.5).

    Read-only; only streams that still have segments pay for the floor's part scan.
    """
    incs = sorted({inc for inc, _n, _p in stream.segments()})
    if not incs:
        return []
    out: list[tuple[int, Columns]] = []
    floor: float | None = None
    for inc in incs:
        try:
            c = load_doc(Claim, stream.claim(inc))
        except FileNotFoundError:
            continue
        if floor is None:
            floor = tail_time_floor(parts_dir, stream.name, float("-inf"))
        tail = read_tail(stream, inc, above, max(c.time_floor, floor), same_boot=ran_in_this_boot(c.host, c.boot_id))
        out.append((inc, tail))
    return out
