"""``runsync import KIND SOURCE...`` and ``runsync export KIND RUNS...``: other tools' runs in and out (issue 17)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..format.errors import RunsyncError
from ._common import DEFAULT_DIR

__all__ = ["cmd_export", "cmd_import", "register"]

_IMPORT_HELP = """\
kinds:
  tensorboard  SOURCE is a directory of TensorBoard event files (events.out.tfevents.*) written by
               TensorFlow, torch.utils.tensorboard or tensorboardX. Every directory under it that holds
               event files becomes one run, named by its path below SOURCE. Scalars keep their steps and
               wall times (TensorBoard stores them as float32); histograms, images and text become media;
               hparams the config (add_hparams of tensorboardX and torch writes a subdirectory of its own:
               it imports as a run, as TensorBoard shows it). A damaged event file imports every record that
               passes its CRC and says what was skipped. Needs: pip install 'runsync[tensorboard]'.
  mlflow       SOURCE is a tracking URI: an mlruns/ directory (MLflow's file store), sqlite:///path.db, or a
               tracking server http://host:port. Every run of every experiment (or of --experiment) becomes
               one run with MLflow's run id: params -> config, every metric point at its step and timestamp,
               tags (mlflow.runName -> name, other tags -> "key=value" tags), status, start and end times;
               artifacts -> saved files. MLflow keeps params as text: JSON numbers, booleans and lists (and
               Python's True/False/None) come back as values. Needs: pip install 'runsync[mlflow]'.
  wandb        SOURCE is a W&B offline run directory (wandb/offline-run-*, holding run-<id>.wandb), or a
               wandb/ folder holding many. Reads the .wandb records with W&B's own protobuf classes: history
               rows at their _step and _timestamp, config, summary, name, id, project, group, tags, notes,
               job type, system metrics (system table), console output, media and saved files. A run resumed
               in several .wandb files is one run; a damaged file imports every valid record and says what
               was skipped. Needs: pip install 'runsync[wandb]'.
  csv          SOURCE is a CSV file with a header: a column per key, and a step column (--step-column,
               default "step"; without one, the row number). An optional "time"/"timestamp" column (Unix
               seconds) gives each row's time. One run per file, named after the file.

Importing is idempotent: the same source imported again adds nothing; a source that grew adds only its
new rows. Each imported run records where it came from in run.json ("source": kind, uri, id). Keys runsync
reserves (starting with "_", or "step"/"time") are stored as "imported/<key>"; nested values as "a/b"."""

_EXPORT_HELP = """\
kinds:
  tensorboard  -o DIR: one TensorBoard run directory per run (scalars, text, histograms, images; config as
               hparams). TensorBoard stores scalars as float32. Needs 'runsync[tensorboard]'.
  mlflow       --tracking-uri URI [--experiment NAME]: one MLflow run per runsync run (params = config,
               metrics with steps and timestamps, tags including runsync.run_id, status, start and end).
               Exporting again updates the same MLflow runs and creates no duplicates. Needs 'runsync[mlflow]'.
  wandb        -o DIR: W&B offline run directories that `wandb sync DIR/offline-run-*` uploads to W&B cloud or
               a W&B server. Needs 'runsync[wandb]'."""


def _root(arg: str | None) -> Path:
    return Path(arg if arg is not None else os.environ.get("RUNSYNC_DIR") or "runs")


def cmd_import(args: argparse.Namespace) -> int:
    from ..convert.dispatch import run_import

    root = _root(args.dir)
    bad = 0
    for source in args.source:
        try:
            for res in run_import(args.kind, source, root, project=args.project, experiment=args.experiment,
                                  step_column=args.step_column):
                print(res.describe(), flush=True)
                bad += bool(res.skipped)
        except RunsyncError:
            raise
        except Exception as e:  # a source the converter did not expect: say which, keep what was imported
            raise RunsyncError(f"importing {args.kind} source {source} stopped: {type(e).__name__}: {e}; the runs "
                               f"listed above were imported completely. Please report this with the source") from e
    print(f"runs in {root}")
    return 0 if not bad or not args.strict else 1


def cmd_export(args: argparse.Namespace) -> int:
    from ..convert.dispatch import run_export
    from ..reader.runs import find_run

    runs = [find_run(r, args.dir) for r in args.runs]
    try:
        for line in run_export(args.kind, runs, out=Path(args.out) if args.out else None,
                               tracking_uri=args.tracking_uri, experiment=args.experiment):
            print(line, flush=True)
    except RunsyncError:
        raise
    except Exception as e:
        raise RunsyncError(f"export {args.kind} stopped: {type(e).__name__}: {e}; the runs listed above were "
                           "exported completely") from e
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="import runs from TensorBoard, MLflow, W&B (offline) or CSV",
                       description="Import other tools' runs into a runsync runs directory.", epilog=_IMPORT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", metavar="KIND", choices=("tensorboard", "mlflow", "wandb", "csv"),
                   help="tensorboard, mlflow, wandb or csv (see below)")
    p.add_argument("source", metavar="SOURCE", nargs="+", help="what to import (per kind, see below)")
    p.add_argument("--dir", help=f"runs directory to import into (default {DEFAULT_DIR})")
    p.add_argument("--project", help="project of the imported runs (tensorboard, csv; default 'default'; mlflow: "
                                     "the experiment's name; wandb: the run's project)")
    p.add_argument("--experiment", help="mlflow: import only this experiment (name or id)")
    p.add_argument("--step-column", default="step", help="csv: the column holding the step (default 'step')")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything of a source was skipped")
    p.set_defaults(func=cmd_import)
    e = sub.add_parser("export", help="export runs to TensorBoard, MLflow or W&B (offline directories)",
                       description="Export runsync runs to another tool.", epilog=_EXPORT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("kind", metavar="KIND", choices=("tensorboard", "mlflow", "wandb"),
                   help="tensorboard, mlflow or wandb")
    e.add_argument("runs", metavar="RUN", nargs="+", help="run directory, id, name, or 'latest'")
    e.add_argument("--dir", help=f"runs directory to look in (default {DEFAULT_DIR})")
    e.add_argument("-o", "--out", metavar="DIR", help="tensorboard, wandb: directory to write into")
    e.add_argument("--tracking-uri", metavar="URI", help="mlflow: tracking URI (server, sqlite:///..., or a path)")
    e.add_argument("--experiment", metavar="NAME", help="mlflow: experiment name (default: the run's project)")
    e.set_defaults(func=cmd_export)

