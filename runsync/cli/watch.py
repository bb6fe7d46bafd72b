"""``runsync watch RUN``: follow a live run in the terminal until it ends.

On a terminal the screen is redrawn in place (ANSI home + clear) with a
sparkline per metric; otherwise (a pipe, a log file, CI) one plain line is
appended whenever the run reaches a new step. Rows are read as the runsync
reader reads them, WAL tails included, so values appear as soon as ``log()``
returned in the writer, not only when a part lands. History parts are
immutable (spec §4.1), so each is read once and kept; only the tails are
re-read on each refresh.

Exit status: 0 when the run finished (or on Ctrl-C), 1 when it failed or crashed.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import DEFAULT_DIR, REDUCE_CHOICES, fmt

__all__ = ["Follower", "Snapshot", "cmd_watch", "register"]

_HOME_CLEAR = "\033[H"
_CLEAR_LINE = "\033[K"
_CLEAR_BELOW = "\033[J"
_START_GRACE = 60.0


@dataclass
class Snapshot:
    """What one refresh saw."""

    record: dict[str, Any]
    series: dict[str, tuple[Any, Any]]  # line label -> (steps, values), resolved (one line per stream of a key)
    last: dict[str, Any]  # every watched key (and line label) -> its value at its last step
    step: int  # greatest step with a row, -1 if none
    numeric_keys: list[str] = field(default_factory=list)
    lines: dict[str, list[str]] = field(default_factory=dict)  # numeric key -> its line labels


class Follower:
    """Reads a run again and again, keeping immutable parts (spec §4.1) between reads."""

    def __init__(self, run_dir: Path, keys: list[str] | None = None, reduce: str | None = None) -> None:
        self.run_dir = run_dir
        self.keys = keys
        self.reduce = reduce  # a key several streams logged: one line reduced over them, else one per stream
        self._parts: dict[str, Any] = {}  # part path -> rows (filtered to keys)

    def _rows(self) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        from ..format.history import columns_to_table, empty_table, list_parts, read_part, select_cover
        from ..format.layout import RunLayout
        from ..format.tail import filter_seq, stream_tails
        from ..format.wal import Columns

        layout = RunLayout(self.run_dir)
        # Tails first, then parts: a part written meanwhile then hides the same rows of the tail (as RunView).
        tails: dict[str, Any] = {}
        for st in layout.streams():
            cols = Columns()
            for _inc, tail in stream_tails(st, -1, parts_dir=layout.history).tails:
                cols.extend(tail)
            tails[st.name] = cols
        parts = select_cover(list_parts(layout.history))
        keep = {str(p.path) for p in parts}
        for path in list(self._parts):
            if path not in keep:
                del self._parts[path]  # merged away (spec §4.4)
        tables = []
        hi: dict[str, int] = {}
        for p in parts:
            hi[p.stream] = max(hi.get(p.stream, -1), p.hi)
            key = str(p.path)
            if key not in self._parts:
                t = read_part(p.path)
                if self.keys is not None:
                    t = t.filter(pc.is_in(t.column("key"), pa.array(self.keys, pa.string())))
                self._parts[key] = t
            tables.append(self._parts[key])
        for name, cols in tails.items():
            if cols.rows:
                tail = filter_seq(cols, hi.get(name, -1))
                if tail.rows:
                    t = columns_to_table(tail, name)
                    if self.keys is not None:
                        t = t.filter(pc.is_in(t.column("key"), pa.array(self.keys, pa.string())))
                    tables.append(t)
        return pa.concat_tables(tables) if tables else empty_table()

    def poll(self) -> Snapshot:
        from ..format.history import resolve
        from ..reader.index import build_record
        from ..reader.run import last_values
        from ..reader.sparkline import numeric_lines

        record, _ = build_record(self.run_dir)
        for attempt in range(5):
            try:
                rows = self._rows()
                break
            except FileNotFoundError:  # a part merged away between listing and reading
                self._parts.clear()
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        resolved = resolve(rows)
        lines = numeric_lines(resolved, reduce=self.reduce)
        series = {label: (s, v) for ls in lines.values() for label, s, v in ls}
        last = last_values(resolved)[0]
        for ls in lines.values():
            if len(ls) > 1 or ls[0][0] not in last:
                last.update((label, float(v[-1])) for label, _s, v in ls)  # each stream's (or the reduced) line
        steps = resolved.column("step").to_numpy() if resolved.num_rows else []
        step = int(steps.max()) if len(steps) else -1
        return Snapshot(record, series, dict(sorted(last.items())), step, sorted(lines),
                        {k: [label for label, _s, _v in ls] for k, ls in lines.items()})


def _elapsed(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def _keys(snap: Snapshot, wanted: list[str] | None) -> list[str]:
    from ..reader.sparkline import choose_keys

    if wanted:
        return wanted
    summary = {k[len("summary."):]: v for k, v in snap.record.items() if k.startswith("summary.")}
    return choose_keys({k: max(len(snap.series[label][0]) for label in labels) for k, labels in snap.lines.items()},
                       summary)


def _labels(snap: Snapshot, key: str) -> list[str]:
    """The line labels of ``key``: itself for one stream, one per stream (or the reduced one) for several."""
    return snap.lines.get(key, [key] if key in snap.series else [])


def _frame(snap: Snapshot, keys: list[str], interval: float, width: int, spark_width: int) -> list[str]:
    from ..reader.sparkline import format_sparks, spark

    r = snap.record
    head = (f"{r['name']}  (id {r['id']})   {r['status']}   step {snap.step if snap.step >= 0 else '-'}   "
            f"elapsed {_elapsed(r['duration'])}   {time.strftime('%H:%M:%S')}")
    lines = [head, f"{r['path']}", ""]
    sparks = [spark(label, *snap.series[label], width=spark_width) for k in keys for label in _labels(snap, k)]
    lines += format_sparks(sparks)
    others = [k for k in keys if not _labels(snap, k) and k in snap.last]
    lines += [f"  {k} = {fmt(snap.last[k])}" for k in others]
    missing = [k for k in keys if not _labels(snap, k) and k not in snap.last]
    if missing:
        lines.append(f"  (not logged yet: {', '.join(missing)})")
    if not keys:
        lines.append("  (no numeric values logged yet)")
    lines += ["", f"refreshing every {interval:g} s; Ctrl-C to stop"]
    return [ln if len(ln) <= width else ln[: width - 1] + "…" for ln in lines]


def _line(snap: Snapshot, keys: list[str]) -> str:
    shown = [label for k in keys for label in (_labels(snap, k) or [k])]
    vals = "  ".join(f"{_compact(label)}={fmt(snap.last[label])}" for label in shown if label in snap.last)
    return f"step {snap.step}  {vals}".rstrip()


def _compact(label: str) -> str:
    """A line label for the one-line form: ``loss [rank3]`` → ``loss[rank3]``, ``loss (mean of 8 streams)`` →
    ``loss(mean)``."""
    return re.sub(r" \((mean|min|max) of [0-9]+ streams\)$", r"(\1)", label).replace(" [", "[", 1)


def _final(snap: Snapshot) -> str:
    r = snap.record
    return (f"run {r['name']} (id {r['id']}) {r['status']} after {_elapsed(r['duration'])}: "
            f"{r['steps']} steps")


def _starting(record: dict[str, Any]) -> bool:
    """Between run.json and the first claim a run reads as crashed (spec §7.4); give its writer a minute."""
    return record["streams"] == 0 and time.time() - record["created"] < _START_GRACE


def cmd_watch(args: argparse.Namespace) -> int:
    from ..format.meta import State
    from ..reader.runs import find_run

    run_dir = find_run(args.run, args.dir)
    follower = Follower(run_dir, args.keys, args.reduce)
    tty = sys.stdout.isatty()
    out = sys.stdout
    last_step: int | None = None
    try:
        snap = follower.poll()
        if not tty:
            r = snap.record
            print(f"watching {r['name']} (id {r['id']}) in {run_dir}: {r['status']}", flush=True)
        while True:
            keys = _keys(snap, args.keys)
            status = snap.record["status"]
            if tty:
                width = shutil.get_terminal_size((100, 24)).columns
                frame = _frame(snap, keys, args.interval, width, args.spark_width)
                out.write(_HOME_CLEAR + "".join(ln + _CLEAR_LINE + "\n" for ln in frame) + _CLEAR_BELOW)
                out.flush()
            elif snap.step != last_step and snap.step >= 0:
                print(_line(snap, keys), flush=True)
            last_step = snap.step
            if status != State.RUNNING and not _starting(snap.record):
                print(_final(snap), flush=True)
                return 0 if status == State.FINISHED else 1
            time.sleep(args.interval)
            snap = follower.poll()
    except KeyboardInterrupt:
        print("" if tty else "interrupted", flush=True)
        return 0


def register(sub: Any) -> None:
    w = sub.add_parser(
        "watch", help="follow a live run in the terminal",
        description="Follow a run while it is written: on a terminal, redraw a summary with a sparkline per "
        "metric every --interval seconds; otherwise print one line per new step. Values show as soon as the "
        "writer's log() returned (the WAL tail is read, not only history parts). Exits when the run is no "
        "longer running — status 0 if it finished, 1 if it failed or crashed — or on Ctrl-C (status 0).")
    w.add_argument("run", help="run directory, id, name, or 'latest'")
    w.add_argument("--dir", help=f"directory of runs to look in (default {DEFAULT_DIR})")
    w.add_argument("--interval", type=_positive, default=2.0, metavar="S",
                   help="seconds between refreshes, e.g. --interval 0.5 (default 2)")
    w.add_argument("--keys", nargs="+", metavar="KEY",
                   help="keys to show, e.g. --keys train/loss val/acc (default: up to 8 numeric keys: those in the "
                   "summary first, then the most often logged)")
    w.add_argument("--spark-width", type=int, default=40, metavar="N", help="characters per sparkline (default 40)")
    w.add_argument("--reduce", choices=REDUCE_CHOICES, metavar="HOW",
                   help="a key several streams (ranks) logged: one line of the mean, min or max over the streams "
                   "per step instead of one per stream, e.g. --reduce mean")
    w.set_defaults(func=cmd_watch)


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0 or math.isinf(v):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return v
