"""``runsync.init()`` and the ``Run`` it returns: the writer's public API."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..format.errors import RunsyncError
from ..format.history import warm_up
from ..format.layout import RunLayout, check_run_id, check_stream_name
from ..format.meta import RunInfo, State, deep_update, json_safe, load_doc, publish_doc
from ..format.wal import MetaOp
from . import lifecycle
from .encoder import Encoder, RunFinishedError
from .files import POLICIES, FileSaver, resolve_save
from .flusher import Flusher
from .live import start_live_sync, stop_live_sync
from .media_store import MediaStore
from .names import new_id, new_name
from .pipeline import open_pipeline
from .report import Reporter
from .settings import Settings, env_flag, env_switch, resolve_dir, resolve_mode, resolve_project, resolve_remote
from .sidecar import OneShot, Sidecar, Wrapped
from .system_table import SystemRecorder

__all__ = ["Run", "init", "current", "log", "finish"]

_current: Run | None = None
_current_lock = threading.Lock()


class Config(MutableMapping[str, Any]):
    """``run.config``: hyperparameters; each change is one WAL record (durable at once)."""

    def __init__(self, run: Run, data: dict[str, Any]) -> None:
        self._run = run
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError("config keys cannot be deleted once recorded; set a new value instead")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        changes = dict(*args, **kwargs)
        for k in changes:
            if not isinstance(k, str) or not k:
                raise TypeError(f"config keys must be non-empty str, got {k!r}")
        safe = json_safe(changes)
        self._run._write_meta(MetaOp.CONFIG_UPDATE, safe)
        deep_update(self._data, safe)

    def as_dict(self) -> dict[str, Any]:
        return json_safe(self._data)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(MutableMapping[str, Any]):
    """``run.summary``: last logged value per key, unless set by hand (which sticks)."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def _snapshot(self) -> dict[str, Any]:
        return self._run._summary_snapshot()

    def __getitem__(self, key: str) -> Any:
        return self._snapshot()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"summary keys must be non-empty str, got {key!r}")
        self._run._write_meta(MetaOp.SUMMARY_SET, {"key": key, "value": json_safe(value)})

    def __delitem__(self, key: str) -> None:
        if key not in self._snapshot():
            raise KeyError(key)
        self._run._write_meta(MetaOp.SUMMARY_DELETE, {"key": key})

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __repr__(self) -> str:
        return f"Summary({self._snapshot()!r})"


