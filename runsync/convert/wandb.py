"""W&B offline runs ↔ runsync runs (issue 17), with W&B's own protobuf classes (``wandb.proto``).

Import decodes each ``run-<id>.wandb`` (framing: ``wandb_log``) into W&B's
``Record`` messages: history rows at their ``_step`` and ``_timestamp``,
config (W&B's ``{"value": …}`` wrapping removed), summary, the run's name, id,
project, group, tags, notes and job type, system metrics (``stats``) into the
system table, console output, media from the run's ``files/media/`` (images,
histograms, tables) and the other files under ``files/`` as saved files. All
``.wandb`` files of one run id (a resumed run) become one runsync run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .sink import ConvertError, ImportedRun, Source
from .wandb_log import read_records

__all__ = ["export_run", "find_logs", "read_runs"]


def _pb() -> Any:
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        raise ConvertError("this needs the 'wandb' package: pip install 'runsync[wandb]'") from None
    return wandb_internal_pb2


def find_logs(source: Path) -> list[Path]:
    """The ``.wandb`` files of ``source``: a .wandb file, a run directory, or a wandb/ folder of many."""
    if not source.exists():
        raise ConvertError(f"{source}: no such file or directory")
    if source.is_file():
        return [source]
    found = sorted(p for p in source.glob("*.wandb") if p.is_file())
    if not found:
        found = sorted(p for p in source.glob("*/*.wandb") if p.is_file())
    found = sorted({p.resolve(): None for p in found})  # wandb/latest-run is a symlink to one of them
    if not found:
        raise ConvertError(f"{source}: no W&B run logs (run-<id>.wandb) in it or in its run directories "
                           "(offline-run-*, run-*)")
    return found


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _items(items: Any) -> dict[str, Any]:
    """History/summary/config items (``key`` or ``nested_key`` with ``value_json``) → a nested dict."""
    out: dict[str, Any] = {}
    for it in items:
        path = list(getattr(it, "nested_key", ())) or [it.key]
        d = out
        for k in path[:-1]:
            nxt = d.get(k)
            if not isinstance(nxt, dict):
                nxt = d[k] = {}
            d = nxt
        d[path[-1]] = _json(it.value_json)
    return out


def _unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """W&B config values as given: ``{"value": v, "desc": …}`` → ``v``; W&B's own ``_wandb`` key dropped."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if k == "_wandb":
            continue
        if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"}:
            v = v["value"]
        out[k] = v
    return out


def _ts(t: Any) -> float:
    return float(t.seconds) + float(t.nanos) / 1e9


