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

    def _set_error(self, error: str) -> None: ...

    def _terminate(self, exit_code: int) -> None: ...

    def _mark_forked(self) -> None: ...


_active: list[_Finishable] = []
_forkable: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False  # excepthook and SIGTERM machinery (per process)
_hooks_registered = False  # atexit and the fork hook (inherited by children)
_uncaught = False
_uncaught_error: str | None = None  # the cause an uncaught exception or sys.exit(N) gives the runs (§7.2)
_exit_status: int | None = None  # the status of an explicit sys.exit(), when not 0
_pid = os.getpid()
_term_installed = False


def active() -> list[_Finishable]:
    with _lock:
        return list(_active)


def register(run: _Finishable) -> None:
    global _installed, _exit_status, _uncaught_error
    with _lock:
        # a sys.exit(N) that was caught (the process went on to start this run) is not how it ends
        _exit_status = _uncaught_error = None
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
            global _uncaught, _uncaught_error
            _uncaught = True
            _uncaught_error = describe_error(v)
            prev_hook(t, v, tb)  # the traceback reaches stderr, and so the console log, before the runs finish

        hook._runsync = True  # type: ignore[attr-defined]
        sys.excepthook = hook
    _wrap_sys_exit()
    _install_sigterm()


def describe_error(e: BaseException | str) -> str:
    """The cause of a failure as status.json records it (spec §7.2): type and message, secrets
    redacted, at most ERROR_MAX characters."""
    from .redact import environment_secrets

    text = e if isinstance(e, str) else (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    text = environment_secrets(dict(os.environ)).text(text)
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


ERROR_MAX = 1000


def exit_cause(status: object) -> tuple[int, str | None]:
    """The exit code ``sys.exit(status)`` gives and, when it is not 0, the cause a run records (§7.2)."""
    code = 0 if status is None else status if isinstance(status, int) else 1
    if code == 0:
        return 0, None
    return code, describe_error(f"exited with status {code}" if isinstance(status, int) else f"exited: {status}")


def _wrap_sys_exit() -> None:
    """Note the status of an explicit ``sys.exit(N)``: atexit cannot see it, and a run ended that way
    must be ``failed`` with the status as its cause, not ``finished``."""
    real = sys.exit
    if getattr(real, "_runsync", False):
        return

    def exit(status: object = None) -> None:
        global _exit_status, _uncaught_error
        code, cause = exit_cause(status)
        if cause is not None:
            _exit_status, _uncaught_error = code, cause
        real(status)  # type: ignore[arg-type]

    exit._runsync = True  # type: ignore[attr-defined]
    sys.exit = exit


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
                    run._set_error("killed by SIGTERM")
                    run._terminate(code)
                except Exception as e:  # pragma: no cover - last-chance reporting
                    _say(f"runsync: could not flush run on SIGTERM: {e}")
            os._exit(code)


def _say(message: str) -> None:
    from .._logging import get_logger
    from .settings import env_flag

    if not env_flag("RUNSYNC_SILENT"):
        get_logger("writer").warning(message)


def _finish_all(code: int) -> None:
    for run in reversed(active()):
        try:
            if code and _uncaught_error:
                run._set_error(_uncaught_error)
            run.finish(exit_code=code)
        except Exception as e:  # pragma: no cover - last-chance reporting
            _say(f"runsync: could not finish run at exit: {e}")


def _at_exit() -> None:
    if os.getpid() != _pid:
        return
    _finish_all(1 if _uncaught else (_exit_status or 0))


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
