"""The caller's side of logging: turn a log() call into a WAL record, no file I/O.

This is the hot path (spec §8.4 describes the records). For a dict whose key set
and value types were seen before, log() packs one ROW record with a cached
Struct straight into the mapped segment and writes its header last. Anything
else takes the slow path, which validates and coerces, defines new keys and
schemas, and falls back to a GENERIC record for strings and None.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from time import time as _time
from typing import Any, Callable
from zlib import crc32

from ..format.errors import RunsyncError
from ..format.values import INT64_MAX, ValueType, check_key, coerce, flatten
from ..format.wal import (
    GENERIC_PREFIX,
    HEADER,
    KEYDEF,
    META_PREFIX,
    ROW_PREFIX,
    SCHEMA_ITEM,
    SCHEMA_PREFIX,
    VALUE_CODES,
    Kind,
    align8,
    encode_generic_items,
    encode_meta_payload,
)
from .media import prepare_value
from .segments import Segment, memory_segment, put_record

__all__ = ["Encoder", "RunFinishedError", "ForkedRunError", "LogValueError"]

_FIXED = (ValueType.FLOAT, ValueType.INT, ValueType.BOOL)
_PY_TYPE = {ValueType.FLOAT: float, ValueType.INT: int, ValueType.BOOL: bool}
_HDR_PACK = HEADER.pack_into
MEMORY_SEGMENT_SIZE = 1 << 20


class RunFinishedError(RunsyncError):
    """log() or a summary/config change on a run that has finished."""


class ForkedRunError(RunsyncError):
    """A forked child used its parent's run (spec §6.3)."""


class LogValueError(TypeError, ValueError):
    """Some values of a log() call were rejected; every other value of the call was stored (spec §5.4)."""

    def __init__(self, errors: list[tuple[str, Exception]], logged: bool = True) -> None:
        self.errors = errors
        keys = ", ".join(repr(k) for k, _ in errors)
        detail = "; ".join(str(e) for _, e in errors)
        rest = "the rest of the call was logged" if logged else "nothing was logged"
        super().__init__(f"log() rejected {len(errors)} value(s) ({keys}); {rest}. {detail}")


MediaSink = Callable[[int, int, float, list[tuple[str, list[Any]]]], None]


@dataclass(frozen=True)
class _Entry:
    types: tuple[type, ...]
    schema_id: int
    body: struct.Struct
    size: int
    n: int
    get: Callable[[dict[str, Any]], tuple[Any, ...]]