class Run:
    """A run being written. Create with ``runsync.init()``; end with ``finish()``.

    ``log()`` is bound directly to the encoder's hot path: it never does file I/O
    and never raises for runsync's own failures (bad input raises TypeError/ValueError).
    """

    id: str
    name: str
    project: str
    group: str | None
    job_type: str | None
    tags: list[str]
    dir: Path | None
    stream: str
    mode: str

    def __init__(self, info: RunInfo, dir: Path | None, stream: str, mode: str, reporter: Reporter) -> None:
        self.id = info.id
        self.name = info.name
        self.project = info.project
        self.group = info.group
        self.job_type = info.job_type
        self.tags = list(info.tags)
        self.dir = dir
        self.stream = stream
        self.mode = mode
        self._reporter = reporter
        self._enc: Encoder | None = None
        self._flusher: Flusher | None = None
        self._finished = False
        self._finish_lock = threading.Lock()
        self.config = Config(self, {})
        self.summary = Summary(self)
        self._local_summary: dict[str, Any] = {}
        self._live: Any = None
        self._sidecars: list[Sidecar] = []
        self._files: FileSaver | None = None
        self.log = self._log_disabled  # replaced by the encoder's log in offline mode

    # -- logging --------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool = True) -> None:  # noqa: F811
        """Record ``data`` (key → number/bool/str/None, nested dicts flattened with '/').

        ``step`` defaults to one more than the previous committed step;
        ``commit=False`` keeps the step for the next call. (Bound per instance.)
        """

    def _log_disabled(self, data: Mapping[str, Any], step: int | None = None, commit: bool = True) -> None:
        if self._finished:
            raise RunFinishedError("log() called after finish(); start a new run with runsync.init()")

    def save(self, path: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None,
             policy: str = "now") -> list[str]:
        """Store files in the run (spec §13.5): checkpoints, configs, predictions.

        ``path`` is a file or a glob (``**`` allowed), relative to ``base_path``
        (default: the working directory), which is also the allowed root: files
        outside it are refused. Stored names are relative to it. ``policy``:
        ``"now"`` (copy now), ``"end"`` (copy at finish), ``"live"`` (copy now and
        again whenever the file changes). Copies happen on a background thread;
        returns the stored names.
        """
        if policy not in POLICIES:
            raise ValueError(f"save(policy={policy!r}): policy must be one of {', '.join(POLICIES)}")
        files = resolve_save(path, base_path)
        if self._finished:
            raise RunFinishedError("save() called after finish()")
        if self._files is not None:
            self._files.add(files, policy)
        return [name for name, _ in files]

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` will use."""
        return self._enc.step if self._enc is not None else 0

    def _write_meta(self, op: int, payload: Any) -> None:
        if self._enc is not None:
            self._enc.write_meta(op, payload)
        elif self._finished:
            raise RunFinishedError("this run has finished")
        elif op == MetaOp.SUMMARY_SET:
            self._local_summary[payload["key"]] = payload["value"]
        elif op == MetaOp.SUMMARY_DELETE:
            self._local_summary.pop(payload["key"], None)

    def _summary_snapshot(self) -> dict[str, Any]:
        if self._flusher is not None:
            return self._flusher.summary_snapshot()
        return dict(self._local_summary)

    def _mark_forked(self) -> None:
        if self._enc is not None:
            self._enc.mark_forked()
        for sc in self._sidecars:
            sc.mark_forked()

    def _stop_sidecars(self, state: str, exit_code: int | None, timeout: float) -> None:
        for sc in self._sidecars:
            try:
                sc.stop(state, exit_code, timeout)
            except Exception as e:  # a sidecar never stops the run from finishing
                self._reporter.problem(sc.name, f"{sc.name} could not finish: {type(e).__name__}: {e}")

    # -- ending ---------------------------------------------------------------------
    def finish(self, exit_code: int = 0) -> None:
        """Flush everything and mark the run finished (``exit_code`` ≠ 0: failed). Idempotent."""
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
        global _current
        if self._enc is not None and self._flusher is not None:
            if self._enc.forked:
                return
            self._enc.close()
            state = State.FINISHED if exit_code == 0 else State.FAILED
            self._stop_sidecars(state, exit_code, self._flusher.settings.finish_timeout)
            self._flusher.stop(state, exit_code, self._flusher.settings.finish_timeout)
            if self._live is not None:
                stop_live_sync(self._live, self._flusher.settings.sync_timeout, self._reporter)
            steps = self._enc.step
            self._reporter.info(f"run {self.name} ({self.id}) {state}: {steps} steps in {self.dir}")
            if self._enc.dropped_rows:
                self._reporter.info(f"{self._enc.dropped_rows} rows could not be stored (disk and memory bound full)")
        lifecycle.unregister(self)
        with _current_lock:
            if _current is self:
                _current = None

    def _terminate(self, exit_code: int) -> None:
        """SIGTERM: flush and mark failed from the watchdog thread; the process exits next."""
        if self._flusher is not None and not self._finished and not (self._enc and self._enc.forked):
            for sc in self._sidecars:
                try:
                    sc.terminate(exit_code)
                except Exception:  # the history flush below matters more
                    pass
            self._flusher.terminate(exit_code)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.finish(exit_code=0 if t is None else 1)

    @property
    def finished(self) -> bool:
        return self._finished

    def __repr__(self) -> str:
        return f"<runsync.Run {self.name} id={self.id} mode={self.mode} dir={self.dir}>"


def _default_stream() -> str:
    s = os.environ.get("RUNSYNC_STREAM")
    if s:
        return s
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is not None and world is not None and world.strip() not in ("", "1"):
        return f"rank{int(rank)}"
    return "main"


def init(
    project: str | None = None,
    name: str | None = None,
    id: str | None = None,
    group: str | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    config: Mapping[str, Any] | None = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    resume: bool = False,
    *,
    job_type: str | None = None,
    notes: str | None = None,
    stream: str | None = None,
    settings: Settings | None = None,
    remote: str | None = None,
    system: bool | None = None,
    console: bool | None = None,
    save_code: bool | None = None,
) -> Run:
    """Start (or with ``resume=True`` continue) a run and return it.

    ``dir`` is the root holding run directories (default ``$RUNSYNC_DIR`` or
    ``./runs``); the run lives in ``<dir>/<id>``. Several processes may write one
    run at once, each in its own ``stream`` (default: ``main``, or ``rank<N>``
    when torch-style RANK/WORLD_SIZE are set).

    ``mode="online"`` (or ``RUNSYNC_MODE=online``) also starts a separate
    process that pushes the run to ``remote`` (or ``$RUNSYNC_REMOTE``) every
    ``settings.sync_interval`` seconds; training never waits for it, and
    ``finish()`` waits for its final push at most ``settings.sync_timeout`` s.

    Next to history, a run records system metrics (``system=False`` or
    ``RUNSYNC_SYSTEM=off`` to disable), the console output (``console=False`` or
    ``RUNSYNC_CONSOLE=off``) and the code and environment (``save_code=False`` or
    ``RUNSYNC_DISABLE_CODE=true`` to record no git data and no patch;
    ``RUNSYNC_ENVIRONMENT=off`` records no environment at all).
    """
    global _current
    mode = resolve_mode(mode)
    remote = resolve_remote(mode, remote)
    silent = env_flag("RUNSYNC_SILENT")
    project = resolve_project(project)
    run_id = check_run_id(id) if id is not None else new_id()
    stream = check_stream_name(stream or _default_stream())
    tag_list = [str(t) for t in (tags or [])]
    config_data = json_safe(dict(config or {}))
    if mode == "disabled":
        info = RunInfo(id=run_id, name=name or new_name(), project=project, created=time.time(),
                       group=group, job_type=job_type, tags=tag_list, notes=notes)
        run = Run(info, None, stream, mode, Reporter(info.name, silent))
        run.config._data.update(config_data)
        return _set_current(run)
    settings = settings or Settings()
    warm_up()
    root = resolve_dir(dir)
    layout = RunLayout(root / run_id)
    os.makedirs(layout.history, exist_ok=True)
    info = RunInfo(id=run_id, name=name or new_name(), project=project, created=time.time(),
                   group=group, job_type=job_type, tags=tag_list, notes=notes)
    if not publish_doc(info, layout.run_json, layout.tmp):
        existing = load_doc(RunInfo, layout.run_json)
        if project is not None and existing.project != project and project != "default":
            raise RunsyncError(f"run {run_id} belongs to project {existing.project!r}, not {project!r}")
        info = existing
    reporter = Reporter(info.name, silent)
    main = open_pipeline(layout, stream, run_id, resume, settings, reporter)
    enc, flusher, history = main.enc, main.flusher, main.history
    media = MediaStore(layout.dir, stream, reporter, settings.memory_limit, flusher.wake, settings.merge_factor)
    flusher.media, enc.media_sink = media, media.add
    run = Run(info, layout.dir, stream, mode, reporter)
    run._enc, run._flusher = enc, flusher
    run.log = enc.log  # type: ignore[method-assign]
    run.config._data.update(flusher.config.config)
    if config_data:
        run.config.update(config_data)
    lifecycle.register(run)
    main.start()
    run._files = FileSaver(layout.dir, layout.stream(stream).dir / "files.json", reporter)
    run._sidecars.append(run._files)
    disable_code = env_switch("RUNSYNC_DISABLE_CODE", None if save_code is None else not save_code, default=False)
    _start_sidecars(run, layout, stream, run_id, main.claim.incarnation, settings, reporter,
                    system=env_switch("RUNSYNC_SYSTEM", system), console=env_switch("RUNSYNC_CONSOLE", console),
                    disable_code=disable_code)
    if mode == "online" and remote:
        run._live = start_live_sync(layout.dir, remote, settings.sync_interval, reporter)
    verb = "resumed" if history.incarnations else "started"
    where = "offline" if mode == "offline" else "online"
    reporter.info(f"run {info.name} ({run_id}) {verb} {where} in {layout.dir} [stream {stream}]")
    return _set_current(run)


def _start_sidecars(run: Run, layout: RunLayout, stream: str, run_id: str, incarnation: int, settings: Settings,
                    reporter: Reporter, *, system: bool, console: bool, disable_code: bool) -> None:
    """Start what records next to history; one that cannot start is reported and skipped."""
    stream_dir = layout.stream(stream).dir
    starters: list[tuple[str, Any]] = []
    report_env = lambda msg: reporter.problem("environment", msg)  # noqa: E731

    def record_environment() -> None:
        from .environment import write_environment

        write_environment(stream_dir, incarnation, disable_code=disable_code, on_error=report_env, tmp_dir=layout.tmp)

    if env_switch("RUNSYNC_ENVIRONMENT", None):
        starters.append(("environment record", lambda: OneShot("environment record", record_environment, report_env)))
    if system:
        starters.append(("system metrics", lambda: SystemRecorder(layout, stream, run_id, settings, reporter)))
    if console:
        def capture() -> Wrapped:
            from .console import ConsoleCapture

            cap = ConsoleCapture(layout.dir / "console", f"{stream}.{incarnation:06d}",
                                 roll_bytes=settings.console_roll_bytes,
                                 on_error=lambda msg: reporter.problem("console", f"console capture: {msg}"))
            return Wrapped("console capture", cap)
        starters.append(("console capture", capture))
    for what, make in starters:
        try:
            sc = make()
            sc.start()
        except Exception as e:
            reporter.problem(what, f"{what} not recorded: {type(e).__name__}: {e}")
            continue
        run._sidecars.append(sc)


def _set_current(run: Run) -> Run:
    global _current
    with _current_lock:
        _current = run
    return run


def current() -> Run | None:
    return _current


def log(data: Mapping[str, Any], step: int | None = None, commit: bool = True) -> None:
    """Log to the current run (the last one started with ``runsync.init()``)."""
    run = _current
    if run is None:
        raise RunsyncError("runsync.log() called with no active run; call runsync.init() first")
    run.log(data, step=step, commit=commit)


def finish(exit_code: int = 0) -> None:
    """Finish the current run, if any."""
    run = _current
    if run is not None:
        run.finish(exit_code=exit_code)
