"""The background flusher: WAL → Parquet parts, summary/config/status files.

Runs in its own thread, started explicitly by the run. It is the only code that
does file I/O for a live run. Every failure here is reported through the
Reporter and retried; none propagates into the training loop.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..format.history import Part, columns_to_table, merge_parts, remove_parts, write_part
from ..format.layout import RunLayout, StreamLayout
from ..format.meta import ConfigDoc, Durability, State, Status, SummaryDoc, save_doc
from ..format.wal import Columns, Decoder
from .encoder import Encoder
from .reporter import Reporter
from .reserve import Reserve
from .segments import (
    MappingUnsupported,
    Segment,
    adopt_file,
    allocate_append_segment,
    allocate_file_segment,
    open_append_file,
)
from .settings import Settings
from .switch_interval import short_switch_interval

__all__ = ["FULL", "Flusher", "mapping_warning", "merge_group", "short_switch_interval"]

_RETRY_DISK = 15.0
SOFT_MEDIA = 64 << 20  # queued media bytes that make a part due now
SPARES = 2  # file segments kept ready, so a fast logger never outruns allocation
FULL = 1 << 30  # level of parts that are never merged


def mapping_warning(reporter: Reporter, where: object, flush_interval: float) -> None:
    """Say once that the WAL is appended, not mapped, and what that costs (spec §8.2.1, §9.4)."""
    reporter.problem(
        "wal-mapping",
        f"the filesystem under {where} does not support shared memory mappings (FUSE direct_io?); logging "
        f"continues with at most ~{flush_interval:g} s at risk on a hard kill; set RUNSYNC_WAL_DIR to a local disk "
        "to keep the mapped log there",
        repeat_after=float("inf"),
    )


def merge_group(parts: list[tuple[int, int]], factor: int, max_rows: int) -> int:
    """How many trailing parts to merge now (0: none), given (level, rows) in seq order.

    The last ``factor`` parts merge into one of the next level when they share a
    level, are not full parts, and hold at most ``max_rows`` rows together. Only
    trailing, hence seq-adjacent, parts merge, so a merged part's seq range
    never contains a part it did not absorb (spec §4.4). Files per stream stay
    about ``(factor - 1) × levels`` plus rows / ``max_rows``.
    """
    if len(parts) < factor:
        return 0
    group = parts[-factor:]
    level = group[0][0]
    if level == FULL or any(lv != level for lv, _ in group) or sum(r for _, r in group) > max_rows:
        return 0
    return factor


@dataclass
class _OwnPart:
    part: Part
    level: int
    rows: int


class Flusher:
    def __init__(
        self,
        enc: Encoder,
        run: RunLayout,
        stream: StreamLayout,
        settings: Settings,
        reporter: Reporter,
        status: Status,
        summary: SummaryDoc,
        config: ConfigDoc,
        time_floor: float,
        wal: StreamLayout | None = None,
    ) -> None:
        self.enc = enc
        self.wal = wal or stream  # where this incarnation's segments live (spec §6.1 wal_dir)
        # Append mode (spec §8.2.1): the filesystem under ``wal`` cannot map files.
        self.append = enc.seg.mode == Durability.APPEND
        status.durability = Durability.APPEND if self.append else Durability.MAPPED
        self.run = run
        self.stream = stream
        self.settings = settings
        self.reporter = reporter
        self.status = status
        self.summary = summary
        self.config = config
        self.decoder = Decoder(verify=False, time_floor=time_floor)
        self.pending = Columns()
        self.durable_seq = enc.seq  # every record up to here is in a part or a document
        self.parts: list[_OwnPart] = []
        self.mu = threading.RLock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._alloc_thread: threading.Thread | None = None
        self._alloc_wake = threading.Event()
        self._alloc_stop = False
        self._last_part = time.monotonic()
        self._last_status = 0.0
        self._docs_dirty = True
        self._spare_retry_at = 0.0
        self._part_retry_at = 0.0
        self._failing: set[str] = set()  # kinds of writes currently failing
        self._reported = False
        self._memory_rows = 0  # pending rows whose records live only in memory segments
        # Append mode (spec §8.2.1), by segno: pending rows decoded from a segment that are not yet in its
        # file (in append mode a memory segment is an append segment whose file is made when it is written).
        self._unwritten: dict[int, int] = {}
        self._reserve = Reserve(stream.dir)  # room for the final status on a full disk (spec §9.4)
        self.media: Any = None  # a MediaStore when this pipeline writes history (spec §13)

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        self._alloc_thread = threading.Thread(target=self._alloc_loop, name=f"runsync-alloc-{self.stream.name}",
                                              daemon=True)
        self._alloc_thread.start()
        self._thread = threading.Thread(target=self._loop, name=f"runsync-flusher-{self.stream.name}", daemon=True)
        self._thread.start()

    def _alloc_loop(self) -> None:
        """Keep SPARES file segments ready. Its own thread: it must not wait behind a part write.

        Allocation is a few syscalls (open, fallocate, mmap) that release the
        GIL; falling behind would push the writer onto a non-durable memory
        segment, which a kill -9 would lose.
        """
        reserve = True
        while not self._alloc_stop:
            try:
                self._fill_spares()
            except Exception as e:  # never let the thread die silently
                self.reporter.problem("alloc", f"segment allocation failed: {type(e).__name__}: {e}")
            if reserve:  # after the first spare: that one is what log() is waiting for
                self._reserve.make()
                reserve = False
            self._alloc_wake.wait(self.settings.flush_interval)
            self._alloc_wake.clear()

    def _stop_alloc(self) -> None:
        self._stop = True
        self._alloc_stop = True
        self._alloc_wake.set()
        if self._alloc_thread is not None and self._alloc_thread is not threading.current_thread():
            self._alloc_thread.join(10)

    def stop(self, state: str, exit_code: int | None, timeout: float) -> bool:
        """Final flush, then mark the stream ``state``. Returns False on timeout."""
        self._stop_alloc()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.reporter.problem("finish", f"final flush did not complete within {timeout:.0f} s; "
                                      "what was logged stays in the WAL and is recovered by the next reader or writer")
                return False
        with self.mu:
            self._final(state, exit_code)
        return True

    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(self.settings.flush_interval)
            self._wake.clear()
            if self._stop:
                break
            try:
                with self.mu, short_switch_interval():
                    self.tick()
            except Exception as e:  # never let the thread die silently
                self.reporter.problem("flusher", f"background flush failed: {type(e).__name__}: {e}")

    # -- one round ---------------------------------------------------------------
    def tick(self, force_part: bool = False) -> None:
        now = time.monotonic()
        self.drain(write_full_parts=True)
        self._sync_segments()
        media_due = self.media is not None and self.media.queued_bytes > SOFT_MEDIA
        # rows held only in memory segments go to a part every flush: a kill -9 loses at most one
        # flush interval of them (spec §9.4), not a part interval
        due = (force_part or media_due or self._memory_rows > 0
               or now - self._last_part >= self.settings.part_interval)
        if due and now >= self._part_retry_at:
            self._write_pending(full=False)
        elif now >= self._part_retry_at and not self._write_media():
            # Media go out every flush, not every part: a kill -9 loses at most a flush interval of them (§13.4).
            self._part_retry_at = now + _RETRY_DISK  # a failing disk: do not re-encode every second
        self._release_segments()
        if time.time() - self._last_status >= self.settings.heartbeat_interval:
            self._write_status(State.RUNNING)

    def drain(self, write_full_parts: bool = False) -> None:
        """Decode everything committed to the WAL since the last drain.

        With ``write_full_parts``, a part is written whenever ``part_rows`` rows
        are pending, so memory stays bounded however fast the caller logs.
        """
        with self.mu:
            with self.enc.lock:
                work = [(seg, seg.off) for seg in self.enc.segs]
            for seg, off in work:
                if off <= seg.read:
                    continue
                if seg.mode != Durability.MAPPED:
                    mode = Durability.APPEND if self.append else seg.mode  # append mode: memory is promoted
                    self.status.durability = Durability.weakest(self.status.durability or mode, mode)
                got = Columns()
                seg.read = self.decoder.decode(seg.view, seg.read, off, got)
                if seg.mode == Durability.APPEND or (self.append and not seg.durable):
                    self._unwritten[seg.segno] = self._unwritten.get(seg.segno, 0) + got.rows
                elif not seg.durable:
                    self._memory_rows += got.rows
                if got.max_seq >= 0:
                    seg.max_seq = got.max_seq
                if got:
                    self.summary.apply(got)
                    self.config.apply(got.meta)
                    self.pending.extend(got)
                    self._docs_dirty = True
                if (
                    write_full_parts
                    and self.pending.rows >= self.settings.part_rows
                    and time.monotonic() >= self._part_retry_at
                ):
                    self._write_pending(full=True)
                    self._release_segments()

    # -- parts -------------------------------------------------------------------
    def _write_pending(self, full: bool) -> None:
        """Write pending rows as one part. Full parts (``part_rows`` reached) are never merged."""
        self._last_part = time.monotonic()
        hi = max(self.pending.max_seq, self.summary.applied_seq, self.config.applied_seq)
        self._write_media()  # media first: a reader that sees a history part also sees its media
        try:
            self._write_docs()
            if self.pending.rows:
                table = columns_to_table(self.pending, self.stream.name)
                part = write_part(self.run.history, self.stream.name, self.durable_seq + 1, hi, table)
                # A full part is a barrier: merges combine only seq-adjacent small parts,
                # so a merged range never contains a part it did not absorb (spec §4.4).
                self.parts.append(_OwnPart(part, FULL if full else 0, table.num_rows))
        except OSError as e:
            self._disk_problem("part", "history part", e)
            self._part_retry_at = time.monotonic() + _RETRY_DISK
            return
        self._disk_ok("part")
        self._memory_rows = 0
        self._unwritten.clear()
        if hi > self.durable_seq:
            self.durable_seq = hi
        self.pending = Columns()
        self._compact()

    def _write_media(self) -> bool:
        """Store queued media as a part; False if the disk refused it (the items stay queued)."""
        if self.media is not None and self.media.pending:
            try:
                self.media.write(self.enc.seq)
                self._disk_ok("media")
            except OSError as e:
                self._disk_problem("media", "media part", e)
                return False
        return True

    def _write_docs(self) -> None:
        if self._docs_dirty:
            os.makedirs(self.run.history, exist_ok=True)
            save_doc(self.summary, self.stream.summary, tmp_dir=self.stream.tmp)
            save_doc(self.config, self.stream.config, tmp_dir=self.stream.tmp)
            self._docs_dirty = False

    def _compact(self) -> None:
        """Merge small parts per ``merge_group`` (spec §4.4)."""
        while True:
            n = merge_group([(p.level, p.rows) for p in self.parts], self.settings.merge_factor,
                            self.settings.max_merge_rows)
            if not n:
                return
            group = self.parts[-n:]
            try:
                merged = merge_parts(self.run.history, self.stream.name, [p.part.path for p in group],
                                     group[0].part.lo, group[-1].part.hi)
            except Exception as e:
                self.reporter.problem("compact", f"could not merge history parts ({type(e).__name__}: {e}); will retry")
                return
            remove_parts(p.part.path for p in group)
            self.parts[-n:] = [_OwnPart(merged, group[0].level + 1, sum(p.rows for p in group))]

    # -- segments ------------------------------------------------------------------
    def _fill_spares(self) -> None:
        while len(self.enc.spare) < SPARES and not self._alloc_stop and not self.enc.closed:
            now = time.monotonic()
            if now < self._spare_retry_at or not self._allocate_spare(now):
                return

    def _allocate_spare(self, now: float) -> bool:
        segno = self.enc.take_segno()
        inc, size = self.enc.incarnation, self.settings.segment_size
        path = self.wal.segment(inc, segno)
        try:
            if not self.append:
                try:
                    seg = allocate_file_segment(path, size, inc, segno)
                except MappingUnsupported:
                    self.append = True
                    where = self.run.dir if self.wal is self.stream else self.wal.dir
                    mapping_warning(self.reporter, where, self.settings.flush_interval)
            if self.append:
                seg = allocate_append_segment(path, size, inc, segno)
        except OSError as e:
            self._disk_problem("wal", "write-ahead log segment", e)
            self._spare_retry_at = now + _RETRY_DISK
            return False
        self._disk_ok("wal")
        self.enc.add_spare(seg)
        if self._alloc_stop or self.enc.closed:  # finishing meanwhile: do not leak the file
            with self.enc.lock:
                if seg in self.enc.spare:
                    self.enc.spare.remove(seg)
                    seg.close(unlink=True)
        return True

    def _persist(self, seg: Segment) -> None:
        """Append mode: write a segment's decoded records to its file, first making the file of a
        memory segment the writer had to take (no spare was ready). Raises OSError (spec §8.2.1)."""
        if not seg.durable:
            path = self.wal.segment(self.enc.incarnation, seg.segno)
            fd = open_append_file(path, self.enc.incarnation, seg.segno)
            with self.enc.lock:
                adopt_file(seg, path, fd)
                self.enc.memory_used -= seg.cap  # no longer a memory segment (Encoder.release)
        seg.sync(seg.read)
        self._unwritten.pop(seg.segno, None)

    def _sync_segments(self) -> None:
        appended = False
        for seg in list(self.enc.segs):
            if seg.mode == Durability.APPEND or (self.append and not seg.durable):
                # Append mode: this write is what makes the records survive a kill (spec §8.2.1).
                # In segment order, stopping at a failure: the files always hold a prefix of the log.
                try:
                    self._persist(seg)
                    appended = True
                except (OSError, ValueError) as e:
                    if isinstance(e, OSError):
                        if not seg.durable:
                            self.status.durability = Durability.MEMORY
                        self._disk_problem("append", "write-ahead log", e)
                    return
            elif seg.durable:
                try:
                    seg.sync(seg.read)
                except (OSError, ValueError):
                    pass
        if appended:
            self._disk_ok("append")

    def _release_segments(self) -> None:
        for seg in list(self.enc.segs):
            if seg.sealed and seg.read >= seg.off and seg.max_seq <= self.durable_seq:
                self.enc.release(seg)
                try:
                    seg.close(unlink=True)
                except (BufferError, OSError):
                    pass

    # -- status --------------------------------------------------------------------
    def _write_status(self, state: str, exit_code: int | None = None) -> None:
        st = self.status
        st.state = state
        st.heartbeat = time.time()
        st.last_seq = self.durable_seq
        st.last_step = self.enc.step - 1
        st.dropped_rows = self.enc.dropped_rows
        st.error = self.reporter.last_error
        if state != State.RUNNING:
            st.ended = st.heartbeat
            st.exit_code = exit_code
        try:
            try:
                save_doc(st, self.stream.status, durable=state != State.RUNNING, tmp_dir=self.stream.tmp)
            except OSError as e:
                # The last status is what tells readers how the run ended and what was dropped.
                if state == State.RUNNING or e.errno not in (errno.ENOSPC, errno.EDQUOT) or not self._reserve.drop():
                    raise
                save_doc(st, self.stream.status, durable=True, tmp_dir=self.stream.tmp)
            self._last_status = st.heartbeat
            self._disk_ok("status")
        except OSError as e:
            self._disk_problem("status", "status file", e)

    def _final(self, state: str, exit_code: int | None) -> None:
        self._failing.discard("wal")  # no more segments are needed
        self.drain(write_full_parts=True)
        self._write_pending(full=False)
        complete = self.pending.rows == 0 and not self.pending.meta
        with self.enc.lock:
            spares = list(self.enc.spare)
            self.enc.spare.clear()
        for seg in spares:
            seg.close(unlink=True)
        failed = False
        for seg in list(self.enc.segs):
            seg.sealed = True
            if not complete and not failed and (seg.durable or self.append):
                try:
                    if seg.mode == Durability.MAPPED:
                        seg.sync(seg.read)
                    else:
                        self._persist(seg)
                    continue
                except (OSError, ValueError):
                    failed = seg.mode != Durability.MAPPED  # later appends would leave a gap
                    if seg.durable:
                        continue
            if complete or not seg.durable:
                self.enc.release(seg)
                try:
                    seg.close(unlink=complete)
                except (BufferError, OSError):
                    pass
        if not complete:
            # Rows only in memory, and rows of append segments whose file could not take them, are lost.
            lost = self._memory_rows + sum(self._unwritten.values())
            if lost:
                self.enc._drop(lost)
            self.reporter.problem(
                "final", "could not write the last history part; rows in the write-ahead log under "
                f"{self.wal.dir} are kept and recovered by the next `runsync` reader or writer"
                + (f"; {lost} rows held only in memory (the disk was full) are lost" if lost else "")
            )
        self._write_status(state, exit_code)
        self._reserve.drop()

    # -- problems ------------------------------------------------------------------
    def _disk_problem(self, kind: str, what: str, e: OSError) -> None:
        self._failing.add(kind)
        self._reported = True
        hint = ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = " — the filesystem is full or over quota; free space or point RUNSYNC_DIR elsewhere"
        self.reporter.problem(
            "disk",
            f"cannot write {what} under {self.run.dir}: {e.strerror or e}{hint}. Training continues; "
            f"rows are kept (up to {self.settings.memory_limit >> 20} MiB in memory) and writing is retried",
        )

    def _disk_ok(self, kind: str) -> None:
        """Say the disk works again only once every kind of write has succeeded since it failed."""
        self._failing.discard(kind)
        if self._reported and not self._failing:
            self._reported = False
            self.reporter.resolved("disk", "writing works again; buffered rows were saved"
                                   + (f" ({self.enc.dropped_rows} rows had to be dropped)" if self.enc.dropped_rows else ""))

    def terminate(self, exit_code: int) -> None:
        """Final flush on SIGTERM, from the watchdog thread; the process exits right after.

        The encoder is held, not closed: a log() call from now on blocks until
        the process exits (nothing is acknowledged that no part holds, and
        nothing is raised into the training loop). Then the usual final flush.
        """
        with self.enc.lock:
            self.enc.terminating = True
            self.enc.hold = True
        self._stop_alloc()
        self._wake.set()
        with self.mu:
            self._final(State.FAILED, exit_code)

    def wake(self) -> None:
        """Ask for a round now (the writer calls this when it switches segments)."""
        self._alloc_wake.set()
        self._wake.set()

    def summary_snapshot(self) -> dict[str, Any]:
        self.drain()
        with self.mu:
            return dict(self.summary.values)
