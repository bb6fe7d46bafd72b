"""The converters' command line and packaging (issue 17): lazy tool imports, help text, errors."""

from __future__ import annotations

import subprocess
import sys

from convert_util import cli

TOOLS = ("wandb", "mlflow", "tensorboard", "tensorboardX", "torch")


def test_import_runsync_never_imports_the_tools() -> None:
    code = ("import sys, runsync, runsync.cli, runsync.convert, runsync.convert.dispatch, runsync.convert.sink\n"
            "runsync.cli.build_parser()\n"
            f"print(sorted(m for m in {TOOLS!r} if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[]", r.stdout


def test_import_help_explains_every_kind() -> None:
    out = cli("import", "--help").stdout
    for kind in ("tensorboard", "mlflow", "wandb", "csv"):
        assert f"\n  {kind}" in out, kind
    assert "idempotent" in out
    out = cli("export", "--help").stdout
    for kind in ("tensorboard", "mlflow", "wandb"):
        assert f"\n  {kind}" in out, kind
    assert "float32" in out and "wandb sync" in out


def test_export_needs_its_target(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import runsync

    with runsync.init(dir=tmp_path, name="x") as run:
        run.log({"a": 1.0})
    r = cli("export", "tensorboard", run.id, "--dir", str(tmp_path), check=False)
    assert r.returncode == 1 and "needs -o DIR" in r.stderr and "Traceback" not in r.stderr
