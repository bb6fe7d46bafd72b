"""How a transfer (push, pull, verify) works through its runs: ``jobs`` runs at a
time, each in a pool of its own, their files in another.

Run workers wait on their files; file workers never wait on runs, so neither
pool can starve the other. A run that fails is listed and never stops the
others; an error that is the same for every run (RemoteSetupError) stops all,
and on any exception in the caller (Ctrl-C) queued work is cancelled instead
of run to the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from ..format.errors import FormatError
from .remote import RemoteError, RemoteSetupError

__all__ = ["Progress", "each_run", "in_flight", "pools"]

# What a transfer tells its progress callback: (run id, outcome, result so far). "sending" comes first, from
# a worker thread, when a run starts (the result then changes while files move); then, as each run finishes,
# "failed" (listed in result.failures) or the outcome its work returned ("pushed", "unchanged", "checked",
# "pulled", "replaced" (pull --force), "up to date", "verified", "PROBLEMS").
Progress = Callable[[str, str, Any], None]


@contextmanager
def pools(jobs: int) -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    runs = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="runsync-run")
    files = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="runsync-file")
    try:
        yield runs, files
    except BaseException:
        runs.shutdown(wait=False, cancel_futures=True)
        files.shutdown(wait=False, cancel_futures=True)
        raise
    runs.shutdown()
    files.shutdown()


def each_run(ids: list[str], work: Callable[[str, ThreadPoolExecutor], str | None], jobs: int, res: Any,
             progress: Progress) -> None:
    """``work(run_id, files_pool)`` for each run; its outcome is told to ``progress`` as the run finishes.
    ``None`` means the run was not one after all (``res.runs`` counts one less); a remote, format or OS
    error fails that run alone (``res.failures``, sorted at the end)."""
    def one(run_id: str) -> str | Exception | None:
        progress(run_id, "sending", res)
        try:
            return work(run_id, files)
        except RemoteSetupError:
            raise  # the same for every run: stop and say it once
        except (RemoteError, FormatError, OSError) as e:
            return e

    with pools(jobs) as (runs, files):
        running = {runs.submit(one, run_id): run_id for run_id in ids}
        for done in as_completed(running):  # reported as they finish: a slow run holds back no other
            run_id, outcome = running[done], done.result()
            if outcome is None:
                res.runs -= 1
                continue
            if isinstance(outcome, Exception):
                res.failures.append((run_id, str(outcome)))
            progress(run_id, "failed" if isinstance(outcome, Exception) else outcome, res)
    res.failures.sort()


@contextmanager
def in_flight(res: Any, lock: threading.Lock, landed: Callable[[], None]) -> Iterator[Callable[[int], None]]:
    """One file on its way: the callable it yields takes the bytes moved so far (from 0 again on a retry)
    into ``res.bytes_in_flight``; when the block ends they leave it, and if it ended well ``landed()``
    counts the file, in the same locked step, so a progress line never sees its bytes twice or not at all."""
    moved = [0]

    def progress(n: int) -> None:
        with lock:
            res.bytes_in_flight += n - moved[0]
            moved[0] = n
    ok = False
    try:
        yield progress
        ok = True
    finally:
        with lock:
            res.bytes_in_flight -= moved[0]
            moved[0] = 0
            if ok:
                landed()
