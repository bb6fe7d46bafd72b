"""runsync runs → W&B offline run directories, written by the real ``wandb`` package in offline mode (issue 17).

``wandb sync DIR`` uploads them to W&B cloud or a W&B server. Each resolved
history step becomes one ``log(..., step=s)`` with W&B's ``_timestamp`` set
to the row's time, so W&B keeps runsync's steps and times; media go in as
W&B media at their steps; config, name, project, group, tags, notes and job
type in ``wandb.init``; summary values set by hand as summary; saved files
with ``wandb.save``; the exit code from the run's state. W&B's writer stamps
the run's start time itself (the export's time).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .sink import ConvertError

__all__ = ["write_offline_run"]


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise ConvertError("this needs the 'wandb' package: pip install 'runsync[wandb]'") from None
    return wandb


def _media(wandb: Any, item: Any) -> Any:
    import numpy as np

    v = item.value
    if item.kind == "image":
        return wandb.Image(np.asarray(v), caption=item.caption)
    if item.kind == "histogram":
        return wandb.Histogram(np_histogram=(np.asarray(v.counts).tolist(), np.asarray(v.edges).tolist()))
    if item.kind == "table":
        df = v if hasattr(v, "columns") else v.to_pandas()
        return wandb.Table(dataframe=df)
    if item.kind == "text":
        return v
    return None


def _rows(view: Any, notes: list[str]) -> dict[int, dict[str, Any]]:
    """Step → {key: value, "_timestamp": time} from the resolved wide history (one stream)."""
    from ..format.values import ValueType

    long = view.history(wide=False, format="arrow")
    streams = sorted(set(long.column("stream").to_pylist()))
    keep = streams[:1]
    if len(streams) > 1:
        from ..format.layout import stream_order

        keep = [min(streams, key=stream_order)]
        notes.append(f"{view.id}: W&B runs have one row per step; exported stream {keep[0]!r} only "
                     f"(of {', '.join(streams)})")
    out: dict[int, dict[str, Any]] = {}
    for step, t, key, vtype, value, ival, text, stream in zip(
            long.column("step").to_pylist(), long.column("time").cast("int64").to_pylist(),
            long.column("key").to_pylist(), long.column("type").to_pylist(), long.column("value").to_pylist(),
            long.column("int").to_pylist(), long.column("text").to_pylist(), long.column("stream").to_pylist()):
        if stream not in keep:
            continue
        row = out.setdefault(step, {"_timestamp": t / 1e6})
        row["_timestamp"] = max(row["_timestamp"], t / 1e6)
        if vtype == ValueType.FLOAT:
            row[key] = value
        elif vtype == ValueType.INT:
            row[key] = ival
        elif vtype == ValueType.BOOL:
            row[key] = bool(value)
        elif vtype == ValueType.STRING:
            row[key] = text
        elif vtype == ValueType.NULL:
            row[key] = None
    return out


def write_offline_run(view: Any, out_dir: Path) -> tuple[Path, list[str]]:
    """Write ``view`` as one W&B offline run under ``out_dir/wandb/``; (its directory, notes)."""
    wandb = _wandb()
    notes: list[str] = []
    info = view.info
    rows = _rows(view, notes)
    for key in view.media_keys():
        for item in view.media(key):
            m = _media(wandb, item)
            if m is None:
                notes.append(f"{view.id}: {item.kind} media of key {key!r} not exported")
                continue
            row = rows.setdefault(item.step, {"_timestamp": item.time.timestamp()})
            if item.index == 0:
                row[key] = m
            else:
                row[f"{key}/{item.index}"] = m
    os.makedirs(out_dir, exist_ok=True)
    settings = wandb.Settings(x_disable_stats=True, console="off", save_code=False, silent=True,
                              x_disable_meta=True, disable_git=True)
    state = view.status
    try:
        run = wandb.init(mode="offline", dir=str(out_dir), id=view.id, name=info.name, project=info.project,
                         config=view.config, tags=list(info.tags) or None, group=info.group, job_type=info.job_type,
                         notes=info.notes, settings=settings, reinit="create_new")
    except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
        raise ConvertError(f"wandb could not start an offline run for {view.id} in {out_dir}: {e}") from None
    try:
        last: dict[str, Any] = {}
        for step in sorted(rows):
            run.log(rows[step], step=step)
            last.update({k: v for k, v in rows[step].items() if not k.startswith("_")})
        for k, v in view.summary.items():
            if isinstance(v, (bool, int, float, str)) and (k not in last or last[k] != v):
                run.summary[k] = v  # set by hand in runsync, or never logged
        files_dir = Path(run.dir)
        for name in sorted(view.files()):
            src = view.file_path(name)
            dst = files_dir / name
            if src.exists() and not dst.exists():
                os.makedirs(dst.parent, exist_ok=True)
                shutil.copyfile(src, dst)
                run.save(str(dst), base_path=str(files_dir), policy="now")
        run_dir = files_dir.parent
    finally:
        run.finish(exit_code=1 if state == "failed" else 0)
    if state in ("running", "crashed"):
        notes.append(f"{view.id} is {state}; exported what it holds, as finished")
    return run_dir, notes
