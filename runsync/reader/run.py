"""Reading one run: ``runsync.open_run(path)`` (spec §3, §4, §7, §8.5).

Reads parts and — read-only — the WAL tails of live or crashed writers, so a
run being written reads as complete as its writer's last log() call.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..format.errors import NotARunError
from ..format.files import FileEntry, FilesDoc, object_path
from ..format.history import columns_to_table, empty_table, list_parts, read_part, resolve, select_cover, to_wide
from ..format.layout import HISTORY_DIR, SYSTEM_DIR, RunLayout, StreamLayout, stream_order
from ..format.liveness import StreamState, host_identity, run_state, stream_state
from ..format.manifest import blob_path
from ..format.meta import Claim, ConfigDoc, RunInfo, State, SummaryDoc, deep_update, load_doc
from ..format.recovery import scan_stream
from ..format.tail import filter_seq, stream_tails, wal_location
from ..format.wal import Columns
from .streams import REDUCTIONS, check_streams, first_by_stream, reduce_over_streams, select_streams, shares_keys

__all__ = ["RunView", "UnreadableTailWarning", "open_run"]


class UnreadableTailWarning(UserWarning):
    """A live or crashed stream keeps its WAL on another host's disk: this read shows its parts only (§8.5)."""

_RETRIES = 5


def open_run(path: str | Path, storage_options: dict[str, Any] | None = None) -> RunView:
    """Open a run for reading: a run directory, or ``REMOTE/<run id>`` on a remote a push wrote
    (``s3://bucket/runs/abc123``; read through a verified local cache, see reader.remote).
    Raises NotARunError if ``path`` is not a run."""
    from .remote import as_path, fetch_run, is_url

    if is_url(path):
        return RunView(fetch_run(str(path), storage_options))
    p = as_path(path)
    if not p.is_dir():
        raise NotARunError("no such run directory", p)
    return RunView(p)


def _load_optional(cls: Any, path: Path) -> Any:
    try:
        return load_doc(cls, path)
    except FileNotFoundError:
        return None


