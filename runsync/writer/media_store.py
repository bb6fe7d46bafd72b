"""The flusher's half of media (spec §13): encode queued items, dedupe by content, write parts.

``add()`` runs inside ``log()`` (under the encoder lock) and only queues.
Everything else runs on the flusher thread: encoding, hashing, writing media
parts (before the history part that names them) and merging small media parts
so a week of logged images stays a few dozen files.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from ..format.history import Part, list_parts, read_part, remove_parts
from ..format.media import MEDIA_DIR, MEDIA_SCHEMA, MediaRow, media_table, write_media_part
from .flusher import SOFT_MEDIA, merge_group
from .reporter import Reporter

__all__ = ["MediaStore"]

MAX_MERGE_BYTES = 256 << 20  # media parts stop merging beyond this size


@dataclass
class _Queued:
    seq: int
    step: int
    key: str
    items: list[Any]  # writer.media.Prepared
    nbytes: int


@dataclass
class _OwnPart:
    part: Part
    level: int
    rows: int
    size: int


class MediaStore:
    def __init__(self, run_dir: Path, stream: str, reporter: Reporter, memory_limit: int,
                 wake: Callable[[], None], merge_factor: int) -> None:
        self.dir = run_dir / MEDIA_DIR
        self.stream = stream
        self.reporter = reporter
        self.limit = memory_limit
        self.wake = wake
        self.merge_factor = merge_factor
        self.queue: deque[_Queued] = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._known: set[str] | None = None  # SHA-256 of items stored in this run's media parts
        self._parts: list[_OwnPart] = []
        self._failed_keys: set[str] = set()

    # -- caller's thread (inside log(), under the encoder lock) -------------------------
    def add(self, seq: int, step: int, t: float, media: list[tuple[str, list[Any]]]) -> None:
        for key, items in media:
            n = sum(p.nbytes for p in items)
            if self.queued_bytes + n > self.limit:
                self.dropped += len(items)
                self.reporter.problem("media", f"media of key {key!r} dropped: {self.queued_bytes >> 20} MiB of media "
                                      "wait to be written (the disk is slow or failing)")
                continue
            self.queue.append(_Queued(seq, step, key, items, n))
            self.queued_bytes += n
        if self.queued_bytes > SOFT_MEDIA:
            self.wake()

    @property
    def pending(self) -> bool:
        return bool(self.queue)

    # -- flusher thread ------------------------------------------------------------------
    def write(self, up_to_seq: int) -> None:
        """Encode and store every queued item of records up to ``up_to_seq`` as one media part.

        Raises OSError when the part cannot be written; the items stay queued for the retry.
        """
        with self._lock:
            batch = [q for q in self.queue if q.seq <= up_to_seq]
            if not batch:
                return
            known = self._known_shas()
            rows: list[MediaRow] = []
            new: set[str] = set()
            for q in batch:
                for i, item in enumerate(q.items):
                    row = self._encode(q, i, item)
                    if row is None:
                        continue
                    if row.sha256 in known or row.sha256 in new:
                        row.data = None
                    else:
                        new.add(row.sha256)
                    rows.append(row)
            if rows:
                os.makedirs(self.dir, exist_ok=True)
                part = write_media_part(self.dir, self.stream, batch[0].seq, batch[-1].seq, media_table(rows))
                self._parts.append(_OwnPart(part, 0, len(rows), _size(part.path)))
                known |= new
            for _ in batch:
                q = self.queue.popleft()
                self.queued_bytes -= q.nbytes
            self._compact()

    def _encode(self, q: _Queued, index: int, item: Any) -> MediaRow | None:
        try:
            fmt, data, meta = item.encode()
        except Exception as e:
            if q.key not in self._failed_keys:
                self._failed_keys.add(q.key)
                self.reporter.problem("media", f"media of key {q.key!r} at step {q.step} could not be encoded "
                                      f"({type(e).__name__}: {e}); that item is not stored")
            return None
        sha = hashlib.sha256(data).hexdigest()
        return MediaRow(self.stream, q.seq, q.step, q.key, index, item.kind, fmt, item.caption, meta, sha, len(data),
                        data)

    def _known_shas(self) -> set[str]:
        """Hashes already stored in the run (read once, from every stream's media parts)."""
        if self._known is None:
            known: set[str] = set()
            for p in list_parts(self.dir):
                try:
                    t = pq.read_table(p.path, columns=["sha256", "data"], page_checksum_verification=True)
                except (OSError, ValueError):
                    continue  # unreadable or failing its page CRCs: its items are simply stored again
                data = t.column("data")
                for sha, present in zip(t.column("sha256").to_pylist(), data.is_valid().to_pylist()):
                    if present:
                        known.add(sha)
            self._known = known
        return self._known

    def _compact(self) -> None:
        while True:
            n = merge_group([(p.level, p.rows) for p in self._parts], self.merge_factor, 1 << 30)
            if not n or sum(p.size for p in self._parts[-n:]) > MAX_MERGE_BYTES:
                if n:  # too big to merge: freeze these parts at the top level
                    for p in self._parts[-n:]:
                        p.level = 1 << 30
                return
            group = self._parts[-n:]
            try:
                merged = write_media_part(self.dir, self.stream, group[0].part.lo, group[-1].part.hi,
                                          (read_part(p.part.path, schema=MEDIA_SCHEMA) for p in group))
            except Exception as e:
                self.reporter.problem("compact", f"could not merge media parts ({type(e).__name__}: {e})")
                return
            remove_parts(p.part.path for p in group)
            self._parts[-n:] = [_OwnPart(merged, group[0].level + 1, sum(p.rows for p in group), _size(merged.path))]


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
