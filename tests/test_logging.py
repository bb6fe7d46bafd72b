"""runsync's messages go through logging.getLogger("runsync") (issue 13 §3): today's look on a terminal,
a framework's logging configuration captures or silences them, nothing is printed twice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BODY = '''
    run = runsync.init(dir=sys.argv[1])
    run.log({"a": 1.0})
    run.finish()
'''


def _stderr(tmp_path: Path, prelude: str, env: dict[str, str] | None = None) -> str:
    code = "import logging, sys, runsync\n" + textwrap.dedent(prelude) + textwrap.dedent(BODY)
    e = {k: v for k, v in os.environ.items() if k != "RUNSYNC_SILENT"}
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120, env=e)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_default_look_on_stderr(tmp_path: Path) -> None:
    err = _stderr(tmp_path, "")
    lines = [ln for ln in err.splitlines() if ln.startswith("runsync: run ")]
    assert len(lines) == 2 and "started offline" in lines[0] and "finished" in lines[1]


def test_a_logging_configuration_captures_them_once(tmp_path: Path) -> None:
    err = _stderr(tmp_path, 'logging.basicConfig(format="LOG %(name)s %(levelname)s %(message)s")\n')
    started = [ln for ln in err.splitlines() if "started offline" in ln]
    assert len(started) == 1 and started[0].startswith("LOG runsync.writer INFO runsync: run ")


def test_the_runsync_logger_silences_them(tmp_path: Path) -> None:
    err = _stderr(tmp_path, 'logging.getLogger("runsync").setLevel(logging.ERROR)\n')
    assert "runsync:" not in err


def test_runsync_silent_still_turns_them_off(tmp_path: Path) -> None:
    assert "runsync:" not in _stderr(tmp_path, "", env={"RUNSYNC_SILENT": "1"})
