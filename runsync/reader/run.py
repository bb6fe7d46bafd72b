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
from ..format.layout import HISTORY_DIR, SYSTEM_DIR, RunLayout, StreamLayout
from ..format.liveness import StreamState, host_identity, run_state, stream_state
from ..format.manifest import blob_path
from ..format.meta import Claim, ConfigDoc, RunInfo, SummaryDoc, deep_update, load_doc
from ..format.tail import filter_seq, stream_tails, wal_location
from ..format.wal import Columns

__all__ = ["RunView", "open_run", "UnreadableTailWarning"]


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
        ends = [s.get("ended") or s.get("heartbeat") for s in streams]
        out["started"] = min(started) if started else self.info.created
        ends = [e for e in ends if e is not None]
        out["duration"] = (max(ends) - out["started"]) if ends else 0.0
        out["streams"] = streams
        return out

    @property
    def status(self) -> str:
        """``running``, ``finished``, ``failed`` or ``crashed`` (spec §7.4)."""
        return run_state(self.layout)

    def streams(self) -> list[dict[str, Any]]:
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
                         dropped_rows=s.status.dropped_rows, durability=s.status.durability)
            else:
                d.update(started=s.claim.time, heartbeat=s.claim.time, durability=None)
            d["wal_dir"] = s.claim.wal_dir
            d["tail_visible"] = not _tail_unseen(st, s)
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

    def documents(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, summary) in one pass: each stream's documents and WAL tail are read once.

        Config merges over streams in the order they started (later streams
        win); summary takes, per key, the most recently set value (spec §3.3).
        """
        config: dict[str, Any] = {}
        best: dict[str, tuple[float, Any]] = {}
        for _t, _st, cfg, summ, tail in self._docs():
            cdoc = copy.deepcopy(cfg) if cfg is not None else ConfigDoc()
            cdoc.apply(tail.meta)
            deep_update(config, cdoc.config)
            sdoc = copy.deepcopy(summ) if summ is not None else SummaryDoc()
            sdoc.apply(tail)
            for k, v in sdoc.values.items():
                t = sdoc.time.get(k, 0.0)
                if k not in best or t >= best[k][0]:
                    best[k] = (t, v)
        return config, {k: v for k, (_t, v) in sorted(best.items())}

    @property
    def config(self) -> dict[str, Any]:
        """Config merged over streams in the order they started (later streams win)."""
        return self.documents()[0]

    @property
    def summary(self) -> dict[str, Any]:
        """Per key, the most recently set value over all streams (spec §3.3)."""
        return self.documents()[1]

    # -- history --------------------------------------------------------------------
    def _tails(self, st: StreamLayout, above: int) -> Columns:
        cols = Columns()
        found = stream_tails(st, above)
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
        tails = {st.name: self._tails(st, -1) for st in layout.streams()}
        parts = select_cover(list_parts(layout.history))
        tables = [read_part(p.path) for p in parts]
        hi: dict[str, int] = {}
        for p in parts:
            hi[p.stream] = max(hi.get(p.stream, -1), p.hi)
        for name, cols in tails.items():
            if cols.rows:
                tail = filter_seq(cols, hi.get(name, -1))
                if tail.rows:
                    tables.append(columns_to_table(tail, name))
        table = pa.concat_tables(tables) if tables else empty_table()
        if keys is not None:
            table = table.filter(pc.is_in(table.column("key"), pa.array(list(keys), pa.string())))
        return table

    def history(self, keys: list[str] | None = None, wide: bool = True, format: str = "pandas") -> Any:
        """Resolved history (spec §4.5): wide (one row per step) or long; pandas or Arrow.

        ``format="pandas"`` needs pandas (``pip install runsync[pandas]``); ``"arrow"`` does not.
        """
        return self._frame(HISTORY_DIR, keys, wide, format)

    def system(self, keys: list[str] | None = None, wide: bool = True, format: str = "pandas") -> Any:
        """System metrics (spec §14) like ``history()``: one row per sample, ``time`` its window end.

        Rows of all streams (ranks, hosts) are included; ``wide=False`` keeps the ``stream`` column.
        """
        return self._frame(SYSTEM_DIR, keys, wide, format)

    def _frame(self, table_name: str, keys: list[str] | None, wide: bool, format: str) -> Any:
        if format not in ("pandas", "arrow"):
            raise ValueError(f"format must be 'pandas' or 'arrow', got {format!r}")
        rows = self.rows(keys, table_name)
        if table_name == HISTORY_DIR:
            resolved = resolve(rows)
            table = to_wide(resolved, keys) if wide else resolved
        else:
            table = _per_stream(rows, keys, wide)
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
        """Media logged under ``key`` (spec §13), one ``MediaItem`` per item, by step then index.

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
        """The value each key had at its last resolved step."""
        resolved = resolve(self.rows())
        out: dict[str, Any] = {}
        for row in resolved.select(["key", "type", "value", "int", "text"]).to_pylist():
            out[row["key"]] = _row_value(row)
        return dict(sorted(out.items()))

    def __repr__(self) -> str:
        return f"<runsync.RunView {self.info.name} id={self.info.id} {self.path}>"


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
