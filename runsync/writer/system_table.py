"""The system-metrics sidecar: a sampler thread feeding the run's ``system`` table (spec §14).

Samples go through the same machinery as history (WAL, parts, recovery), in
the stream's ``system`` sub-stream, so a kill -9 loses none of the windows
already emitted — the minutes before an out-of-memory kill are exactly what a
person wants to see.
"""

from __future__ import annotations

from pathlib import Path

from ..format.layout import SYSTEM_DIR, RunLayout
from .pipeline import Pipeline, open_pipeline
from .reporter import Reporter
from .settings import Settings

__all__ = ["SystemRecorder", "SYSTEM_SEGMENT"]

SYSTEM_SEGMENT = 1 << 18  # a window is a few hundred bytes; small WAL segments suffice


class SystemRecorder:
    name = "system metrics"

    def __init__(self, layout: RunLayout, stream: str, run_id: str, settings: Settings, reporter: Reporter,
                 wal_root: Path | None = None) -> None:
        from .system import SystemMonitor

        self.pipeline: Pipeline = open_pipeline(layout.with_table(SYSTEM_DIR), stream, run_id, True,
                                                settings.with_(segment_size=SYSTEM_SEGMENT), reporter, wal_root)
        self.reporter = reporter
        self._forked = False
        enc = self.pipeline.enc
        self.monitor = SystemMonitor(lambda t, row: enc.log(row), interval=settings.system_interval,
                                     window=settings.system_window, disk_path=str(layout.dir),
                                     on_error=lambda msg: reporter.problem("system", f"system metrics: {msg}"))

    def start(self) -> None:
        self.pipeline.start()
        self.monitor.start()

    def stop(self, state: str, exit_code: int | None, timeout: float) -> None:
        if self._forked:
            return
        self.monitor.stop()
        self.pipeline.enc.close()
        self.pipeline.flusher.stop(state, exit_code, timeout)

    def terminate(self, exit_code: int) -> None:
        if not self._forked:
            self.pipeline.flusher.terminate(exit_code)

    def mark_forked(self) -> None:
        self._forked = True
        self.pipeline.enc.mark_forked()
