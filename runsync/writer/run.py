"""``runsync.init()`` and the ``Run`` it returns: the writer's public API."""

from __future__ import annotations

import fnmatch
import os
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..format.errors import RunsyncError
from ..format.history import warm_up
from ..format.layout import RunLayout, check_run_id, check_stream_name
from ..format.meta import RunInfo, State, json_safe, load_doc, publish_doc
from ..format.wal import MetaOp
from . import auto_resume, lifecycle
from .config import Config, Summary
from .encoder import Encoder, RunFinishedError
from .files import POLICIES, FileSaver, resolve_save
from .init_args import IGNORED_WANDB_ARGS, check_resume, filter_config, resolve_settings, resolve_tags, resume_mode
from .metrics import Metrics
from .flusher import Flusher
from .live import start_live_sync, stop_live_sync
from .media_store import MediaStore
from .names import new_id, new_name
from .pipeline import open_pipeline
from .reporter import Reporter
from .settings import (
    Settings,
    env,
    env_flag,
    env_switch,
    notice_once,
    resolve_dir,
    resolve_mode,
    resolve_project,
    resolve_remote,
    resolve_wal_dir,
)
from .sidecar import OneShot, Sidecar, Wrapped
from .system_table import SystemRecorder
from .wandb_run import NO_DATA, WandbRunMixin, bind_log
from .wandb_run import sync_tensorboard as start_tensorboard_sync

__all__ = ["Run", "init", "current", "log", "finish"]

_current: Run | None = None
_current_lock = threading.Lock()