class RunView:
    """A read-only view of a run directory. Each call re-reads the files, so a live run is followed."""

    def __init__(self, path: Path) -> None:
        self.layout = RunLayout(path)
        self.path = path
        self.info: RunInfo = load_doc(RunInfo, self.layout.run_json)

    # -- identity -----------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def meta(self) -> dict[str, Any]:
        """run.json as a dict, plus state and the streams' timing."""
        out = asdict(self.info)
        out["status"] = self.status
        streams = self.streams()
        started = [s["started"] for s in streams if s.get("started") is not None]
        ends = [max(s.get("ended") or s.get("heartbeat") or float("-inf"), s.get("last_time", float("-inf")))
                for s in streams]
        out["started"] = min(started) if started else self.info.created
        ends = [e for e in ends if e != float("-inf")]
        out["duration"] = (max(ends) - out["started"]) if ends else 0.0
        out["streams"] = streams
        return out

    @property
    def status(self) -> str:
        """``running``, ``finished``, ``failed`` or ``crashed`` (spec §7.4)."""
        return run_state(self.layout)

    def streams(self) -> list[dict[str, Any]]:
        """Each stream's state and status (spec §7.2): ``error`` is a failed stream's cause, else the
        writer's last reported problem."""
        out = []
        for st in self.layout.streams():
            s = stream_state(st)
            if s is None:
                continue
            d: dict[str, Any] = {"stream": s.stream, "state": s.state, "incarnation": s.incarnation,
                                 "host": s.claim.host, "pid": s.claim.pid}
            if s.status is not None and s.status.incarnation == s.incarnation:
                d.update(started=s.status.started, heartbeat=s.status.heartbeat, ended=s.status.ended,
                         exit_code=s.status.exit_code, last_step=s.status.last_step,
                         dropped_rows=s.status.dropped_rows, error=s.status.error,
                         durability=s.status.durability)
            else:
                d.update(started=s.claim.time, heartbeat=s.claim.time, durability=None)
            d["wal_dir"] = s.claim.wal_dir
            d["tail_visible"] = not _tail_unseen(st, s)
            if s.state == State.CRASHED and (st.segments() or s.claim.wal_dir):
                # A dead writer's status is as old as its last heartbeat; its later rows are in its tail (§8.5).
                h = scan_stream(self.layout, st)
                d["last_step"] = max(d.get("last_step", -1), h.max_step)
                d["last_time"] = h.max_time
            out.append(d)
        return out

    # -- config and summary ---------------------------------------------------------
    def _docs(self) -> list[tuple[float, StreamLayout, ConfigDoc | None, SummaryDoc | None, Columns]]:
        out = []
        for st in self.layout.streams():
            incs = st.incarnations()
            if not incs:
                continue
            first = load_doc(Claim, st.claim(incs[0])).time
            cfg = _load_optional(ConfigDoc, st.config)
            summ = _load_optional(SummaryDoc, st.summary)
            above = min(d.applied_seq for d in (cfg, summ) if d is not None) if (cfg or summ) else -1
            tail = self._tails(st, above)
            out.append((first, st, cfg, summ, tail))
        return sorted(out, key=lambda x: x[0])

    def documents_by_stream(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(config, {stream: that stream's summary}) in one pass: each stream's documents and WAL
        tail are read once. Config merges over streams in the order they started (later streams win)."""
        config: dict[str, Any] = {}
        summaries: dict[str, dict[str, Any]] = {}
        for _t, st, cfg, summ, tail in self._docs():
            cdoc = copy.deepcopy(cfg) if cfg is not None else ConfigDoc()
            cdoc.apply(tail.meta)
            deep_update(config, cdoc.config)
            sdoc = copy.deepcopy(summ) if summ is not None else SummaryDoc()
            sdoc.apply(tail)
            summaries[st.name] = dict(sdoc.values)
        return config, summaries

    def documents(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, summary): the summary merged over streams by the rule of spec §3.3 — per key, the
        value of the first stream in reader order (``main``, then ``rank0``, ``rank1``, ...)."""
        config, summaries = self.documents_by_stream()
        return config, first_by_stream(summaries)[0]

    @property
    def config(self) -> dict[str, Any]:
        """Config merged over streams in the order they started (later streams win)."""
        return self.documents()[0]

    @property
    def summary(self) -> dict[str, Any]:
        """Per key, the value of the first stream in reader order that has it (spec §3.3);
        ``stream_summaries()`` gives every stream's own."""
        return self.documents()[1]

    def stream_summaries(self) -> dict[str, dict[str, Any]]:
        """Each stream's own summary (spec §3.3), by stream in reader order."""
        summaries = self.documents_by_stream()[1]
        return {k: summaries[k] for k in sorted(summaries, key=stream_order)}

    # -- history --------------------------------------------------------------------
    def _tails(self, st: StreamLayout, above: int, parts_dir: Path | None = None) -> Columns:
        cols = Columns()
        found = stream_tails(st, above, parts_dir=parts_dir or self.layout.history)
        for _inc, tail in found.tails:
            cols.extend(tail)
        if found.unseen:
            s = stream_state(st)
            if s is not None and _tail_unseen(st, s):
                c = s.claim
                warnings.warn(
                    f"run {self.info.id} stream {st.name!r} ({s.state}) keeps its write-ahead log in {c.wal_dir} on "
                    f"host {c.host}, which this host cannot read: its rows since the last history part (at most the "
                    "writer's part_interval) are not shown here; read the run on that host to see them",
                    UnreadableTailWarning, stacklevel=3)
        return cols

    def rows(self, keys: list[str] | None = None, table: str = HISTORY_DIR) -> pa.Table:
        """Every stored row of ``table`` in long form (spec §4.2), unresolved, parts plus WAL tails."""
        layout = self.layout.with_table(table)
        for attempt in range(_RETRIES):
            try:
                return self._rows(keys, layout)
            except FileNotFoundError:
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))  # a part was merged away while we read
        raise AssertionError("unreachable")

    def _rows(self, keys: list[str] | None, layout: RunLayout) -> pa.Table:
        # Tails first, then parts: a part written meanwhile then hides the same rows of the tail.
        tails = {st.name: self._tails(st, -1, layout.history) for st in layout.streams()}
        parts = select_cover(list_parts(layout.history))
        tables = [read_part(p.path, keys=None if keys is None else list(keys)) for p in parts]
        hi: dict[str, int] = {}
        for p in parts:
            hi[p.stream] = max(hi.get(p.stream, -1), p.hi)
        for name, cols in tails.items():
            if cols.rows:
                tail = filter_seq(cols, hi.get(name, -1))
                if tail.rows:
                    t = columns_to_table(tail, name)
                    if keys is not None:  # parts were read for the keys already (read_part)
                        t = t.filter(pc.is_in(t.column("key"), pa.array(list(keys), pa.string())))
                    tables.append(t)
        return pa.concat_tables(tables) if tables else empty_table()

    def history(self, keys: list[str] | None = None, wide: bool = True, format: str = "pandas",
                streams: list[str] | None = None, reduce: str | None = None) -> Any:
        """Resolved history (spec §4.5): wide (one row per step) or long; pandas or Arrow.

        Repeats within a stream resolve (the last call wins); values of different
        streams (ranks) are all kept. The wide form (spec §4.6) is ``step``,
        ``time``, a column per key — one row per step when the rows read come
        from one stream, or from several that share no key (a main and an eval
        stream). When some key has rows of several streams, it has one row per
        (stream, step) and a ``stream`` column after ``step`` (§4.6, since 1.3),
        like ``system()``.

        ``streams``: only these streams (a list of names; ValueError naming the
        run's streams if one is not among them); one selected stream gives the
        single-stream form. ``reduce``: ``"mean"``, ``"min"`` or ``"max"`` — one
        row per step, each numeric key reduced over the streams that have a value
        there (a NaN value gives NaN); bool and string keys take the first stream's
        value in reader order (``reader.streams.reduce_over_streams``). Needs ``wide``.

        ``format="pandas"`` needs pandas (``pip install runsync[pandas]``); ``"arrow"`` does not.
        """
        _check_format(format)
        if reduce is not None and not wide:
            raise ValueError("history(reduce=...) gives the wide form; drop wide=False, or group the long "
                             "form yourself (e.g. df.groupby(['step', 'key'])['value'].mean())")
        if reduce is not None and reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduce!r}")
        if streams is not None:
            streams = check_streams(streams, [st.name for st in self.layout.streams()], self.info.id)
        rows = select_streams(self.rows(keys), streams)  # keys read only where they are (§4.2)
        resolved = resolve(rows)
        if reduce is not None:
            table = reduce_over_streams(to_wide(resolved, keys, by_stream=True), reduce)
        elif wide:
            table = to_wide(resolved, keys, by_stream=shares_keys(rows))
        else:
            table = resolved
        return _as_format(table, format)

    def system(self, keys: list[str] | None = None, wide: bool = True, format: str = "pandas") -> Any:
        """System metrics (spec §14) like ``history()``: one row per sample, ``time`` its window end.

        Rows of all streams (ranks, hosts) are included; ``wide=False`` keeps the ``stream`` column.
        """
        _check_format(format)
        return _as_format(_per_stream(self.rows(keys, SYSTEM_DIR), keys, wide), format)

    def files(self, versions: bool = False) -> dict[str, Any] | list[Any]:
        """Saved files (spec §13.5): name → latest ``FileEntry`` over all streams; with
        ``versions=True`` every save, oldest first. ``file_path(name)`` is where its bytes are."""
        entries: list[FileEntry] = []
        for st in self.layout.streams():
            try:
                entries.extend(load_doc(FilesDoc, st.dir / "files.json").files)
            except FileNotFoundError:
                continue
        entries.sort(key=lambda e: e.time)
        if versions:
            return entries
        return FilesDoc(files=entries).latest()

    def file_path(self, name: str) -> Path:
        """Local path of the latest saved content of ``name`` (raises KeyError if never saved)."""
        entry = self.files().get(name)  # type: ignore[union-attr]
        if entry is None:
            raise KeyError(f"no saved file {name!r} in run {self.info.id}")
        local = self.path / object_path(entry.sha256)
        pushed = self.path.parent / blob_path(entry.sha256)  # a pushed copy read in place (spec §12.1.1)
        return pushed if not local.exists() and pushed.exists() else local

    def media(self, key: str) -> list[Any]:
        """Media logged under ``key`` (spec §13), one ``MediaItem`` per item, by step, stream, then index.

        ``item.value`` decodes on access: image → numpy array, histogram →
        ``HistogramData``, table → DataFrame, text → str.
        """
        from .media import media_items

        return media_items(self.path, self.rows([key]), key)

    def media_keys(self) -> list[str]:
        """Keys that hold media."""
        from .media import media_keys

        return media_keys(self.rows())

    def keys(self) -> list[str]:
        return sorted(set(self.rows().column("key").to_pylist()))

    def last_values(self) -> dict[str, Any]:
        """The value each key had at its last resolved step; a key several streams logged takes the
        first of those streams in reader order (``main``, ``rank0``, ...; as the summary, spec §3.3)."""
        return last_values(resolve(self.rows()))[0]

    def __repr__(self) -> str:
        return f"<runsync.RunView {self.info.name} id={self.info.id} {self.path}>"


