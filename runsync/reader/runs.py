"""``runsync.runs(dir)``: one row per run, from the small JSON documents only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..format.errors import FormatError
from ..format.layout import iter_run_dirs
from .run import RunView

__all__ = ["runs", "run_records", "flatten_dict", "find_run"]


def flatten_dict(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_records(root: str | Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """(one dict per readable run, [(dir, error)] for unreadable ones)."""
    records: list[dict[str, Any]] = []
    errors: list[tuple[Path, str]] = []
    for d in iter_run_dirs(Path(root)):
        try:
            view = RunView(d)
            meta = view.meta
            streams = meta["streams"]
            rec: dict[str, Any] = {
                "id": view.info.id,
                "name": view.info.name,
                "project": view.info.project,
                "group": view.info.group,
                "job_type": view.info.job_type,
                "tags": list(view.info.tags),
                "status": meta["status"],
                "created": view.info.created,
                "start": meta["started"],
                "duration": meta["duration"],
                "steps": max([s.get("last_step", -1) for s in streams] + [-1]) + 1,
                "streams": len(streams),
                "path": str(d),
            }
            config, summary = view.documents()
            rec.update(flatten_dict(config, "config."))
            rec.update(flatten_dict(summary, "summary."))
            records.append(rec)
        except (FormatError, OSError, ValueError) as e:
            errors.append((d, str(e)))
    return records, errors


def runs(root: str | Path | None = None) -> Any:
    """A pandas DataFrame with one row per run under ``root`` (default ``$RUNSYNC_DIR`` or ./runs).

    Columns: id, name, project, group, job_type, tags, status, created, start,
    duration (s), steps, streams, path, then ``config.*`` and ``summary.*``.
    """
    import pandas as pd

    root = Path(root if root is not None else os.environ.get("RUNSYNC_DIR") or "runs")
    records, _errors = run_records(root)
    df = pd.DataFrame.from_records(records)
    if not df.empty:
        for col in ("created", "start"):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
        df = df.sort_values("created", ascending=False, ignore_index=True)
    return df


def find_run(ref: str, root: str | Path | None = None) -> Path:
    """Resolve a run reference: a run directory, an id, a name, or ``latest``."""
    p = Path(ref)
    if (p / "run.json").is_file():
        return p
    base = Path(root if root is not None else os.environ.get("RUNSYNC_DIR") or "runs")
    dirs = iter_run_dirs(base)
    if ref == "latest" and dirs:
        return max(dirs, key=lambda d: (d / "run.json").stat().st_mtime)
    for d in dirs:
        if d.name == ref:
            return d
    matches = []
    for d in dirs:
        try:
            if RunView(d).info.name == ref:
                matches.append(d)
        except FormatError:
            continue
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise FormatError(f"several runs are named {ref!r}: {', '.join(m.name for m in matches)}; use the id")
    raise FormatError(f"no run {ref!r} under {base} (give a run directory, an id, a name, or 'latest')")
