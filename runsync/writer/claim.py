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

import psutil

from ..format.errors import FormatError, StreamClaimedError
from ..format.history import list_parts, remove_parts, select_cover, write_part
from ..format.layout import HISTORY_DIR, TABLES, RunLayout, StreamLayout
from ..format.liveness import host_identity, stream_state
from ..format.media import MEDIA_DIR
from ..format.meta import Claim, ConfigDoc, State, SummaryDoc, publish_doc, save_doc
from ..format.recovery import StreamHistory, recovery_steps, scan_stream
from ..format.tail import wal_location

__all__ = ["StreamHistory", "scan_stream", "claim_stream", "recover", "remove_temp_leftovers", "LEFTOVER_AGE"]

# A temp file younger than this may belong to a writer that has not claimed its stream yet (run.json
# and the claim itself are published through temp files), so it is never taken for a leftover.
LEFTOVER_AGE = 60.0


def claim_stream(
    run: RunLayout, stream: StreamLayout, run_id: str, resume: bool, heartbeat_interval: float,
    wal_dir: str | None = None,
) -> tuple[Claim, StreamHistory]:
    """Become the writer of ``stream``; raise StreamClaimedError if someone alive is.

    ``wal_dir``: where the new incarnation will keep its segments, if not in the
    stream directory; recorded in the claim (spec §6.1) and created here.
    """
    os.makedirs(stream.dir, exist_ok=True)
    if wal_dir is not None:
        os.makedirs(wal_dir, exist_ok=True)
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
            wal_dir=wal_dir,
        )
        if publish_doc(claim, stream.claim(inc), stream.tmp):
            last = history.claims.get(inc - 1)
            if state is not None and state.state == State.CRASHED and last is not None and last.wal_dir is not None \
                    and wal_location(stream, last, host) is None:
                history.lost_wal = last
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
    for part in recovery_steps(stream.name, history, summary, config):  # the same steps a pusher takes (§12.4)
        save_doc(summary, stream.summary, tmp_dir=stream.tmp)
        save_doc(config, stream.config, tmp_dir=stream.tmp)
        if part is not None:
            write_part(run.history, stream.name, part.lo, part.hi, part.table)
    host = host_identity()[0]
    places = {stream.dir: stream}
    for c in history.claims.values():
        wal = wal_location(stream, c, host)
        if wal is not None:
            places[wal.dir] = wal
    for place in places.values():
        for inc, _segno, path in place.segments():
            if inc in history.incarnations:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


def _other_writer_alive(run: RunLayout, me: Claim) -> bool:
    """Is any stream of the run (either table) written by a live process other than this one (§7.3)?
    A stream whose state cannot be read counts as alive: nothing is removed on a guess."""
    for table in TABLES:
        for st in run.with_table(table).streams():
            try:
                s = stream_state(st)
            except (FormatError, OSError):
                return True
            if s is not None and s.state == State.RUNNING and \
                    (s.claim.host, s.claim.boot_id, s.claim.pid) != (me.host, me.boot_id, me.pid):
                return True
    return False


def remove_temp_leftovers(run: RunLayout, me: Claim, now: float | None = None) -> int:
    """Delete temp files a killed writer left in the run (spec §2.3), once no other writer of the run
    is alive; return how many. Called by a writer right after it claims a stream. Never raises."""
    try:
        found = run.temp_leftovers()
        if not found or _other_writer_alive(run, me):
            return 0
        now = time.time() if now is None else now
        n = 0
        for path in found:
            try:
                if now - os.lstat(path).st_mtime >= LEFTOVER_AGE:
                    os.unlink(path)
                    n += 1
            except FileNotFoundError:
                pass
        return n
    except OSError:
        return 0  # a leftover costs disk space, never correctness: the run goes on