class _Reader:
    """Accumulates one W&B run from its .wandb files, in order."""

    def __init__(self, uri: str, run_id: str, project: str | None) -> None:
        self.run = ImportedRun(source=Source("wandb", uri, run_id), name=run_id, state="running")
        self.project = project
        self.summary: dict[str, Any] = {}
        self.console = ""
        self.n_stats = 0
        self.files: dict[str, Path] = {}
        self.notes: dict[str, None] = {}

    def add_file(self, log: Path) -> None:
        pb = _pb()
        files_dir = log.parent / "files"
        run = self.run
        start: float | None = None
        for raw in read_records(log.read_bytes(), str(log), run.skipped):
            try:
                rec = pb.Record.FromString(raw)
            except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
                run.skipped.append(f"{log}: a record W&B's Record class cannot parse ({type(e).__name__})")
                continue
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                r = rec.run
                run.name = r.display_name or run.name
                run.project = self.project or r.project or "default"
                run.group = r.run_group or run.group
                run.job_type = r.job_type or run.job_type
                run.notes = r.notes or run.notes
                run.tags = list(r.tags) or run.tags
                start = _ts(r.start_time) if r.HasField("start_time") else None
                if start is not None and (run.created is None or start < run.created):
                    run.created = start
                run.config.update(_unwrap(_items(r.config.update)))
                self.summary.update(_items(r.summary.update))
            elif kind == "config":
                run.config.update(_unwrap(_items(rec.config.update)))
            elif kind == "history":
                self._history(rec.history, files_dir)
            elif kind == "summary":
                self.summary.update(_items(rec.summary.update))
                for it in rec.summary.remove:
                    self.summary.pop((list(it.nested_key) or [it.key])[0], None)
            elif kind == "stats":
                t = _ts(rec.stats.timestamp)
                for k, v in _items(rec.stats.item).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        run.system.append((self.n_stats, t, k, float(v)))
                self.n_stats += 1
            elif kind in ("output_raw", "output"):
                self.console += getattr(rec, kind).line
            elif kind == "exit":
                run.state = "finished" if rec.exit.exit_code == 0 else "failed"
                run.error = None if rec.exit.exit_code == 0 else f"W&B exit code {rec.exit.exit_code}"
                if start is not None:
                    run.ended = start + rec.exit.runtime
        for p in sorted(files_dir.rglob("*")) if files_dir.is_dir() else []:
            rel = p.relative_to(files_dir).as_posix()
            if p.is_file() and not rel.startswith("media/"):
                self.files[rel] = p

    def _history(self, h: Any, files_dir: Path) -> None:
        row = _items(h.item)
        step = row.pop("_step", None)
        step = int(step) if isinstance(step, (int, float)) else int(h.step.num)
        t = row.pop("_timestamp", None)
        if not isinstance(t, (int, float)):
            self.run.skipped.append(f"history row at step {step}: no _timestamp; not imported")
            return
        row.pop("_runtime", None)
        for key, value in row.items():
            self._value(step, float(t), key, value, files_dir)

    def _value(self, step: int, t: float, key: str, value: Any, files_dir: Path) -> None:
        run = self.run
        if isinstance(value, dict) and "_type" in value:
            media = _media(value, files_dir)
            if media is None:
                self.notes.setdefault(f"key {key!r}: W&B {value['_type']} values are not imported")
            elif media:
                run.media.append((step, t, key, media))
        elif isinstance(value, dict):
            for k, v in value.items():
                self._value(step, t, f"{key}/{k}", v, files_dir)
        elif value is None or isinstance(value, (bool, int, float, str)):
            run.rows.append((step, t, key, value))
        elif isinstance(value, list) and all(isinstance(v, dict) and v.get("_type") for v in value):
            self.notes.setdefault(f"key {key!r}: lists of W&B media are not imported")
        else:
            self.notes.setdefault(f"key {key!r}: {type(value).__name__} values are not imported")

    def finish(self) -> ImportedRun:
        run = self.run
        run.summary = {k: v for k, v in _flat_summary(self.summary).items() if not k.startswith("_")}
        lines = self.console.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        run.console = [line.rsplit("\r", 1)[-1] for line in lines]
        run.files = sorted(self.files.items())
        run.skipped.extend(self.notes)
        if run.state == "running":
            run.error = ("the W&B log has no exit record: the run crashed, or was still running when imported "
                         "(import again to add the rest)")
        return run


def _flat_summary(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in summary.items():
        if isinstance(v, dict) and "_type" not in v:
            out.update(_flat_summary(v, f"{prefix}{k}/"))
        elif not isinstance(v, (dict, list)):
            out[f"{prefix}{k}"] = v
    return out


def _media(value: dict[str, Any], files_dir: Path) -> list[Any] | None:
    """A W&B media value → runsync media (image, histogram, table); None for kinds not imported."""
    from ..writer import Histogram, Image, Table

    kind = value["_type"]
    if kind == "image-file":
        return [Image(str(files_dir / value["path"]), caption=value.get("caption"))]
    if kind == "images/separated":
        caps = value.get("captions") or [None] * len(value.get("filenames", []))
        return [Image(str(files_dir / "media" / "images" / f), caption=c)
                for f, c in zip(value.get("filenames", []), caps)]
    if kind == "histogram":
        if "packedBins" in value:
            pb = value["packedBins"]
            edges = [pb["min"] + i * pb["size"] for i in range(pb["count"] + 1)]
        else:
            edges = value["bins"]
        counts = value["values"]
        if len(edges) != len(counts) + 1 or not all(math.isfinite(e) for e in edges):
            return []
        return [Histogram((counts, edges))]
    if kind == "table-file":
        doc = json.loads((files_dir / value["path"]).read_text())
        return [Table(columns=list(doc.get("columns", [])), rows=[list(r) for r in doc.get("data", [])])]
    return None


def _run_id(log: Path) -> str:
    name = log.stem
    return name.removeprefix("run-")


def read_runs(source: Path, project: str | None = None) -> Iterator[ImportedRun]:
    """One ImportedRun per W&B run id under ``source``; a resumed run's files in directory order."""
    _pb()
    by_id: dict[str, list[Path]] = {}
    for log in find_logs(source):
        by_id.setdefault(_run_id(log), []).append(log)
    uri = str(source.resolve())
    for run_id, logs in sorted(by_id.items()):
        reader = _Reader(uri, run_id, project)
        for log in sorted(logs, key=lambda p: p.parent.name):
            reader.add_file(log)
        yield reader.finish()


def export_run(view: Any, out_dir: Path) -> tuple[Path, list[str]]:
    from .wandb_export import write_offline_run

    return write_offline_run(view, out_dir)