def _getter(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Values of ``keys`` from a dict, as a tuple, in that order."""
    if len(keys) == 1:
        key = keys[0]
        return lambda d: (d[key],)
    return itemgetter(*keys)  # type: ignore[return-value]


def _record(body: bytes) -> bytes:
    """A complete record for ``body`` (which starts with the kind byte)."""
    size = align8(8 + len(body))
    padded = body.ljust(size - 8, b"\0")
    return HEADER.pack(size, crc32(padded)) + padded


class Encoder:
    """Owns the WAL write position of one incarnation; thread-safe."""

    def __init__(
        self,
        first_seg: Segment,
        incarnation: int,
        first_seq: int,
        first_step: int,
        memory_limit: int,
        on_drop: Callable[[int], None],
    ) -> None:
        self.lock = threading.Lock()
        self.incarnation = incarnation
        self.seg = first_seg
        self.segs: list[Segment] = [first_seg]
        self.spare: deque[Segment] = deque()
        self.seq = first_seq - 1
        self.step = first_step
        self.defs: list[bytes] = []
        self.key_ids: dict[str, int] = {}
        self.schema_ids: dict[tuple[tuple[int, int], ...], int] = {}
        self.cache: dict[tuple[tuple[str, ...], tuple[type, ...]], _Entry] = {}
        self.last: _Entry | None = None
        self.memory_limit = memory_limit
        self.memory_used = 0
        self.dropped_rows = 0
        self.on_drop = on_drop
        self.on_switch: Callable[[], None] = lambda: None
        self.media_sink: MediaSink | None = None  # receives (seq, step, time, [(key, prepared items)])
        self.closed = False
        self.pid = os.getpid()
        self.forked = False
        self.terminating = False
        self.hold = False  # forked or terminating: every call takes the slow path
        self._next_segno = first_seg.segno + 1

    # -- hot path ---------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool = True) -> None:
        """Append one call's values as a WAL record. No file I/O; see spec §8.4."""
        if type(data) is not dict or self.hold:
            return self._log_slow(data, step, commit)
        # Most loops log the same keys every call: try the last schema first.
        # Its getter fetches the values in schema order (raising KeyError if a
        # key is missing); equal length rules out extra keys.
        ent = self.last
        vals = None
        if ent is not None and len(data) == ent.n:
            try:
                vals = ent.get(data)
            except KeyError:
                pass
        if vals is None or ent.types != tuple(map(type, vals)):  # type: ignore[union-attr]
            keys = tuple(data)
            vals = tuple(data.values())
            types = tuple(map(type, vals))
            ent = self.cache.get((keys, types))
            if ent is None:
                return self._log_slow(data, step, commit)
            self.last = ent
        if step is not None and (type(step) is not int or step < 0 or step > INT64_MAX):
            return self._log_slow(data, step, commit)
        t = _time()
        lock = self.lock
        lock.acquire()
        try:
            if self.closed:
                raise RunFinishedError("log() called after finish(); start a new run with runsync.init()")
            seq = self.seq + 1
            s = self.step if step is None else step
            seg = self.seg
            off = seg.off
            size = ent.size
            if off + size > seg.cap:
                seg = self._switch(size)
                if seg is None:
                    self._drop(len(vals))
                    self.seq = seq
                    if commit:
                        self.step = s + 1
                    return None
                off = seg.off
            buf = seg.buf
            try:
                ent.body.pack_into(buf, off + 8, Kind.ROW, ent.schema_id, seq, s, t, *vals)
            except struct.error:
                buf[off : off + size] = bytes(size)  # leave zeroed space behind (spec §8.2)
                bad = True
            else:
                bad = False
            if not bad:
                _HDR_PACK(buf, off, size, 0)  # header last: the record now exists
                seg.off = off + size
                self.seq = seq
                if commit:
                    self.step = s + 1
        finally:
            lock.release()
        if bad:  # a value out of range: the slow path stores the rest and names it
            return self._log_slow(data, step, commit)
        return None

    # -- slow path --------------------------------------------------------
    def _log_slow(self, data: Any, step: Any, commit: bool) -> None:
        if self.hold:
            self._check_open()
        if not isinstance(data, Mapping):
            raise TypeError(f"log() takes a dict of key -> value, got {type(data).__name__}")
        step = _check_step(step)
        items: list[tuple[str, int, Any]] = []
        seen: set[str] = set()
        plain = True
        errors: list[tuple[str, Exception]] = []
        media: list[tuple[str, list[Any]]] = []
        for key, value in flatten(data):
            if key in seen:
                raise ValueError(f"log() key {key!r} appears twice after flattening nested dicts")
            seen.add(key)
            try:
                check_key(key)
                prepared = prepare_value(key, value)
                if prepared is not None:
                    media.append((key, prepared))
                    items.append((key, ValueType.MEDIA, prepared[0].kind))
                    plain = False
                    continue
                vtype, v = coerce(key, value)
            except (TypeError, ValueError, ImportError) as e:
                errors.append((key, e))
                continue
            except Exception as e:  # a value whose own methods raise (__float__, .shape): bad input (§5.4)
                errors.append((key, TypeError(f"log() value for key {key!r}: {type(e).__name__}: {e}")))
                continue
            if type(value) is not _PY_TYPE.get(vtype):
                plain = False
            items.append((key, vtype, v))
        if errors:
            if not items:  # nothing valid: the call has no effect, not even on the step
                if len(errors) == 1:
                    raise errors[0][1]
                raise LogValueError(errors, logged=False)
            self._log_items(data, items, media, step, commit, False)
            raise LogValueError(errors)
        self._log_items(data, items, media, step, commit, plain)

    def _log_items(self, data: Any, items: list[tuple[str, int, Any]], media: list[tuple[str, list[Any]]],
                   step: int | None, commit: bool, plain: bool) -> None:
        if len(items) > 65535:
            raise ValueError(f"log() got {len(items)} keys in one call; at most 65535 are allowed")
        if not items:
            if commit:
                with self.lock:
                    self._check_open()
                    if step is None and self.step > INT64_MAX:
                        raise _step_overflow()
                    self.step = (self.step if step is None else step) + 1
            return
        t = _time()
        fixed = all(vt in _FIXED for _, vt, _ in items)
        with self.lock:
            self._check_open()
            if step is None and self.step > INT64_MAX:
                raise _step_overflow()
            key_ids = [self._key_id(k) for k, _, _ in items]
            seq = self.seq + 1
            s = self.step if step is None else step
            if fixed:
                ent = self._entry(items, key_ids)
                if plain and type(data) is dict and tuple(data) == tuple(k for k, _, _ in items):
                    self.cache[(tuple(data), tuple(map(type, data.values())))] = ent
                    self.last = ent
                body = ent.body.pack(Kind.ROW, ent.schema_id, seq, s, t, *[v for _, _, v in items])
            else:
                gen = encode_generic_items([(kid, vt, v) for kid, (_, vt, v) in zip(key_ids, items)])
                body = GENERIC_PREFIX.pack(Kind.GENERIC, len(items), seq, s, t) + gen
            if not self._append(_record(body), len(items)):
                self.seq = seq
                if commit:
                    self.step = s + 1
                return
            self.seq = seq
            if commit:
                self.step = s + 1
            if media and self.media_sink is not None:
                self.media_sink(seq, s, t, media)  # under the lock: the sink sees media in seq order

    def close(self) -> None:
        """Refuse further records (finish()): a later log() raises RunFinishedError."""
        with self.lock:
            self.closed = True

    def mark_forked(self) -> None:
        """In a forked child: every call takes the slow path, which refuses it (spec §6.3). No lock:
        the fork may have copied it held."""
        self.forked = True
        self.hold = True

    def _check_open(self) -> None:
        if self.terminating:
            # SIGTERM: the final flush is running and the process exits next. Block
            # rather than accept a record no part will hold, or raise into training.
            threading.Event().wait()
        if self.forked:
            raise ForkedRunError(
                f"this run was started in process {self.pid}; a forked child cannot log to it — "
                "call runsync.init() in the child (same id, another stream) instead"
            )
        if self.closed:
            raise RunFinishedError("this run has finished; start a new run with runsync.init()")

    def _key_id(self, key: str) -> int:
        kid = self.key_ids.get(key)
        if kid is None:
            kid = len(self.key_ids)
            raw = key.encode("utf-8")
            self._define(_record(KEYDEF.pack(Kind.KEYDEF, kid, len(raw)) + raw))
            self.key_ids[key] = kid
        return kid

    def _entry(self, items: list[tuple[str, int, Any]], key_ids: list[int]) -> _Entry:
        sig = tuple((kid, int(vt)) for kid, (_, vt, _) in zip(key_ids, items))
        sid = self.schema_ids.get(sig)
        if sid is None:
            sid = len(self.schema_ids)
            body = SCHEMA_PREFIX.pack(Kind.SCHEMA, sid, len(sig)) + b"".join(SCHEMA_ITEM.pack(k, t) for k, t in sig)
            self._define(_record(body))
            self.schema_ids[sig] = sid
        fmt = ROW_PREFIX.format + "".join(VALUE_CODES[ValueType(t)] for _, t in sig)
        size = align8(8 + struct.calcsize(fmt))
        fmt += "x" * (size - 8 - struct.calcsize(fmt))
        keys = tuple(k for k, _, _ in items)
        return _Entry(tuple(_PY_TYPE[ValueType(t)] for _, t in sig), sid, struct.Struct(fmt), size, len(keys),
                      _getter(keys))

    def _define(self, record: bytes) -> None:
        """Write a KEYDEF/SCHEMA record; every later segment repeats all of them."""
        self.defs.append(record)
        if not put_record(self.seg, record) and self._switch(0) is None:
            # No segment holds this definition: make every later record switch
            # first (a new segment starts with all definitions) or be dropped.
            self.seg.cap = self.seg.off

    def write_meta(self, op: int, payload: Any) -> None:
        if self.hold:
            self._check_open()  # before the lock: a fork may have copied it held
        raw = encode_meta_payload(payload)
        with self.lock:
            self._check_open()
            seq = self.seq + 1
            body = META_PREFIX.pack(Kind.META, op, seq, _time(), len(raw)) + raw
            self._append(_record(body), 0)
            self.seq = seq

    # -- segments ---------------------------------------------------------
    def _append(self, record: bytes, rows: int) -> bool:
        if put_record(self.seg, record):
            return True
        seg = self._switch(len(record))
        if seg is None or not put_record(seg, record):
            self._drop(rows)
            return False
        return True

    def _switch(self, need: int) -> Segment | None:
        """Seal the current segment and continue in a spare (or memory) one."""
        nxt: Segment | None = None
        if self.spare and self.spare[0].cap - self.spare[0].off >= need + sum(map(len, self.defs[self.spare[0].defs :])):
            nxt = self.spare.popleft()
        if nxt is None:
            size = max(MEMORY_SEGMENT_SIZE, 2 * (need + sum(map(len, self.defs))))
            if self.memory_used + size > self.memory_limit:
                return None
            self.memory_used += size
            nxt = memory_segment(size, self.incarnation, self._next_segno)
            self._next_segno += 1
        for rec in self.defs[nxt.defs :]:
            put_record(nxt, rec)
        nxt.defs = len(self.defs)
        self.seg.sealed = True
        self.seg = nxt
        self.segs.append(nxt)
        self.on_switch()
        return nxt

    def take_segno(self) -> int:
        with self.lock:
            n = self._next_segno
            self._next_segno += 1
            return n

    def add_spare(self, seg: Segment) -> None:
        """Hand the writer a new file segment, with the definitions known so far."""
        with self.lock:
            defs = list(self.defs)
        for rec in defs:
            put_record(seg, rec)
        seg.defs = len(defs)
        with self.lock:
            self.spare.append(seg)
            cur = self.seg
            if cur is not None and not cur.durable and not self.closed and \
                    seg.cap - seg.off >= sum(map(len, self.defs[seg.defs:])):
                # leave a memory segment as soon as a file one is ready: records logged
                # from now on are durable again at once (spec §9.4)
                self._switch(0)

    def _drop(self, rows: int) -> None:
        self.dropped_rows += rows
        self.on_drop(rows)

    def release(self, seg: Segment) -> None:
        with self.lock:
            self.segs.remove(seg)
            if not seg.durable:
                self.memory_used -= seg.cap


def _step_overflow() -> ValueError:
    return ValueError("the next step would be 2**63, beyond int64; pass step= explicitly")


def _check_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int):
        item = getattr(step, "item", None)
        if item is not None and getattr(step, "shape", None) == () and isinstance(item(), int):
            step = item()
        else:
            raise TypeError(f"log() step must be an int, got {type(step).__name__}")
    if step < 0 or step > INT64_MAX:
        raise ValueError(f"log() step must be between 0 and 2**63-1, got {step}")
    return int(step)
