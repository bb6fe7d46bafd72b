"""Reading the WAL tail of an incarnation: what it logged beyond its parts (spec §8.5).

Used read-only by readers (a live or crashed writer's newest rows) and by the
writer's recovery, which turns a dead incarnation's tail into a part.
"""

from __future__ import annotations

import mmap
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import CorruptFileError, DataLossWarning
from .layout import StreamLayout
from .wal import SEGMENT_HEADER_SIZE, Columns, Decoder, decode_segment_header
from .walcheck import describe_losses

__all__ = ["filter_seq", "read_tail", "warn_losses"]


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
    out.losses = list(cols.losses)
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
    stream: StreamLayout, incarnation: int, above: int, time_floor: float = float("-inf"), same_boot: bool = True,
    warn: bool = True,
) -> Columns:
    """Decode every record of ``incarnation`` with seq > ``above`` from its segments.

    Each segment is decoded with checksums verified up to its end of written
    records. If the machine rebooted since the writer ran (``same_boot=False``),
    only the part below each segment's ``synced_off`` is trusted (spec §8.5).
    Segments that vanish meanwhile (released by their writer after their rows
    reached a part) are skipped.

    A damaged record followed by intact ones is skipped by resynchronising
    (spec §8.5, since 1.3). Damage is confirmed by reading the segment again, so
    that a live writer's record in the making is never mistaken for it. Losses are
    in the result's ``losses`` and, with ``warn``, one ``DataLossWarning`` per
    damaged segment names the segment and the seqs lost.
    """
    decoder = Decoder(verify=True, time_floor=time_floor)
    cols = Columns()
    for inc, _segno, path in stream.segments():
        if inc != incarnation:
            continue
        state = decoder.state()
        seg = _decode_segment(decoder, path, incarnation, same_boot, cols.max_seq, None)
        if seg is None:
            continue
        if seg.losses:  # confirm: a second read must show the same damage at the same offsets
            decoder.restore(state)
            again = _decode_segment(decoder, path, incarnation, same_boot, cols.max_seq,
                                    {loss.offset for loss in seg.losses})
            if again is None:
                continue
            seg = again
        cols.extend(seg)
    if warn:
        warn_losses(cols)
    return filter_seq(cols, above)


def _decode_segment(decoder: Decoder, path: Path, incarnation: int, same_boot: bool, last_seq: int,
                    resync_at: set[int] | None) -> Columns | None:
    try:
        data = _read_segment(path)
    except FileNotFoundError:
        return None
    header = decode_segment_header(data, path)
    if header is None:
        return None  # creation interrupted or in progress: no records
    got_inc, _, synced = header
    if got_inc != incarnation:
        raise CorruptFileError(f"segment claims incarnation {got_inc}", path)
    end = len(data) if same_boot else min(len(data), synced)
    seg = Columns(max_seq=last_seq)
    decoder.decode(data, SEGMENT_HEADER_SIZE, end, seg, path, resync_at)
    return seg


def warn_losses(cols: Columns) -> None:
    """One warning per damaged segment, naming it and the seqs lost (spec §8.5)."""
    for text in describe_losses(cols.losses):
        warnings.warn(f"{text} (bit rot in a WAL segment?)", DataLossWarning, stacklevel=3)
