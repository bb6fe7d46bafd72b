"""Starting and stopping the live-sync process of online mode.

The writer does not import the syncer: it starts ``python -m
runsync.syncer.live`` as a separate process, so pushing can neither slow
training (no shared GIL) nor crash it. Its log goes to
``<run>/.runsync/live-sync.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .reporter import Reporter

__all__ = ["start_live_sync", "stop_live_sync"]


def start_live_sync(run_dir: Path, remote: str, interval: float, reporter: Reporter) -> subprocess.Popen[bytes] | None:
    log_dir = run_dir / ".runsync"
    try:
        os.makedirs(log_dir, exist_ok=True)
        log = open(log_dir / "live-sync.log", "ab")
    except OSError as e:
        reporter.problem("live", f"cannot start live sync ({e}); run `runsync push` later")
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "runsync.syncer.live", str(run_dir), remote, "--interval", str(interval)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
        )
    except OSError as e:
        reporter.problem("live", f"cannot start live sync ({e}); run `runsync push` later")
        return None
    finally:
        log.close()


def stop_live_sync(proc: subprocess.Popen[bytes] | None, timeout: float, reporter: Reporter) -> None:
    """Wait for the final push at most ``timeout`` seconds, then stop the process."""
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        reporter.problem("live", f"the final live push did not finish within {timeout:.0f} s; "
                         "run `runsync push` to send what is left")
        return
    if proc.returncode != 0:
        reporter.problem("live", "the final live push was incomplete; run `runsync push` to send what is left")
