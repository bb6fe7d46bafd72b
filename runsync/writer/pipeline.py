"""One stream of one table, end to end: claim, recovery, encoder, flusher (spec §6, §8, §14).

``history`` and ``system`` are written by the same machinery; a run opens one
pipeline per table it writes. Opening claims the stream (exclusive create) and
recovers what dead incarnations left, so it does disk I/O: it runs inside
``init()``, never inside ``log()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..format.layout import RunLayout, StreamLayout, wal_stream_dir
from ..format.liveness import host_identity
from ..format.meta import Claim, ConfigDoc, State, Status, SummaryDoc, load_doc
from ..format.walcheck import describe_losses
from .claim import StreamHistory, claim_stream, recover, remove_temp_leftovers
from .encoder import Encoder
from .flusher import Flusher, mapping_warning
from .reporter import Reporter
from .segments import MappingUnsupported, Segment, allocate_append_segment, allocate_file_segment, memory_segment
from .settings import Settings

__all__ = ["Pipeline", "open_pipeline"]


@dataclass
class Pipeline:
    enc: Encoder
    flusher: Flusher
    claim: Claim
    history: StreamHistory

    def start(self) -> None:
        """Allocate the spare segments here (a new stream starts ready and quiet), then the threads."""
        self.flusher._fill_spares()
        self.flusher.start()


def open_pipeline(layout: RunLayout, stream: str, run_id: str, resume: bool, settings: Settings,
                  reporter: Reporter, wal_root: Path | None = None) -> Pipeline:
    """Claim ``stream`` of ``layout``'s table and build its writer; nothing runs until ``start()``.

    ``wal_root`` (``init(wal_dir=)``, ``RUNSYNC_WAL_DIR``) puts this
    incarnation's WAL segments on a local disk instead of the stream directory;
    the claim records where (spec §6.1, §8.5).
    """
    st = layout.stream(stream)
    wal_dir = wal_stream_dir(wal_root, layout.dir, st.dir) if wal_root is not None else None
    claim, history = claim_stream(layout, st, run_id, resume, settings.heartbeat_interval,
                                  None if wal_dir is None else str(wal_dir))
    lost = history.lost_wal
    if lost is not None:
        reporter.problem("wal-lost", f"stream {stream!r} incarnation {lost.incarnation} crashed with its write-ahead "
                         f"log in {lost.wal_dir} on host {lost.host}, which this host cannot read; its rows since its "
                         "last history part are lost (resume on that host to recover them)")
    summary = _load_or(SummaryDoc, st.summary)
    config_doc = _load_or(ConfigDoc, st.config)
    for text in describe_losses(history.losses):  # spec §8.5: damaged records of a dead writer's WAL were skipped
        reporter.problem(f"wal-damage {text}", f"recovering the WAL: {text}")
    recover(layout, st, history, summary, config_doc)
    remove_temp_leftovers(layout, claim)
    wal = st if wal_dir is None else StreamLayout(wal_dir, st.name)
    first = _first_segment(wal, claim.incarnation, settings, reporter, layout.dir if wal_dir is None else wal_dir)
    enc = Encoder(first, claim.incarnation, claim.first_seq, history.max_step + 1 if resume else 0,
                  settings.memory_limit, lambda n: reporter.problem(
                      "drop", "rows are being dropped: the disk cannot be written and the in-memory bound "
                      f"({settings.memory_limit >> 20} MiB) is reached"))
    now = time.time()
    host, boot = host_identity()
    status = Status(stream=stream, incarnation=claim.incarnation, state=State.RUNNING, host=host, boot_id=boot,
                    pid=claim.pid, pid_start=claim.pid_start, started=now, heartbeat=now,
                    heartbeat_interval=settings.heartbeat_interval)
    flusher = Flusher(enc, layout, st, settings, reporter, status, summary, config_doc, claim.time_floor, wal)
    enc.on_switch = flusher.wake
    flusher._write_status(State.RUNNING)
    return Pipeline(enc, flusher, claim, history)


def _first_segment(wal: StreamLayout, inc: int, settings: Settings, reporter: Reporter, where: Path) -> Segment:
    """Segment 0: mapped (§8.2); appended where the filesystem cannot map files (§8.2.1); else memory (§9.4)."""
    path = wal.segment(inc, 0)
    try:
        try:
            return allocate_file_segment(path, settings.segment_size, inc, 0)
        except MappingUnsupported:
            mapping_warning(reporter, where, settings.flush_interval)
            return allocate_append_segment(path, settings.segment_size, inc, 0)
    except OSError as e:
        reporter.problem("disk", f"cannot create the write-ahead log in {where}: {e.strerror or e}; "
                         "logging to memory until the disk works again")
        return memory_segment(1 << 20, inc, 0)


def _load_or(cls: Any, path: Path) -> Any:
    try:
        return load_doc(cls, path)
    except FileNotFoundError:
        return cls()