def _check_format(format: str) -> None:
    if format not in ("pandas", "arrow"):
        raise ValueError(f"format must be 'pandas' or 'arrow', got {format!r}")


def _as_format(table: pa.Table, format: str) -> Any:
    """An Arrow result as the caller asked: Arrow as is, or pandas with nullable int and bool columns."""
    if format == "arrow":
        return table
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError("history(format='pandas') needs pandas: pip install 'runsync[pandas]', "
                          "or pass format='arrow'") from None
    import pandas as pd

    # Nullable dtypes keep ints exact and bools boolean where a key is absent at some steps.
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    df = table.to_pandas(types_mapper=mapping.get)
    if "step" in df.columns:
        df["step"] = df["step"].astype("int64")
    return df


def last_values(resolved: pa.Table) -> tuple[dict[str, Any], dict[str, str]]:
    """Resolved rows → ({key: value at its last step}, {key: stream it came from, for keys whose
    streams' last values differ}). Several streams: the first in reader order wins (spec §3.3)."""
    per: dict[str, dict[str, Any]] = {}
    if resolved.num_rows:
        for row in resolved.select(["key", "type", "value", "int", "text", "stream"]).to_pylist():
            per.setdefault(row["stream"], {})[row["key"]] = _row_value(row)
    return first_by_stream(per)


