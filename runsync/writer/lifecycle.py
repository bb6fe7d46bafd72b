"""Process-level hooks: finish runs at exit and on SIGTERM; refuse use after fork.

Installed once, on the first init().

SIGTERM: only if its disposition is the default (a user's own handler is left
alone). The Python-level handler does nothing itself; the C-level handler
writes the signal number to a wakeup pipe, and a watchdog thread reading it
does the final flush and then exits with status 143. So a SIGTERM that arrives
while the main thread is inside log() (holding the encoder lock), or stuck in a
long C call, neither deadlocks nor is ignored.
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

    def _terminate(self, exit_code: int) -> None: ...

    def _mark_forked(self) -> None: ...


_active: list[_Finishable] = []
_forkable: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False  # excepthook and SIGTERM machinery (per process)
_hooks_registered = False  # atexit and the fork hook (inherited by children)
_uncaught = False
_pid = os.getpid()
_term_installed = False


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
        first = not _hooks_registered
        _set_hooks_registered()
    if first:
        atexit.register(_at_exit)
        os.register_at_fork(after_in_child=_after_fork_child)
    prev_hook = sys.excepthook

    if not getattr(prev_hook, "_runsync", False):

        def hook(t: type[BaseException], v: BaseException, tb: TracebackType | None) -> None:
            global _uncaught
            _uncaught = True
            prev_hook(t, v, tb)

        hook._runsync = True  # type: ignore[attr-defined]
        sys.excepthook = hook
    _install_sigterm()


def _set_hooks_registered() -> None:
    global _hooks_registered
    _hooks_registered = True


def unregister(run: _Finishable) -> None:
    with _lock:
        if run in _active:
            _active.remove(run)


def _install_sigterm() -> None:
    global _term_installed
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
            return
        r, w = os.pipe()
        os.set_blocking(w, False)
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        if old != -1:  # someone (e.g. asyncio) owns the wakeup fd: leave SIGTERM alone
            signal.set_wakeup_fd(old)
            os.close(r)
            os.close(w)
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        return
    _term_installed = True
    threading.Thread(target=_watchdog, args=(r,), name="runsync-sigterm", daemon=True).start()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Python-level handler: nothing to do; the watchdog thread acts on the wakeup byte."""


def _watchdog(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        if os.getpid() != _pid:
            return
        if signal.SIGTERM in data:
            code = 128 + signal.SIGTERM
            for run in reversed(active()):
                try:
                    run._terminate(code)
                except Exception as e:  # pragma: no cover - last-chance reporting
                    _say(f"runsync: could not flush run on SIGTERM: {e}")
            os._exit(code)


def _say(message: str) -> None:
    silent = os.environ.get("RUNSYNC_SILENT", "").strip() or os.environ.get("WANDB_SILENT", "")  # W&B's too
    if silent.strip().lower() not in ("1", "true", "yes", "on"):
        print(message, file=sys.stderr)


def _finish_all(code: int) -> None:
    for run in reversed(active()):
        try:
            run.finish(exit_code=code)
        except Exception as e:  # pragma: no cover - last-chance reporting
            _say(f"runsync: could not finish run at exit: {e}")


def _at_exit() -> None:
    if os.getpid() != _pid:
        return
    _finish_all(1 if _uncaught else 0)


def _after_fork_child() -> None:
    global _pid, _installed, _term_installed
    for run in list(_forkable):
        run._mark_forked()
    with _lock:
        _active.clear()
    _pid = os.getpid()
    if _term_installed:
        # The child has no watchdog: give it back the default SIGTERM behaviour.
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):
            pass
        _term_installed = False
    # atexit and the fork hook stay registered; the excepthook and SIGTERM
    # machinery are installed again if the child starts a run of its own.
    _installed = False