class Run(WandbRunMixin):
    """A run being written. Create with ``runsync.init()``; end with ``finish()``.

    ``log()`` goes straight to the encoder's hot path: it never does file I/O
    and never raises for runsync's own failures (bad input raises TypeError/ValueError).
    ``name``, ``tags`` and the rest of run.json are fixed at ``init()`` (spec §3.1).
    """

    id: str
    project: str
    group: str | None
    job_type: str | None
    entity: str | None
    dir: Path | None
    stream: str
    mode: str
    resumed: bool

    def __init__(self, info: RunInfo, dir: Path | None, stream: str, mode: str, reporter: Reporter) -> None:
        self.id = info.id
        self._name = info.name
        self.project = info.project
        self.group = info.group
        self.job_type = info.job_type
        self.entity = info.entity
        self._tags = tuple(info.tags)
        self._notes = info.notes
        self.dir = dir
        self.stream = stream
        self.mode = mode
        self.resumed = False
        self._reporter = reporter
        self._enc: Encoder | None = None
        self._flusher: Flusher | None = None
        self._finished = False
        self._finish_lock = threading.Lock()
        self.config = Config(self, {})
        self.summary = Summary(self)
        self._local_summary: dict[str, Any] = {}
        self._metrics: Metrics | None = None
        self._resume_hint: Path | None = None  # resume="auto" without an id: cleared at a clean finish
        self._live: Any = None
        self._sidecars: list[Sidecar] = []
        self._files: FileSaver | None = None
        # the encoder's log once the run is open
        self.log = bind_log(self, self._log_disabled, Run.log.__doc__)  # type: ignore[method-assign]

    # -- logging --------------------------------------------------------------------
    def log(self, data: Any = NO_DATA, step: int | None = None,  # noqa: F811
            commit: bool | None = None, sync: bool | None = None) -> None:
        """Record ``data`` (key → number/bool/str/None/media, nested dicts flattened with '/').

        ``step`` defaults to one more than the previous committed step;
        ``commit=False`` keeps the step for the next call, and ``log()`` with no
        data commits it (as W&B). A list or array of numbers is stored as a
        histogram; a 1-element array or tensor as its number. (Bound per instance.)
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
        returns the stored names. Names matching a glob of ``$RUNSYNC_SAVE_IGNORE_GLOBS``
        (or W&B's ``$WANDB_IGNORE_GLOBS``, comma-separated) are not stored.
        """
        if policy not in POLICIES:
            raise ValueError(f"save(policy={policy!r}): policy must be one of {', '.join(POLICIES)}")
        files = resolve_save(path, base_path)
        ignore = [g.strip() for g in (env("RUNSYNC_SAVE_IGNORE_GLOBS") or "").split(",") if g.strip()]
        if ignore:
            files = [(n, p) for n, p in files if not any(fnmatch.fnmatch(n, g) for g in ignore)]
        if self._finished:
            raise RunFinishedError("save() called after finish()")
        if self._files is not None and files:
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
    def finish(self, exit_code: int | None = 0, quiet: bool | None = None) -> None:
        """Flush everything and mark the run finished (``exit_code`` ≠ 0: failed). Idempotent."""
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
        exit_code = exit_code or 0
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
            if self._resume_hint is not None and state == State.FINISHED:
                auto_resume.clear_hint(self._resume_hint, self.id)
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
        if t is None or v is None:
            self.finish(exit_code=0)
            return
        if isinstance(v, SystemExit):
            code, cause = lifecycle.exit_cause(v.code)
            if cause is not None:
                self._set_error(cause)
            self.finish(exit_code=code)
            return
        self._set_error(lifecycle.describe_error(v))
        # Python prints the traceback only after this block, when capture has stopped: the log gets it now
        self._record_console("".join(traceback.format_exception(t, v, tb)))
        self.finish(exit_code=1)

    def _set_error(self, error: str) -> None:
        """The cause of a failure, for status.json's ``error`` (spec §7.2); set before finishing."""
        if not self._finished:
            # status.json's error is the most recent problem (spec §7.2); for a failed stream, its cause
            self._reporter.last_error = error

    def _record_console(self, text: str) -> None:
        for sc in self._sidecars:
            obj = getattr(sc, "obj", None)
            record = getattr(obj, "record", None)
            if record is not None:
                try:
                    record(text)
                except Exception:  # the traceback in the log is a convenience; finishing matters
                    pass

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
    config: Any = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    resume: bool | str | None = None,
    *,
    job_type: str | None = None,
    notes: str | None = None,
    entity: str | None = None,
    stream: str | None = None,
    settings: Any = None,
    remote: str | None = None,
    system: bool | None = None,
    console: bool | None = None,
    save_code: bool | None = None,
    wal_dir: str | os.PathLike[str] | None = None,
    reinit: bool | str | None = None,
    allow_val_change: bool | None = None,
    config_exclude_keys: list[str] | None = None,
    config_include_keys: list[str] | None = None,
    sync_tensorboard: bool | None = None,
    tensorboard: bool | None = None,
    anonymous: str | None = None,
    force: bool | None = None,
    magic: Any = None,
    monitor_gym: bool | None = None,
    resume_from: str | None = None,
    fork_from: str | None = None,
) -> Run:
    """Start (or continue, see ``resume``) a run and return it.

    ``dir`` is the root holding run directories (default ``$RUNSYNC_DIR`` or
    ``./runs``); the run lives in ``<dir>/<id>``. Several processes may write one
    run at once, each in its own ``stream`` (default: ``main``, or ``rank<N>``
    when torch-style RANK/WORLD_SIZE are set).

    ``resume`` has W&B's meaning: ``"allow"`` (or ``True``/``"auto"``) continues
    run ``id`` if it exists and starts it if not; ``"must"`` continues it and
    refuses a missing one; ``"never"`` refuses an existing one; ``False`` (the
    default) starts a new run, or joins an existing one in a stream that has no
    data yet. ``id``, ``resume``, ``project``, ``name``, ``group``, ``tags``,
    ``notes``, ``job_type``, ``entity`` and ``dir`` default to ``$RUNSYNC_*``, else
    W&B's ``$WANDB_*`` variables (README "Coming from W&B"). ``config`` may be a
    dict, an ``argparse.Namespace`` or absl flags. Every other argument of
    ``wandb.init()`` is accepted: see the README for what each does here.

    ``mode="online"`` (or ``RUNSYNC_MODE=online``) also starts a separate
    process that pushes the run to ``remote`` (or ``$RUNSYNC_REMOTE``) every
    ``settings.sync_interval`` seconds; training never waits for it, and
    ``finish()`` waits for its final push at most ``settings.sync_timeout`` s.

    Next to history, a run records system metrics (``system=False`` or
    ``RUNSYNC_SYSTEM=off`` to disable), the console output (``console=False`` or
    ``RUNSYNC_CONSOLE=off``) and the code and environment (``save_code=False`` or
    ``RUNSYNC_DISABLE_CODE=true`` to record no git data and no patch;
    ``RUNSYNC_ENVIRONMENT=off`` records no environment at all).

    ``wal_dir`` (or ``$RUNSYNC_WAL_DIR``) keeps the write-ahead log on a local
    disk while parts and documents go to the run directory: for a run directory
    on a network or FUSE mount. Only a process on this host can then see or
    recover rows not yet in a part (spec §8.5).
    ``sync_tensorboard=True``: TensorBoard ``SummaryWriter`` calls also log to the current run
    (``runsync.integrations.tensorboard.patch()``).
    """
    global _current
    resolved = resolve_settings(settings)
    over = resolved.overrides
    settings = resolved.settings
    for arg, value in (("anonymous", anonymous), ("force", force), ("magic", magic), ("monitor_gym", monitor_gym),
                       ("resume_from", resume_from), ("fork_from", fork_from)):
        if value not in (None, False, "never"):
            notice_once(f"init-{arg}", f"init({arg}=...) ignored: {IGNORED_WANDB_ARGS[arg]}")
    previous = _reinit(reinit)
    if previous is not None:
        return previous
    mode = resolve_mode(mode if mode is not None else over.get("mode"))
    remote = resolve_remote(mode, remote)
    silent = bool(over["silent"]) if "silent" in over else env_flag("RUNSYNC_SILENT")
    project = resolve_project(project or over.get("project"))
    id_given = id if id is not None else over.get("id") or env("RUNSYNC_RUN_ID")
    run_id = check_run_id(id_given) if id_given is not None else new_id()
    rmode = resume_mode(resume if resume is not None else over.get("resume", env("RUNSYNC_RESUME")),
                        "init(resume=...)" if resume is not None else "RUNSYNC_RESUME / WANDB_RESUME")
    stream = check_stream_name(stream or _default_stream())
    info = RunInfo(id=run_id, name=name or over.get("name") or env("RUNSYNC_NAME") or new_name(), project=project,
                   created=time.time(), group=group or over.get("group") or env("RUNSYNC_GROUP"),
                   job_type=job_type or over.get("job_type") or env("RUNSYNC_JOB_TYPE"),
                   tags=resolve_tags(tags if tags is not None else over.get("tags")),
                   notes=notes or over.get("notes") or env("RUNSYNC_NOTES"),
                   entity=entity or over.get("entity") or env("RUNSYNC_ENTITY"))
    config_data = json_safe(filter_config(config, config_include_keys, config_exclude_keys))
    allow_change = bool(allow_val_change if allow_val_change is not None else over.get("allow_val_change", False))
    if mode == "disabled":
        run = Run(info, None, stream, mode, Reporter(info.name, silent))
        run.config._data.update(config_data)
        run.config._allow_val_change = allow_change
        return _set_current(run)
    warm_up()
    root = resolve_dir(dir if dir is not None else over.get("dir"))
    hint: Path | None = None
    if rmode == "auto" and id_given is None:  # W&B: continue what this script left unfinished (spec §2.1)
        hinted = auto_resume.hinted_id(root)
        if hinted is not None:
            run_id = id_given = hinted
            info.id = run_id
        hint = auto_resume.write_hint(root, run_id)
    layout = RunLayout(root / run_id)
    resuming = check_resume(rmode, run_id, layout.run_json.exists(), id_given is not None, str(root))
    os.makedirs(layout.history, exist_ok=True)
    if not publish_doc(info, layout.run_json, layout.tmp):
        existing = load_doc(RunInfo, layout.run_json)
        if project is not None and existing.project != project and project != "default":
            raise RunsyncError(f"run {run_id} belongs to project {existing.project!r}, not {project!r}")
        info = existing
    reporter = Reporter(info.name, silent)
    wal_root = resolve_wal_dir(wal_dir)
    main = open_pipeline(layout, stream, run_id, resuming, settings, reporter, wal_root)
    enc, flusher, history = main.enc, main.flusher, main.history
    media = MediaStore(layout.dir, stream, reporter, settings.memory_limit, flusher.wake, settings.merge_factor)
    flusher.media, enc.media_sink = media, media.add
    run = Run(info, layout.dir, stream, mode, reporter)
    run._enc, run._flusher = enc, flusher
    run.resumed = bool(history.incarnations)
    run._resume_hint = hint
    run.log = bind_log(run, enc.log, Run.log.__doc__)  # type: ignore[method-assign]
    run.config._data.update(flusher.config.config)
    run.config._allow_val_change = allow_change
    if config_data:
        # a resumed script passes its config again; W&B accepts the values it had
        run.config.update(config_data, allow_val_change=allow_change or run.resumed)
    lifecycle.register(run)
    main.start()
    run._files = FileSaver(layout.dir, layout.stream(stream).dir / "files.json", reporter)
    run._sidecars.append(run._files)
    save_code = save_code if save_code is not None else over.get("save_code")
    disable_code = env_switch("RUNSYNC_DISABLE_CODE", None if save_code is None else not save_code, default=False)
    _start_sidecars(run, layout, stream, run_id, main.claim.incarnation, settings, reporter,
                    system=env_switch("RUNSYNC_SYSTEM", system if system is not None else over.get("system")),
                    console=env_switch("RUNSYNC_CONSOLE", console if console is not None else over.get("console")),
                    disable_code=disable_code, wal_root=wal_root)
    if mode == "online" and remote:
        run._live = start_live_sync(layout.dir, remote, settings.sync_interval, reporter)
    verb = "resumed" if history.incarnations else "started"
    where = "offline" if mode == "offline" else "online"
    reporter.info(f"run {info.name} ({run_id}) {verb} {where} in {layout.dir} [stream {stream}]")
    _set_current(run)
    if sync_tensorboard or tensorboard:
        start_tensorboard_sync(run)
    return run


