"""Conventions of the Python and CLI ecosystem (issue 13 §3): ``python -m runsync`` and ``--version``."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_boolean_environment_variables_share_one_set_of_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 §3: one documented set of spellings for every switch; a value that is none of them keeps the
    default and warns once, naming the variable."""
    import warnings

    from runsync.writer import settings

    for raw, want in [("1", True), ("TRUE", True), ("yes", True), ("On", True),
                      ("0", False), ("false", False), ("NO", False), ("off", False)]:
        monkeypatch.setenv("RUNSYNC_SYSTEM", raw)
        assert settings.env_switch("RUNSYNC_SYSTEM", None) is want, raw
        assert settings.env_bool("RUNSYNC_SYSTEM", not want) is want, raw
    monkeypatch.setenv("RUNSYNC_SYSTEM", "")
    assert settings.env_switch("RUNSYNC_SYSTEM", None, default=True) is True
    assert settings.env_switch("RUNSYNC_SYSTEM", False) is False  # an explicit argument wins
    monkeypatch.setenv("RUNSYNC_TEST_SWITCH", "disabled")
    settings._warned.discard("RUNSYNC_TEST_SWITCH")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert settings.env_bool("RUNSYNC_TEST_SWITCH", True) is True
        assert settings.env_bool("RUNSYNC_TEST_SWITCH", True) is True
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "RUNSYNC_TEST_SWITCH='disabled'" in msgs[0] and "use 1 or 0" in msgs[0]