def _per_stream(rows: pa.Table, keys: list[str] | None, wide: bool) -> pa.Table:
    """Resolve each stream on its own (spec §14: samples of different processes never replace each other)."""
    names = sorted(set(rows.column("stream").to_pylist()))
    if not names:
        return to_wide(resolve(rows), keys) if wide else resolve(rows)
    out = []
    for name in names:
        resolved = resolve(rows.filter(pc.equal(rows.column("stream"), name)))
        if wide:
            w = to_wide(resolved, keys)
            resolved = w.add_column(1, "stream", pa.array([name] * w.num_rows, pa.string()))
        out.append(resolved)
    return pa.concat_tables(out, promote_options="default")


def _row_value(row: dict[str, Any]) -> Any:
    t = row["type"]
    if t == 1:
        return row["value"]
    if t == 2:
        return row["int"]
    if t == 3:
        return bool(row["value"])
    if t == 4:
        return row["text"]
    if t == 5:
        return f"<{row['text']}>"
    return None



def _tail_unseen(st: StreamLayout, s: StreamState) -> bool:
    """The latest incarnation may hold rows no part has, in a WAL this host cannot read (spec §8.5)."""
    if s.claim.wal_dir is None or s.state in ("finished", "failed"):
        return False
    return wal_location(st, s.claim, host_identity()[0]) is None
