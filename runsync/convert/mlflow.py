"""MLflow runs ↔ runsync runs (issue 17), through the ``mlflow`` package's own client.

Import reads any tracking URI MLflow's client reads: the deprecated ``mlruns/``
file store (read with ``MLFLOW_ALLOW_FILE_STORE``, which MLflow 3 asks for), a
sqlite database, or a tracking server. Export writes one MLflow run per
runsync run, found again by its ``runsync.run_id`` tag, so exporting twice
updates the run instead of adding one.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .sink import ConvertError, ImportedRun, Source

__all__ = ["RUN_ID_TAG", "client", "export_run", "read_runs"]

RUN_ID_TAG = "runsync.run_id"
_BATCH = 1000  # MLflow's limit of metrics per log_batch
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-. /]+$")  # MLflow's metric/param name rule
_STATE = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed", "RUNNING": "running",
          "SCHEDULED": "running"}


def _uri(uri: str) -> str:
    """A tracking URI for MLflow: a plain path (an ``mlruns/`` file store) made absolute."""
    if "://" in uri or uri.startswith(("sqlite:", "databricks")):
        return uri
    p = Path(uri).resolve()
    if not p.exists():
        raise ConvertError(f"{uri}: no such directory (an MLflow file store is a directory such as ./mlruns)")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    return p.as_uri()


def client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConvertError("this needs the 'mlflow' package: pip install 'runsync[mlflow]'") from None
    return MlflowClient(tracking_uri=_uri(uri))


def _param(text: str) -> Any:
    """MLflow keeps params as text: JSON numbers, booleans, lists and objects come back as values
    (Python's ``True``/``False``/``None`` spellings too); anything else stays text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(v, str) else v


def _experiments(c: Any, experiment: str | None) -> list[Any]:
    from mlflow.entities import ViewType

    exps, token = [], None
    while True:
        page = c.search_experiments(view_type=ViewType.ALL, page_token=token)
        exps.extend(page)
        token = page.token
        if not token:
            break
    if experiment is not None:
        exps = [e for e in exps if experiment in (e.name, e.experiment_id)]
        if not exps:
            raise ConvertError(f"no MLflow experiment named {experiment!r} (or with that id)")
    return exps


def read_runs(uri: str, experiment: str | None = None, project: str | None = None) -> Iterator[ImportedRun]:
    """Every run of the chosen experiments as an ImportedRun; artifacts are downloaded to a temporary
    directory that lives until the caller asks for the next run."""
    from mlflow.entities import ViewType

    try:
        c = client(uri)
        exps = _experiments(c, experiment)
    except ConvertError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
        raise ConvertError(f"cannot read MLflow tracking URI {uri!r}: {type(e).__name__}: {e}") from None
    for exp in exps:
        token = None
        while True:
            page = c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, page_token=token)
            for r in page:
                with tempfile.TemporaryDirectory(prefix="runsync-mlflow-") as tmp:
                    yield _read_run(c, uri, r, project or exp.name, Path(tmp))
            token = page.token
            if not token:
                break


def _read_run(c: Any, uri: str, r: Any, project: str, tmp: Path) -> ImportedRun:
    info, data = r.info, r.data
    tags = dict(data.tags)
    state = _STATE.get(info.status, "running")
    run = ImportedRun(
        source=Source("mlflow", uri, info.run_id), name=info.run_name or tags.get("mlflow.runName") or info.run_id,
        project=project, created=info.start_time / 1000 if info.start_time else None,
        ended=info.end_time / 1000 if info.end_time else None, state=state,
        error=f"MLflow status {info.status}" if info.status in ("FAILED", "KILLED") else None,
        notes=tags.get("mlflow.note.content"), group=tags.get("runsync.group"), job_type=tags.get("runsync.job_type"),
    )
    own = tags.get("runsync.tags")
    run.tags = json.loads(own) if own else sorted(k if v == "" else f"{k}={v}" for k, v in tags.items()
                                                    if not k.startswith(("mlflow.", "runsync.")))
    run.config = {k: _param(v) for k, v in data.params.items()}
    for key in sorted(data.metrics):
        for m in c.get_metric_history(info.run_id, key):
            run.rows.append((int(m.step), m.timestamp / 1000, key, float(m.value)))
    _artifacts(c, info.run_id, None, tmp, run)
    return run


def _artifacts(c: Any, run_id: str, path: str | None, tmp: Path, run: ImportedRun) -> None:
    try:
        listing = c.list_artifacts(run_id, path)
    except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
        run.skipped.append(f"artifacts of {path or 'the run'}: cannot list ({type(e).__name__}: {e})")
        return
    for f in listing:
        if f.is_dir:
            _artifacts(c, run_id, f.path, tmp, run)
            continue
        try:
            local = c.download_artifacts(run_id, f.path, str(tmp))
        except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
            run.skipped.append(f"artifact {f.path}: cannot download ({type(e).__name__}: {e})")
            continue
        run.files.append((f.path, Path(local)))


