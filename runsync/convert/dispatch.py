"""``runsync import`` / ``runsync export`` by kind: find the source's runs, convert each, report (issue 17)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .sink import ConvertError, ImportResult, write_import

__all__ = ["EXPORT_KINDS", "IMPORT_KINDS", "run_export", "run_import"]

IMPORT_KINDS = ("tensorboard", "mlflow", "wandb", "csv")
EXPORT_KINDS = ("tensorboard", "mlflow", "wandb")


def run_import(kind: str, source: str, root: Path, project: str | None = None, experiment: str | None = None,
               step_column: str = "step") -> Iterator[ImportResult]:
    """Import every run of ``source`` into ``root``, one ImportResult per run, as each is written."""
    if kind == "tensorboard":
        from . import tensorboard

        src = Path(source)
        base = src if src.is_dir() else src.parent
        for run_dir in tensorboard.find_runs(src):
            yield write_import(root, tensorboard.read_run(run_dir, base, project or "default"))
    elif kind == "mlflow":
        from . import mlflow

        for run in mlflow.read_runs(source, experiment, project):
            yield write_import(root, run)
    elif kind == "wandb":
        from . import wandb

        for run in wandb.read_runs(Path(source), project):
            yield write_import(root, run)
    elif kind == "csv":
        from . import csv

        yield write_import(root, csv.read_run(Path(source), step_column, project or "default"))
    else:
        raise ConvertError(f"unknown import kind {kind!r}; one of {', '.join(IMPORT_KINDS)}")


def run_export(kind: str, runs: list[Path], out: Path | None = None, tracking_uri: str | None = None,
               experiment: str | None = None) -> Iterator[str]:
    """Export each run; yields one line per run saying where it went."""
    from ..reader import open_run

    if kind in ("tensorboard", "wandb") and out is None:
        raise ConvertError(f"export {kind} needs -o DIR: the directory to write into")
    if kind == "mlflow" and not tracking_uri:
        raise ConvertError("export mlflow needs --tracking-uri URI (http://host:port, sqlite:///file.db or a "
                           "directory)")
    for path in runs:
        view = open_run(path)
        if kind == "tensorboard":
            from . import tensorboard

            assert out is not None
            written, notes = tensorboard.export_run(view, out)
            yield f"exported {view.id} to {written}"
        elif kind == "mlflow":
            from . import mlflow

            assert tracking_uri is not None
            mlflow_id, created, notes = mlflow.export_run(view, tracking_uri, experiment)
            yield f"{'exported' if created else 'updated'} {view.id} as MLflow run {mlflow_id}"
        elif kind == "wandb":
            from . import wandb

            assert out is not None
            written, notes = wandb.export_run(view, out)
            yield f"exported {view.id} to {written} (upload with: wandb sync {written})"
        else:
            raise ConvertError(f"unknown export kind {kind!r}; one of {', '.join(EXPORT_KINDS)}")
        yield from (f"  note: {n}" for n in notes)
