"""runsync.integrations is imported lazily: importing runsync never imports a framework, and the layering holds."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import env_without_runsync

PACKAGE = Path(__file__).resolve().parent.parent / "runsync"
FRAMEWORKS = ["torch", "lightning", "pytorch_lightning", "transformers", "keras", "tensorflow", "xgboost",
              "lightgbm", "tensorboard", "tensorboardX"]


def test_importing_runsync_and_its_integrations_package_imports_no_framework() -> None:
    code = ("import sys, json, runsync, runsync.integrations, runsync.integrations._common; "
            "runsync.init; runsync.open_run; "
            f"print(json.dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], env=env_without_runsync(), capture_output=True, text=True,
                       timeout=120, cwd=PACKAGE.parent)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module, inside a function) for each import in ``path``."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - child.level + 1]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                out.append((name, inner))
            visit(child, inner)

    visit(tree, False)
    return out


def test_only_the_sync_tensorboard_hook_imports_integrations_and_lazily() -> None:
    found = []
    for sub in ("format", "writer", "syncer", "reader"):
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            for name, in_function in _imports(path):
                if name.startswith("runsync.integrations"):
                    found.append((str(path.relative_to(PACKAGE)), name, in_function))
    assert found == [("writer/wandb_run.py", "runsync.integrations.tensorboard", True)]


def test_integrations_use_only_the_writers_public_names() -> None:
    for path in sorted((PACKAGE / "integrations").glob("*.py")):
        for name, _ in _imports(path):
            if name.startswith("runsync.") and not name.startswith("runsync.integrations"):
                assert name == "runsync.writer", f"{path.name} imports {name}"
