"""The two thread pools a transfer runs in: one for runs, one for their files.

Run workers wait on their files; file workers never wait on runs, so neither
pool can starve the other. On an exception in the caller (Ctrl-C, a setup
error that stops everything) queued work is cancelled instead of run to the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["pools"]


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