# -- export ----------------------------------------------------------------------------------------


def _param_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, allow_nan=True)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _find(c: Any, exp_id: str, run_id: str) -> Any:
    from mlflow.entities import ViewType

    found = c.search_runs([exp_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", run_view_type=ViewType.ALL)
    return found[0] if found else None


def export_run(view: Any, uri: str, experiment: str | None = None) -> tuple[str, bool, list[str]]:
    """Create or update the MLflow run of ``view``; (MLflow run id, created?, notes)."""
    from mlflow.entities import Metric, Param, RunTag

    from ..format.values import ValueType

    notes: list[str] = []
    c = client(uri)
    name = experiment or view.info.project
    try:
        exp = c.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else c.create_experiment(name)
        found = _find(c, exp_id, view.id)
    except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
        raise ConvertError(f"cannot reach MLflow at {uri!r}: {type(e).__name__}: {e}") from None
    info = view.info
    tags = {RUN_ID_TAG: view.id, "mlflow.runName": info.name, "runsync.project": info.project}
    if info.notes:
        tags["mlflow.note.content"] = info.notes
    if info.tags:
        tags["runsync.tags"] = json.dumps(list(info.tags))
    for k in ("group", "job_type"):
        if getattr(info, k):
            tags[f"runsync.{k}"] = getattr(info, k)
    created = found is None
    if found is None:
        mrun = c.create_run(exp_id, start_time=round(info.created * 1000), tags=tags, run_name=info.name)
        mid, have_params, have_metrics = mrun.info.run_id, {}, set()
    else:
        mid, have_params = found.info.run_id, dict(found.data.params)
        have_metrics = {(k, m.step, m.timestamp, m.value) for k in found.data.metrics
                        for m in c.get_metric_history(mid, k)}
    params = []
    for k, v in _flat(view.config).items():
        text = _param_text(v)[:6000]
        if not _KEY_RE.match(k):
            notes.append(f"config key {k!r} not exported: MLflow param names allow only A-Z a-z 0-9 _ - . / space")
        elif k not in have_params:
            params.append(Param(k, text))
        elif have_params[k] != text:
            notes.append(f"param {k!r} is {have_params[k]!r} in MLflow and {text!r} here; MLflow params cannot change")
    rows = view.history(wide=False, format="arrow")
    metrics = []
    skipped_keys: set[str] = set()
    cols = [rows.column("step"), rows.column("time").cast("int64")]
    for step, t, key, vtype, value in zip(cols[0].to_pylist(), cols[1].to_pylist(),
                                          rows.column("key").to_pylist(), rows.column("type").to_pylist(),
                                          rows.column("value").to_pylist()):
        if vtype not in (ValueType.FLOAT, ValueType.INT, ValueType.BOOL) or not _KEY_RE.match(key):
            skipped_keys.add(key)
            continue
        ms = (t + 500) // 1000
        if (key, step, ms, value) in have_metrics or (isinstance(value, float) and math.isnan(value) and any(
                h[0] == key and h[1] == step and h[2] == ms and h[3] != h[3] for h in have_metrics)):
            continue
        metrics.append(Metric(key, value, ms, step))
    media = set(view.media_keys())
    if skipped_keys - media:
        left = ", ".join(sorted(skipped_keys - media))
        notes.append(f"not exported (MLflow metrics are numbers with simple names): {left}")
    try:
        for i in range(0, max(len(params), 1), 100):
            if params[i:i + 100]:
                c.log_batch(mid, params=params[i:i + 100])
        for i in range(0, len(metrics), _BATCH):
            c.log_batch(mid, metrics=metrics[i:i + _BATCH])
        c.log_batch(mid, tags=[RunTag(k, v) for k, v in tags.items()])
        for fname, entry in sorted(view.files().items()):
            src = view.file_path(fname)
            if src.exists():
                with tempfile.TemporaryDirectory(prefix="runsync-mlflow-") as tmp:
                    dst = Path(tmp) / Path(fname).name
                    dst.write_bytes(src.read_bytes())
                    parent = str(Path(fname).parent)
                    c.log_artifact(mid, str(dst), None if parent == "." else parent)
        status = view.status
        if status in ("finished", "failed", "crashed"):
            ended = _ended(view)
            c.set_terminated(mid, status={"finished": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"),
                             end_time=round(ended * 1000) if ended else None)
    except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
        raise ConvertError(f"exporting run {view.id} to MLflow at {uri!r} failed: {type(e).__name__}: {e}") from None
    if media:
        notes.append(f"media keys not exported (MLflow has no media metrics): {', '.join(sorted(media))}")
    return mid, created, notes


def _ended(view: Any) -> float | None:
    ends = [s.get("ended") for s in view.streams() if s.get("ended")]
    return max(ends) if ends else None
