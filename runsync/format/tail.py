"""Reading the WAL tail of an incarnation: what it logged beyond its parts (spec §8.5).

Used read-only by readers (a live or crashed writer's newest rows) and by the
writer's recovery, which turns a dead incarnation's tail into a part. An
incarnation's segments are in the stream directory, or where its claim's
``wal_dir`` says (since 1.3): a local disk of the writer's host, readable only
there (``stream_tails``).
"""

from __future__ import annotations

import mmap
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CorruptFileError, DataLossWarning
from .history import list_parts, part_stats
from .layout import StreamLayout
from .liveness import host_identity
from .liveness import same_boot as ran_in_this_boot
from .meta import Claim, load_doc
from .wal import SEGMENT_HEADER_SIZE, Columns, Decoder, decode_segment_header
from .walcheck import describe_losses

__all__ = ["read_tail", "filter_seq", "tail_time_floor", "stream_tails", "StreamTails", "wal_location",
           "warn_losses"]

_RESCANS = 5


def filter_seq(cols: Columns, above: int, below: int | None = None) -> Columns:
    """Rows and META records of ``cols`` whose seq is greater than ``above`` (and less than ``below``)."""
    out = Columns()
    for key, chunks in cols.chunks.items():
        for vtype, steps, times, seqs, values in chunks:
            if len(seqs) and seqs[0] > above and (below is None or seqs[-1] < below):
                out.add(key, vtype, steps, times, seqs, values)
                continue
            mask = seqs > above
            if below is not None:
                mask &= seqs < below
            if not mask.any():
                continue
            idx = np.nonzero(mask)[0]
            vals = None if values is None else (values[idx] if isinstance(values, np.ndarray) else [values[i] for i in idx])
            out.add(key, vtype, steps[idx], times[idx], seqs[idx], vals)
    out.meta = [m for m in cols.meta if m.seq > above and (below is None or m.seq < below)]
    out.losses = list(cols.losses)
    if below is None:
        out.max_seq = cols.max_seq if out else -1
    else:
        seqs = [int(c[3][-1]) for chunks in out.chunks.values() for c in chunks if len(c[3])]
        out.max_seq = max(seqs + [m.seq for m in out.meta], default=-1)
    return out


def _read_segment(path: Path) -> bytes:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        try:
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m:
                return bytes(m)
        except OSError:  # a filesystem that cannot map files (FUSE direct_io: ENODEV), spec §8.2.1
            return f.read(size)


def read_tail(
    stream: StreamLayout, incarnation: int, above: int, time_floor: float = float("-inf"), same_boot: bool = True,
    below: int | None = None, warn: bool = True,
) -> Columns:
    """Decode every record of ``incarnation`` with seq > ``above`` from its segments.

    Each segment is decoded with checksums verified up to its end of written
    records. If the machine rebooted since the writer ran (``same_boot=False``),
    only the part below each segment's ``synced_off`` is trusted (spec §8.5).
    Segments that vanish meanwhile (released by their writer after their rows
    reached a part) are skipped. With ``below``, records with seq >= below are
    left out: a later incarnation's claim started there without seeing them (§8.5).

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
    return filter_seq(cols, above, below)


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




def wal_location(stream: StreamLayout, claim: Claim, host: str) -> StreamLayout | None:
    """Where ``claim``'s incarnation keeps its segments, or None where this host cannot see them.

    The stream directory unless the claim names a ``wal_dir`` (since 1.3). That
    is a local disk of the claim's host: another host does not read it (the
    same path there is another disk), and a directory that is gone holds nothing.
    """
    if claim.wal_dir is None:
        return stream
    if claim.host != host or not os.path.isdir(claim.wal_dir):
        return None
    return StreamLayout(Path(claim.wal_dir), stream.name)


@dataclass
class StreamTails:
    """The WAL tails of a stream's incarnations, and the incarnations whose WAL this host cannot see."""

    tails: list[tuple[int, Columns]] = field(default_factory=list)
    unseen: list[Claim] = field(default_factory=list)
    claims: dict[int, Claim] = field(default_factory=dict)


def stream_tails(stream: StreamLayout, above: int, incarnations: list[int] | None = None,
                 parts_dir: Path | None = None, warn: bool = True, parts_floor: float | None = None) -> StreamTails:
    """Tails (records with seq > ``above``) of every incarnation of ``stream`` that still has segments.

    Each incarnation's segments are read where its claim puts them
    (``wal_location``); records at or beyond the next incarnation's
    ``first_seq`` are left out, because that claimer did not see them (its
    predecessor's WAL was on another host's disk) and reused their seqs (spec §8.5).
    With ``parts_dir`` (the stream's table directory), each tail's time floor starts
    at the parts' greatest time too (§4.3): only streams with a tail pay that scan.
    A caller that already knows that time passes it as ``parts_floor`` instead.
    """
    out = StreamTails()
    host = host_identity()[0]
    incs = stream.incarnations() if incarnations is None else incarnations
    in_stream = {inc for inc, _n, _p in stream.segments()}
    for inc in incs:
        try:
            out.claims[inc] = load_doc(Claim, stream.claim(inc))
        except FileNotFoundError:
            continue
    ordered = sorted(out.claims)
    for i, inc in enumerate(ordered):
        c = out.claims[inc]
        below = out.claims[ordered[i + 1]].first_seq if i + 1 < len(ordered) else None
        wal = wal_location(stream, c, host)
        if wal is None:
            out.unseen.append(c)
            continue
        if wal is stream and inc not in in_stream:
            continue  # no segments left: everything was covered (spec §8.2 lifetime)
        if parts_dir is not None and parts_floor is None:
            parts_floor = tail_time_floor(parts_dir, stream.name, float("-inf"))
        floor = c.time_floor if parts_floor is None else max(c.time_floor, parts_floor)
        tail = read_tail(wal, inc, above, floor, same_boot=ran_in_this_boot(c.host, c.boot_id), below=below,
                         warn=warn)
        if tail:
            out.tails.append((inc, tail))
    return out
