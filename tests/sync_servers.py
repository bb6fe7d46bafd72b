"""What the emulated-backend helpers (sync_sftpserver, sync_gcsserver, sync_azureserver) share: one server
process per test process, started on first use and stopped at exit, and waiting for its port. Not a test module.
"""

from __future__ import annotations

import atexit
import ctypes
import signal
import socket
import sys
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar


class Server(Protocol):
    proc: subprocess.Popen[Any]

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


class Lazy(Generic[S]):
    """The process's one ``S``: started by ``get()`` on first use (again if it died), stopped by ``stop()``
    or at interpreter exit."""

    def __init__(self, start: Callable[[], S]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._server: S | None = None

    def get(self) -> S:
        with self._lock:
            if self._server is None or self._server.proc.poll() is not None:
                self._server = self._start()
                atexit.register(self._server.stop)
            return self._server

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """``preexec_fn`` for an emulator: the kernel kills it when the test process dies, even by SIGKILL,
    where atexit never runs (Linux; elsewhere a no-op). Resolved before the fork, so the child only calls.
    The kernel watches the *thread* that started the server: start it from the main thread (fixtures do)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float, what: str) -> None:
    """Until a TCP connect to 127.0.0.1:port succeeds (or the process died, or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s") from None
            time.sleep(0.05)


def require(available: bool, why: str) -> None:
    """Skip the calling test module when its server is missing; under CI (which installs every server) fail
    instead: a skip there would hide that those tests never ran."""
    import os

    import pytest

    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)
