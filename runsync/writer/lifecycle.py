"""Process-level hooks: finish runs at exit and on SIGTERM; refuse use after fork.

Installed once, on the first init(). A user's own SIGTERM handler is left in
place (it is then the user's job to call finish(); atexit still flushes).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from types import FrameType, TracebackType
from typing import Any, Protocol

__all__ = ["register", "unregister", "active"]


class _Finishable(Protocol):
    def finish(self, exit_code: int = 0) -> None: ...

    def _mark_forked(self) -> None: ...


_active: list[_Finishable] = []
_forkable: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_uncaught = False
_pid = os.getpid()


def active() -> list[_Finishable]:
    with _lock:
        return list(_active)


def register(run: _Finishable) -> None:
    global _installed
    with _lock:
        _active.append(run)
        _forkable.add(run)
        if _installed:
            return
        _installed = True
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_after_fork_child)
    prev_hook = sys.excepthook

    def hook(t: type[BaseException], v: BaseException, tb: TracebackType | None) -> None:
        global _uncaught
        _uncaught = True
        prev_hook(t, v, tb)

    sys.excepthook = hook
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):
            pass


def unregister(run: _Finishable) -> None:
    with _lock:
        if run in _active:
            _active.remove(run)


def _finish_all(code: int) -> None:
    for run in reversed(active()):
        try:
            run.finish(exit_code=code)
        except Exception as e:  # pragma: no cover - last-chance reporting
            print(f"runsync: could not finish run at exit: {e}", file=sys.stderr)


def _at_exit() -> None:
    if os.getpid() != _pid:
        return
    _finish_all(1 if _uncaught else 0)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _finish_all(128 + signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_child() -> None:
    global _pid
    for run in list(_forkable):
        run._mark_forked()
    with _lock:
        _active.clear()
    _pid = os.getpid()
