"""Claiming a stream (spec §6) and recovering what dead incarnations left (spec §8.5).

A stream is claimed by exclusively creating ``claim.<inc>.json`` for the next
incarnation number. Whoever creates it owns the stream; there is no lock file
to break and no flock (unreliable on NFS/Lustre/GPFS). Before claiming, the
claimer checks that the latest incarnation is not alive (same host: its pid;
other hosts: its heartbeat).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

from ..format.errors import StreamClaimedError
from ..format.history import columns_to_table, list_parts, part_stats, remove_parts, select_cover, write_part
from ..format.layout import HISTORY_DIR, RunLayout, StreamLayout
from ..format.liveness import host_identity, stream_state
from ..format.media import MEDIA_DIR
from ..format.meta import Claim, ConfigDoc, State, SummaryDoc, load_doc, publish_doc, save_doc
from ..format.tail import read_tail
from ..format.wal import Columns
from ..format.walcheck import Loss

__all__ = ["StreamHistory", "claim_stream", "recover", "scan_stream"]


@dataclass
class StreamHistory:
    """What a stream already holds: maxima, and the unflushed tails of dead incarnations."""

    max_seq: int = -1
    max_step: int = -1
    max_time: float = float("-inf")
    tails: list[tuple[int, Columns]] = field(default_factory=list)
    incarnations: list[int] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)  # damaged WAL records skipped (spec §8.5)


def scan_stream(run: RunLayout, stream: StreamLayout) -> StreamHistory:
    h = StreamHistory(incarnations=stream.incarnations())
    for p in list_parts(run.history):
        if p.stream != stream.name:
            continue
        st = part_stats(p.path)
        h.max_seq = max(h.max_seq, st.max_seq, p.hi)
        h.max_step = max(h.max_step, st.max_step)
        h.max_time = max(h.max_time, st.max_time)
    # Rows are covered by parts only. The documents are written before the part
    # they go with, so their applied_seq may be ahead of the parts: it decides
    # which META records to re-apply (SummaryDoc/ConfigDoc.apply), never which
    # rows are already stored (spec §8.5).
    covered = h.max_seq
    for doc_cls, path in ((SummaryDoc, stream.summary), (ConfigDoc, stream.config)):
        try:
            h.max_seq = max(h.max_seq, load_doc(doc_cls, path).applied_seq)
        except FileNotFoundError:
            pass
    for inc in h.incarnations:
        c = load_doc(Claim, stream.claim(inc))
        # Damaged records are reported by the new owner (open_pipeline), never raised or warned here.
        tail = read_tail(stream, inc, covered, c.time_floor, same_boot=c.boot_id == host_identity()[1], warn=False)
        h.losses.extend(tail.losses)
        if tail:
            h.tails.append((inc, tail))
            h.max_seq = max(h.max_seq, tail.max_seq)
            for chunks in tail.chunks.values():
                for _t, steps, times, _s, _v in chunks:
                    h.max_step = max(h.max_step, int(steps.max()))
                    h.max_time = max(h.max_time, float(times.max()))
    return h


def claim_stream(
    run: RunLayout, stream: StreamLayout, run_id: str, resume: bool, heartbeat_interval: float
) -> tuple[Claim, StreamHistory]:
    """Become the writer of ``stream``; raise StreamClaimedError if someone alive is."""
    os.makedirs(stream.dir, exist_ok=True)
    me = psutil.Process()
    host, boot = host_identity()
    for _ in range(10):
        state = stream_state(stream)
        if state is not None:
            if state.state == State.RUNNING:
                c = state.claim
                raise StreamClaimedError(
                    f"stream {stream.name!r} of run {run_id} is being written by pid {c.pid} on host {c.host} "
                    f"(incarnation {state.incarnation}); a second writer would corrupt nothing but is refused. "
                    "Write to another stream (init(stream=...) or RUNSYNC_STREAM, e.g. one per rank), or wait "
                    "until that process ends"
                )
            if not resume:
                raise StreamClaimedError(
                    f"run {run_id} already has data in stream {stream.name!r}; pass resume=True to append to it, "
                    "or use a different stream or run id"
                )
        # The incarnation number comes from the same listing whose latest claim was
        # just found dead (or absent). Taking it from a later listing would let a
        # claim published in between be skipped over without its liveness checked.
        inc = state.incarnation + 1 if state is not None else 0
        history = scan_stream(run, stream)
        if history.incarnations and history.incarnations[-1] >= inc:
            continue  # someone claimed meanwhile: check that claimer's liveness
        claim = Claim(
            stream=stream.name,
            incarnation=inc,
            host=host,
            boot_id=boot,
            pid=me.pid,
            pid_start=me.create_time(),
            time=time.time(),
            first_seq=history.max_seq + 1,
            heartbeat_interval=heartbeat_interval,
            time_floor=history.max_time,
        )
        if publish_doc(claim, stream.claim(inc)):
            return claim, history
    raise StreamClaimedError(f"could not claim stream {stream.name!r} of run {run_id}: too much contention")


def recover(run: RunLayout, stream: StreamLayout, history: StreamHistory, summary: SummaryDoc, config: ConfigDoc) -> None:
    """Turn dead incarnations' WAL tails into parts and documents, then drop their segments.

    Called by the stream's new owner right after claiming it, so nobody else
    writes these files concurrently.
    """
    os.makedirs(run.history, exist_ok=True)
    # A writer that died between a merged part's rename and the unlinks of its
    # sources left parts contained in another; stock readers would see them twice.
    part_dirs = [run.history] + ([run.dir / MEDIA_DIR] if run.table == HISTORY_DIR else [])
    for d in part_dirs:
        mine = [p for p in list_parts(d) if p.stream == stream.name]
        keep = set(select_cover(mine))
        remove_parts(p.path for p in mine if p not in keep)
    for _inc, tail in history.tails:
        summary.apply(tail)
        config.apply(tail.meta)
        lo = min([int(c[3][0]) for chunks in tail.chunks.values() for c in chunks] + [m.seq for m in tail.meta])
        save_doc(summary, stream.summary)
        save_doc(config, stream.config)
        if tail.rows:
            write_part(run.history, stream.name, lo, tail.max_seq, columns_to_table(tail, stream.name))
    for inc, _segno, path in stream.segments():
        if inc in history.incarnations:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
