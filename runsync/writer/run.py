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
from ..format.liveness import host_identity
from ..format.meta import ConfigDoc, RunInfo, State, Status, SummaryDoc, deep_update, json_safe, load_doc, publish_doc
from ..format.wal import MetaOp
from . import lifecycle
from .claim import claim_stream, recover
from .encoder import Encoder, RunFinishedError
from .flusher import Flusher
from .names import new_id, new_name
from .report import Reporter
from .segments import Segment, allocate_file_segment, memory_segment
from .live import start_live_sync, stop_live_sync
from .settings import Settings, env_flag, resolve_dir, resolve_mode, resolve_project, resolve_remote

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
            self._enc.forked = True
            self._enc.hold = True

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
            with self._enc.lock:
                self._enc.closed = True
            state = State.FINISHED if exit_code == 0 else State.FAILED
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
    if not publish_doc(info, layout.run_json):
        existing = load_doc(RunInfo, layout.run_json)
        if project is not None and existing.project != project and project != "default":
            raise RunsyncError(f"run {run_id} belongs to project {existing.project!r}, not {project!r}")
        info = existing
    reporter = Reporter(info.name, silent)
    st = layout.stream(stream)
    claim, history = claim_stream(layout, st, run_id, resume, settings.heartbeat_interval)
    summary = _load_or(SummaryDoc, st.summary)
    config_doc = _load_or(ConfigDoc, st.config)
    recover(layout, st, history, summary, config_doc)
    first = _first_segment(st, claim.incarnation, settings, reporter, layout)
    enc = Encoder(first, claim.incarnation, claim.first_seq, history.max_step + 1 if resume else 0,
                  settings.memory_limit, lambda n: reporter.problem(
                      "drop", "rows are being dropped: the disk cannot be written and the in-memory bound "
                      f"({settings.memory_limit >> 20} MiB) is reached"))
    now = time.time()
    host, boot = host_identity()
    status = Status(stream=stream, incarnation=claim.incarnation, state=State.RUNNING, host=host, boot_id=boot,
                    pid=claim.pid, pid_start=claim.pid_start, started=now, heartbeat=now,
                    heartbeat_interval=settings.heartbeat_interval)
    flusher = Flusher(enc, layout, st, settings, reporter, status, summary, config_doc, claim.time_floor)
    enc.on_switch = flusher.wake
    flusher._write_status(State.RUNNING)
    run = Run(info, layout.dir, stream, mode, reporter)
    run._enc, run._flusher = enc, flusher
    run.log = enc.log  # type: ignore[method-assign]
    run.config._data.update(config_doc.config)
    if config_data:
        run.config.update(config_data)
    lifecycle.register(run)
    flusher._fill_spares()  # here, not in the background: a new run starts ready and quiet
    flusher.start()
    if mode == "online" and remote:
        run._live = start_live_sync(layout.dir, remote, settings.sync_interval, reporter)
    verb = "resumed" if history.incarnations else "started"
    where = "offline" if mode == "offline" else "online"
    reporter.info(f"run {info.name} ({run_id}) {verb} {where} in {layout.dir} [stream {stream}]")
    return _set_current(run)


def _first_segment(st: Any, inc: int, settings: Settings, reporter: Reporter, layout: RunLayout) -> Segment:
    try:
        return allocate_file_segment(st.segment(inc, 0), settings.segment_size, inc, 0)
    except OSError as e:
        reporter.problem("disk", f"cannot create the write-ahead log in {layout.dir}: {e.strerror or e}; "
                         "logging to memory until the disk works again")
        return memory_segment(1 << 20, inc, 0)


def _load_or(cls: Any, path: Path) -> Any:
    try:
        return load_doc(cls, path)
    except FileNotFoundError:
        return cls()


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
