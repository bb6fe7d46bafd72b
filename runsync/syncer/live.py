"""Live sync: a separate process that pushes one run while it trains (online mode).

Started by ``runsync.init(mode="online", remote=URL)``. It pushes every
``interval`` seconds; when the run is no longer running (finished, failed,
crashed) it pushes once more and exits. Training never waits for it except
for the bounded final wait in ``finish()``; if it dies or the network is down,
training goes on and a later ``runsync push`` sends what is left.

    python -m runsync.syncer.live RUN_DIR REMOTE [--interval S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .._logging import get_logger
from ..format.layout import RunLayout
from ..format.liveness import run_state
from ..format.meta import State
from .push import PushOptions, push
from .remote import Remote, RetryPolicy

__all__ = ["main"]


def _log(msg: str) -> None:
    get_logger("syncer").info(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}")


def _push_once(run_dir: Path, remote: Remote) -> bool:
    try:
        res = push(run_dir, remote, PushOptions(jobs=2))
    except Exception as e:  # keep going: the network may come back
        _log(f"push failed: {type(e).__name__}: {e}")
        return False
    for run, err in res.failures:
        _log(f"push of {run} failed: {err}")
    if res.files_sent:
        _log(f"sent {res.files_sent} files, {res.bytes_sent} bytes")
    return not res.failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runsync.syncer.live", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("remote")
    ap.add_argument("--interval", type=float, default=5.0)
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    layout = RunLayout(run_dir)
    _log(f"live sync of {run_dir} started")
    # One remote for the whole run: one connection (an SSH login, say), not one per push.
    remote = Remote(args.remote, policy=RetryPolicy(retries=3, timeout=60.0, say=_log))
    next_push = 0.0
    while True:
        state = run_state(layout)
        if state != State.RUNNING:
            ok = _push_once(run_dir, remote)
            _log(f"run is {state}; final push {'done' if ok else 'incomplete (run `runsync push` later)'}")
            return 0 if ok else 1
        if time.monotonic() >= next_push:
            _push_once(run_dir, remote)
            next_push = time.monotonic() + args.interval
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