def _reinit(reinit: bool | str | None) -> Run | None:
    """W&B's ``reinit`` when a run is active: finish it (True, ``"finish_previous"``), return it
    (``"return_previous"``), or leave it running and start another (the default, ``"create_new"``)."""
    run = _current
    if run is None or run.finished:
        return None
    r = reinit.strip().lower() if isinstance(reinit, str) else reinit
    if r is True or r == "finish_previous":
        run.finish()
        return None
    if r == "return_previous":
        return run
    if r in (None, False, "default", "create_new"):
        return None
    raise ValueError(f"init(reinit={reinit!r}): use True, False, 'finish_previous', 'return_previous' or "
                     "'create_new'")


def _start_sidecars(run: Run, layout: RunLayout, stream: str, run_id: str, incarnation: int, settings: Settings,
                    reporter: Reporter, *, system: bool, console: bool, disable_code: bool,
                    wal_root: Path | None = None) -> None:
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
        starters.append(("system metrics", lambda: SystemRecorder(layout, stream, run_id, settings, reporter, wal_root)))
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


def log(data: Any = NO_DATA, step: int | None = None, commit: bool | None = None,
        sync: bool | None = None) -> None:
    """Log to the current run (the last one started with ``runsync.init()``); ``log()`` alone commits the step."""
    run = _current
    if run is None:
        raise RunsyncError("runsync.log() called with no active run; call runsync.init() first")
    run.log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if any (``exit_code`` ≠ 0: failed)."""
    run = _current
    if run is not None:
        run.finish(exit_code=exit_code or 0)
