"""Things a run starts next to its history writer and stops when it ends.

System metrics (§14), console capture (§15), the environment record (§16) and
saved files (§13.2) each run in their own thread. A sidecar that fails is
reported and dropped: it never raises into the training loop, never delays
``log()``, and never stops the run from finishing.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

__all__ = ["Sidecar", "OneShot", "Wrapped"]


class Sidecar(Protocol):
    name: str

    def stop(self, state: str, exit_code: int | None, timeout: float) -> None:
        """Finish the sidecar's work (final flush) and release its resources; idempotent."""

    def terminate(self, exit_code: int) -> None:
        """SIGTERM: save what can be saved quickly; the process exits right after."""

    def mark_forked(self) -> None:
        """In a forked child: never touch the parent's files or threads."""


class OneShot:
    """A sidecar that runs one function once on its own thread (e.g. recording the environment)."""

    def __init__(self, name: str, target: Callable[[], None], report: Callable[[str], None]) -> None:
        self.name = name
        self._report = report
        self._thread = threading.Thread(target=self._run, args=(target,), name=f"runsync-{name.replace(' ', '-')}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as e:  # reported, never raised into training
            self._report(f"{self.name} failed: {type(e).__name__}: {e}")

    def stop(self, state: str, exit_code: int | None, timeout: float) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(min(timeout, 15.0))

    def terminate(self, exit_code: int) -> None:
        pass

    def mark_forked(self) -> None:
        pass


class Wrapped:
    """A sidecar around an object with ``start()`` and ``stop(timeout=...)`` (e.g. console capture)."""

    def __init__(self, name: str, obj: Any, stop_timeout: float = 10.0) -> None:
        self.name = name
        self.obj = obj
        self._timeout = stop_timeout

    def start(self) -> None:
        self.obj.start()

    def stop(self, state: str, exit_code: int | None, timeout: float) -> None:
        self.obj.stop(timeout=min(timeout, self._timeout))

    def terminate(self, exit_code: int) -> None:
        self.obj.stop(timeout=min(2.0, self._timeout))

    def mark_forked(self) -> None:
        pass  # the wrapped object handles fork itself
