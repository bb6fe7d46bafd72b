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


def test_orphaned_aiohttp_task_errors_after_a_network_drop_are_not_printed() -> None:
    """Issue 13 §2: 'Task exception was never retrieved … ClientConnectionResetError' tracebacks reached the
    terminal although the push succeeded; the asyncio logger now drops those (and only those)."""
    import logging as lg

    from runsync._logging import quiet_network_noise

    quiet_network_noise()
    records: list[lg.LogRecord] = []

    class Keep(lg.Handler):
        def emit(self, record: lg.LogRecord) -> None:
            records.append(record)

    class ClientConnectionResetError(ConnectionResetError):
        pass

    h = Keep()
    log = lg.getLogger("asyncio")
    log.addHandler(h)
    try:
        for exc in (ClientConnectionResetError("reset"), ValueError("a real bug")):
            log.error("Task exception was never retrieved", exc_info=(type(exc), exc, None))
        log.error("something else entirely")
    finally:
        log.removeHandler(h)
    assert [r.getMessage() for r in records] == ["Task exception was never retrieved", "something else entirely"]
    assert records[0].exc_info is not None and str(records[0].exc_info[1]) == "a real bug"
