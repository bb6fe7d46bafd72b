"""Conventions of the Python and CLI ecosystem (issue 13 §3): ``python -m runsync`` and ``--version``."""

from __future__ import annotations

import subprocess
import sys

import runsync


def test_python_dash_m_runsync_is_the_cli() -> None:
    r = subprocess.run([sys.executable, "-m", "runsync", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: runsync")
    assert "push" in r.stdout and "verify" in r.stdout


def test_version_names_the_release_and_the_format() -> None:
    r = subprocess.run([sys.executable, "-m", "runsync", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"runsync {runsync.__version__} (format {runsync.FORMAT_VERSION})"
