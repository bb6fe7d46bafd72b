"""A failed run says why (issue 13 §1): status.json's ``error`` holds the exception's type and message
(secrets redacted, bounded), the console log holds the traceback, for the ``with`` form and the plain
form, for SIGTERM and for a non-zero sys.exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

PRELUDE = "import os, sys, time, runsync\n"


def _run(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = PRELUDE + textwrap.dedent(body)
    e = {**os.environ, "RUNSYNC_SYSTEM": "off", "RUNSYNC_CONSOLE": "on", **(env or {})}
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=e)


def _status(tmp_path: Path) -> dict[str, Any]:
    (status,) = tmp_path.glob("*/streams/main/status.json")
    return json.loads(status.read_text())  # type: ignore[no-any-return]


def _console(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted(tmp_path.glob("*/console/*.log")))


def test_exception_leaving_a_with_block(tmp_path: Path) -> None:
    r = _run(tmp_path, '''
        with runsync.init(dir=sys.argv[1]) as run:
            run.log({"loss": 1.0})
            raise ValueError("CUDA out of memory")
    ''')
    assert r.returncode == 1 and "CUDA out of memory" in r.stderr
    st = _status(tmp_path)
    assert st["state"] == "failed" and st["error"] == "ValueError: CUDA out of memory"
    log = _console(tmp_path)
    assert "Traceback (most recent call last)" in log and "ValueError: CUDA out of memory" in log
    assert r.stderr.count("Traceback (most recent call last)") == 1  # the terminal sees it once


def test_uncaught_exception_without_with(tmp_path: Path) -> None:
    r = _run(tmp_path, '''
        run = runsync.init(dir=sys.argv[1])
        run.log({"loss": 1.0})
        raise RuntimeError("diverged at step 3")
    ''')
    assert r.returncode == 1
    st = _status(tmp_path)
    assert st["state"] == "failed" and st["error"] == "RuntimeError: diverged at step 3"
    assert "RuntimeError: diverged at step 3" in _console(tmp_path)


def test_secrets_are_redacted_and_long_messages_bounded(tmp_path: Path) -> None:
    r = _run(tmp_path, '''
        with runsync.init(dir=sys.argv[1]) as run:
            raise ValueError("login failed with " + os.environ["MY_API_TOKEN"] + " " + "x" * 5000)
    ''', env={"MY_API_TOKEN": "s3cr3t-value-123456"})
    assert r.returncode == 1
    err = _status(tmp_path)["error"]
    assert "s3cr3t-value-123456" not in err and "[REDACTED]" in err
    assert len(err) <= 1000


@pytest.mark.parametrize("form", ["plain", "with"])
def test_non_zero_sys_exit_fails_the_run(tmp_path: Path, form: str) -> None:
    body = {
        "plain": '''
            run = runsync.init(dir=sys.argv[1])
            run.log({"loss": 1.0})
            sys.exit(3)
        ''',
        "with": '''
            with runsync.init(dir=sys.argv[1]) as run:
                run.log({"loss": 1.0})
                sys.exit(3)
        ''',
    }[form]
    r = _run(tmp_path, body)
    assert r.returncode == 3
    st = _status(tmp_path)
    assert st["state"] == "failed" and st["exit_code"] == 3 and st["error"] == "exited with status 3"


def test_sys_exit_zero_finishes(tmp_path: Path) -> None:
    r = _run(tmp_path, '''
        run = runsync.init(dir=sys.argv[1])
        run.log({"loss": 1.0})
        sys.exit(0)
    ''')
    assert r.returncode == 0
    st = _status(tmp_path)
    assert st["state"] == "finished" and st["error"] is None


def test_sigterm_says_so(tmp_path: Path) -> None:
    code = PRELUDE + textwrap.dedent('''
        run = runsync.init(dir=sys.argv[1])
        print("ready", flush=True)
        while True:
            run.log({"loss": 1.0})
            time.sleep(0.01)
    ''')
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "RUNSYNC_SYSTEM": "off"})
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 143
    st = _status(tmp_path)
    assert st["state"] == "failed" and st["error"] == "killed by SIGTERM"


def test_show_prints_the_cause(tmp_path: Path) -> None:
    _run(tmp_path, '''
        with runsync.init(dir=sys.argv[1]) as run:
            run.log({"loss": 1.0})
            raise ValueError("CUDA out of memory")
    ''')
    r = subprocess.run([sys.executable, "-m", "runsync", "show", "latest", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cause    ValueError: CUDA out of memory" in r.stdout
    import runsync
    (view,) = [runsync.open_run(p) for p in tmp_path.iterdir() if (p / "run.json").exists()]
    assert view.streams()[0]["error"] == "ValueError: CUDA out of memory"


def test_the_reports_runs_table_shows_the_cause(tmp_path: Path) -> None:
    """Issue 13 §1: the report's runs table has a cause column when a listed run failed with one (headless
    Chromium, as the other report tests)."""
    from cdp import Browser, find_chromium

    from runsync.report import build_report

    if os.environ.get("RUNSYNC_SKIP_BROWSER") == "1":
        pytest.skip("RUNSYNC_SKIP_BROWSER=1")
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("the browser tests need Chromium (.ci/run installs it)", pytrace=False)
    _run(tmp_path, '''
        with runsync.init(dir=sys.argv[1], name="broken") as run:
            run.log({"loss": 1.0})
            raise ValueError("CUDA out of memory")
    ''')
    _run(tmp_path, '''
        with runsync.init(dir=sys.argv[1], name="fine") as run:
            run.log({"loss": 0.5})
    ''')
    out = tmp_path / "report.html"
    build_report(tmp_path, out)
    with Browser(chromium, timeout=30) as browser:
        page = browser.new_page()
        page.navigate(out.as_uri())
        page.wait_for("window.runsyncReport && window.runsyncReport.ready", timeout=30)
        heads = page.evaluate("Array.from(document.querySelectorAll('table.runs thead th')).map(t => t.textContent)")
        rows = page.evaluate("Array.from(document.querySelectorAll('table.runs tbody tr')).map(tr => tr.textContent)")
    assert any("cause" in h for h in heads), heads
    assert any("broken" in r and "ValueError: CUDA out of memory" in r for r in rows), rows
    assert any("fine" in r and "ValueError" not in r for r in rows), rows
