"""``runsync push --watch``: the login-node daemon that keeps a remote up to date (issue 18).

Compute nodes write runs to a shared filesystem; the login node, the only one with a network,
runs this loop: a push every ``interval`` seconds of whatever changed. A pass over unchanged
runs costs a stat per file (the no-op push), so thousands of runs are cheap; new runs are picked
up by the next pass; live runs go up as their parts appear (§12.4) and get their final commit
on the first pass after they finish. The remote therefore lags a run by at most the interval
plus the writer's ``part_interval``.

An outage is one line when it begins and one when it ends, with backoff between attempts; one
run that fails never stops the others. The first SIGTERM or SIGINT stops the pass before the
next file and exits 0: a run stopped before its commit leaves only unreferenced files, which the
next push completes (spec §12.3). A second signal exits at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import RemoteError
from .push import PushOptions, PushResult, PushStopped, push
from .remote import Remote

__all__ = ["WatchOptions", "watch"]


@dataclass
class WatchOptions:
    interval: float = 10.0  # seconds between the end of one pass and the start of the next
    json: bool = False  # one JSON object per pass instead of a line per pass that changed something
    max_backoff: float = 300.0  # while the remote is down, attempts slow down to one per this many seconds
    passes: int | None = None  # stop after this many passes (tests; None: until a signal)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _real_failures(res: PushResult) -> list[tuple[str, str]]:
    return [(r, e) for r, e in res.failures if "stopped before this run's commit" not in e]


def _outage(res: PushResult) -> str | None:
    """The remote looks down: every run this pass tried failed, none was committed. The cause, else None."""
    failed = _real_failures(res)
    tried = res.runs - res.skipped
    if failed and res.runs_pushed == 0 and len(failed) >= tried:
        return failed[0][1]
    return None


@contextmanager
def _signals(stop: threading.Event, say: Callable[[str], None]) -> Iterator[None]:
    """First SIGTERM/SIGINT: stop after the current file; second: exit at once (the next pass repairs)."""
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        say(f"{signal.Signals(signum).name}: stopping after the current file (again to exit at once)")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def watch(src: str | Path, remote: Remote, opts: PushOptions | None = None, wopts: WatchOptions | None = None,
          out: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> int:
    """Push ``src`` to ``remote`` every ``wopts.interval`` seconds until stopped; the exit code (0)."""
    wopts = wopts or WatchOptions()
    stop = stop or threading.Event()
    say = out or (lambda line: print(line, file=sys.stderr if not wopts.json else sys.stdout, flush=True))
    opts = replace(opts or PushOptions(), stop=stop.is_set)
    down_since: float | None = None
    wait = wopts.interval
    passes = 0
    with _signals(stop, lambda m: say(f"{_stamp()} {m}") if not wopts.json else None):
        while not stop.is_set():
            t0 = time.time()
            try:
                res: PushResult | None = push(src, remote, opts)
                cause = _outage(res) if res is not None else None
            except PushStopped:
                break
            except RemoteError as e:  # the remote refused the pass as a whole (setup, credentials)
                res, cause = None, str(e)
            passes += 1
            if cause is not None:
                if down_since is None:
                    down_since = t0
                    if not wopts.json:
                        say(f"{_stamp()} {remote.display} unreachable: {cause}; retrying with backoff "
                            f"up to {wopts.max_backoff:.0f} s (one line when it is back)")
                wait = min(max(wait * 2, wopts.interval), wopts.max_backoff)
            else:
                if down_since is not None and not wopts.json:
                    say(f"{_stamp()} {remote.display} reachable again after {time.time() - down_since:.0f} s")
                down_since = None
                wait = wopts.interval
            if res is not None:
                _report(res, wopts, say, t0, cause)
            if wopts.passes is not None and passes >= wopts.passes:
                break
            stop.wait(wait)
    return 0


def _report(res: PushResult, wopts: WatchOptions, say: Callable[[str], None], t0: float, cause: str | None) -> None:
    failed = _real_failures(res)
    if wopts.json:
        d: dict[str, Any] = {"time": t0, **res.as_dict(), "failures": [list(f) for f in failed],
                             "remote_down": cause is not None}
        say(json.dumps(d))
        return
    if cause is not None:
        return  # the outage line says it
    if res.runs_pushed or failed:
        line = (f"{_stamp()} pushed {res.runs_pushed} runs, {res.files_sent} files, {_human(res.bytes_sent)}"
                + (f"; {len(failed)} failed" if failed else ""))
        say(line)
        for run_id, err in failed:
            say(f"  FAILED {run_id}: {err}")
