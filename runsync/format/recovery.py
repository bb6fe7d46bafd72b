"""What recovering a dead writer's tail produces (spec §8.5): parts named ``[lo, hi]`` and documents.

Two parties turn the WAL tails of dead incarnations into parts, and they must
produce the same thing: the stream's next writer (``writer/claim.py``, which
writes them into the run and then deletes the segments) and the pusher and
bundler (``syncer/source.py``, which build them in a temporary directory
outside the run and ship them instead of the segments, spec §12.4). Both go
through :func:`scan_stream` and :func:`recovery_steps`, so the part names
(seq ranges, §4.1), the rows and the documents are the same whoever recovers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from .history import columns_to_table, list_parts, part_stats
from .layout import RunLayout, StreamLayout
from .meta import Claim, ConfigDoc, State, Status, SummaryDoc, load_doc
from .tail import stream_tails
from .wal import Columns
from .walcheck import Loss

__all__ = ["StreamHistory", "TailPart", "scan_stream", "recovery_steps", "crashed_status"]


@dataclass
class StreamHistory:
    """What a stream already holds: maxima over parts, documents and tails, and the dead incarnations' tails."""

    max_seq: int = -1
    max_step: int = -1
    max_time: float = float("-inf")
    tails: list[tuple[int, Columns]] = field(default_factory=list)
    incarnations: list[int] = field(default_factory=list)
    claims: dict[int, Claim] = field(default_factory=dict)
    # The latest incarnation crashed with its WAL on another host's disk (spec §8.5): lost from here.
    lost_wal: Claim | None = None
    losses: list[Loss] = field(default_factory=list)  # damaged WAL records skipped (spec §8.5)


@dataclass(frozen=True)
class TailPart:
    """The part recovery writes for one incarnation's tail: rows with ``lo ≤ seq ≤ hi`` (spec §8.5 step 2)."""

    lo: int
    hi: int
    table: pa.Table


def scan_stream(run: RunLayout, stream: StreamLayout) -> StreamHistory:
    """Maxima of ``stream`` (parts of ``run``'s table, documents, tails) and the tail of every incarnation.

    Read-only. Only meaningful as "tails of dead incarnations" when no
    incarnation of the stream is alive (spec §7.3); a live writer's tail is
    still being written.
    """
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
    for applied in (_applied_seq(SummaryDoc, stream.summary), _applied_seq(ConfigDoc, stream.config)):
        h.max_seq = max(h.max_seq, applied)
    # each tail where its claim keeps it (a local wal_dir, §6.1), its floor from the parts too (§4.3)
    # damaged records are reported by the new owner (open_pipeline) or the pusher, never warned here
    found = stream_tails(stream, covered, h.incarnations, warn=False, parts_floor=h.max_time)  # parts read above
    h.claims = found.claims
    for inc, tail in found.tails:
        h.losses.extend(tail.losses)
        if tail:
            h.tails.append((inc, tail))
            h.max_seq = max(h.max_seq, tail.max_seq)
            for chunks in tail.chunks.values():
                for _t, steps, times, _s, _v in chunks:
                    h.max_step = max(h.max_step, int(steps.max()))
                    h.max_time = max(h.max_time, float(times.max()))
    return h


_Doc = TypeVar("_Doc", SummaryDoc, ConfigDoc)


def _applied_seq(cls: type[_Doc], path: Path) -> int:
    try:
        return load_doc(cls, path).applied_seq
    except FileNotFoundError:
        return -1


def recovery_steps(stream: str, history: StreamHistory, summary: SummaryDoc,
                   config: ConfigDoc) -> Iterator[TailPart | None]:
    """Recovery of ``history``'s tails, oldest incarnation first (spec §8.5).

    For each tail, ``summary`` and ``config`` are updated in place (step 3),
    then the part to write for it is yielded (step 2), or None if the tail has
    no rows. The caller writes what it is given where it belongs: the writer
    into the run, the pusher into a temporary directory outside it.
    """
    for _inc, tail in history.tails:
        summary.apply(tail)
        config.apply(tail.meta)
        if not tail.rows:
            yield None
            continue
        lo = min([int(c[3][0]) for chunks in tail.chunks.values() for c in chunks] + [m.seq for m in tail.meta])
        yield TailPart(lo, tail.max_seq, columns_to_table(tail, stream))


def crashed_status(claim: Claim, status: Status | None, history: StreamHistory) -> Status:
    """The ``status.json`` a pushed copy holds for a stream whose writer died (spec §7.2, §12.4; since 1.3).

    The dead incarnation's own status (or, if it wrote none, one made from its
    claim) with state ``crashed``; ``last_seq``/``last_step`` include its tail,
    and ``ended`` is the later of its last heartbeat and its last row's time.
    """
    if status is None or status.incarnation != claim.incarnation:
        status = Status(stream=claim.stream, incarnation=claim.incarnation, state=State.RUNNING, host=claim.host,
                        boot_id=claim.boot_id, pid=claim.pid, pid_start=claim.pid_start, started=claim.time,
                        heartbeat=claim.time, heartbeat_interval=claim.heartbeat_interval)
    out = replace(copy.deepcopy(status), state=State.CRASHED, exit_code=None)
    out.last_seq = max(out.last_seq, history.max_seq)
    out.last_step = max(out.last_step, history.max_step)
    out.ended = max(out.heartbeat, history.max_time)
    return out
