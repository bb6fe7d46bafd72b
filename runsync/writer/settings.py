"""Writer settings: defaults, environment variables, and their validation."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings", "MODES", "WANDB_ENV", "env", "env_bool", "env_flag", "env_switch"]

MODES = ("offline", "online", "disabled")

# A W&B script's environment is honoured where runsync's own variable is unset (README "Coming from W&B").
WANDB_ENV = {
    "RUNSYNC_RUN_ID": "WANDB_RUN_ID",
    "RUNSYNC_RESUME": "WANDB_RESUME",
    "RUNSYNC_PROJECT": "WANDB_PROJECT",
    "RUNSYNC_ENTITY": "WANDB_ENTITY",
    "RUNSYNC_NAME": "WANDB_NAME",
    "RUNSYNC_NOTES": "WANDB_NOTES",
    "RUNSYNC_TAGS": "WANDB_TAGS",
    "RUNSYNC_GROUP": "WANDB_RUN_GROUP",
    "RUNSYNC_JOB_TYPE": "WANDB_JOB_TYPE",
    "RUNSYNC_DIR": "WANDB_DIR",
    "RUNSYNC_SILENT": "WANDB_SILENT",
    "RUNSYNC_MODE": "WANDB_MODE",
    "RUNSYNC_DISABLE_CODE": "WANDB_DISABLE_CODE",
    "RUNSYNC_SAVE_IGNORE_GLOBS": "WANDB_IGNORE_GLOBS",
}


def env(name: str) -> str | None:
    """``$name`` if set and non-empty, else its W&B equivalent (``WANDB_ENV``), else None."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        alias = WANDB_ENV.get(name)
        value = os.environ.get(alias) if alias else None
    return value if value is not None and value.strip() else None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_warned: set[str] = set()


def env_bool(name: str, default: bool) -> bool:
    """A boolean ``RUNSYNC_*`` variable: one set of spellings everywhere (README shows ``1``/``0``).

    ``1 true yes on`` and ``0 false no off``, any case; unset or empty gives ``default``;
    anything else gives ``default`` too, with one warning naming the variable and the spellings.
    """
    raw = (env(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if name not in _warned:
        _warned.add(name)
        warnings.warn(f"runsync: {name}={env(name)!r} is not a boolean; use 1 or 0 "
                      f"(also true/false, yes/no, on/off); using the default ({int(default)})", stacklevel=3)
    return default


def env_flag(name: str) -> bool:
    """A boolean variable that is off unless set (``RUNSYNC_SILENT``, or W&B's where unset)."""
    return env_bool(name, False)


@dataclass(frozen=True)
class Settings:
    """Tunables of the writer. Defaults suit a training job; tests shorten them."""

    flush_interval: float = 1.0  # seconds between WAL drains / msync (power-loss window)
    part_interval: float = 10.0  # at most this many seconds before stock readers see new rows
    part_rows: int = 1 << 20  # write a part once this many rows are pending
    merge_factor: int = 8  # merge this many same-level small parts into one
    max_merge_rows: int = 8 << 20  # merged parts stay at most this many rows
    segment_size: int = 16 << 20  # bytes per WAL segment file
    memory_limit: int = 256 << 20  # bytes of non-durable buffering when the disk fails
    heartbeat_interval: float = 5.0
    finish_timeout: float = 60.0  # finish() waits at most this long for the final flush
    sync_interval: float = 5.0  # online mode: seconds between live pushes
    sync_timeout: float = 30.0  # online mode: finish() waits at most this long for the final push
    system_interval: float = 2.0  # seconds between system-metric samples (spec §14)
    system_window: float = 30.0  # samples are averaged (mean, max) over this many seconds
    console_roll_bytes: int = 8 << 20  # a console log file is closed and a new one begun past this size

    def __post_init__(self) -> None:
        if self.merge_factor < 2:
            raise ValueError(f"merge_factor must be at least 2, got {self.merge_factor}")
        for name in ("flush_interval", "part_interval", "heartbeat_interval", "finish_timeout", "system_interval",
                     "system_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.segment_size < 1 << 16:
            raise ValueError(f"segment_size must be at least 64 KiB, got {self.segment_size}")

    @property
    def wandb(self) -> dict[str, Any]:
        """W&B settings given to the constructor (``wandb.Settings(console="off", ...)``), kept for ``init()``."""
        return dict(getattr(self, "_wandb", {}))

    def with_(self, **kw: Any) -> Settings:
        names = {f.name for f in fields(self)}
        bad = set(kw) - names
        if bad:
            raise TypeError(f"unknown setting(s): {sorted(bad)}; known: {sorted(names)}")
        return replace(self, **kw)


_dataclass_init = Settings.__init__


def _settings_init(self: Settings, *args: Any, **kw: Any) -> None:
    """Settings(...) also takes W&B's settings (``start_method``, ``console``, ``_disable_stats``...), never a
    TypeError: they are kept in ``.wandb`` for ``init()``, which uses the few that mean something here."""
    names = {f.name for f in fields(Settings)}
    foreign = {k: kw.pop(k) for k in list(kw) if k not in names}
    _dataclass_init(self, *args, **kw)
    object.__setattr__(self, "_wandb", foreign)


Settings.__init__ = _settings_init  # type: ignore[method-assign]


def env_switch(name: str, value: bool | None, default: bool = True) -> bool:
    """An explicit ``value`` wins; else the variable ``name`` (``env_bool``); else ``default``."""
    if value is not None:
        return bool(value)
    return env_bool(name, default)


_notices: set[str] = set()


def notice_once(key: str, message: str) -> None:
    """Print ``message`` once per process (unless silent): a W&B setting runsync accepts but treats differently."""
    if key in _notices:
        return
    _notices.add(key)
    if not env_flag("RUNSYNC_SILENT"):
        print(f"runsync: {message}", file=sys.stderr, flush=True)


def resolve_mode(mode: str | None) -> str:
    """``init(mode=)``, else ``$RUNSYNC_MODE``, else W&B's ``$WANDB_MODE``, else offline.

    W&B's ``dryrun`` is ``offline``. ``WANDB_MODE=online`` stays offline with one
    notice: runsync only uses the network when asked with runsync's own setting.
    """
    if mode is None and not (os.environ.get("RUNSYNC_MODE") or "").strip():
        wandb_mode = (os.environ.get("WANDB_MODE") or "").strip().lower()
        if wandb_mode in ("online", "shared", "run"):
            notice_once("wandb-mode", f"WANDB_MODE={wandb_mode} ignored: runsync logs offline; it goes online "
                        "only with RUNSYNC_MODE=online or init(mode='online', remote=...)")
            wandb_mode = "offline"
        mode = wandb_mode or None
    mode = mode or os.environ.get("RUNSYNC_MODE") or "offline"
    mode = mode.strip().lower()
    if mode == "dryrun":
        mode = "offline"
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)} (from init(mode=...), RUNSYNC_MODE or "
                         "WANDB_MODE)")
    return mode


def resolve_dir(dir: str | os.PathLike[str] | None) -> Path:
    return Path(dir if dir is not None else env("RUNSYNC_DIR") or "runs").expanduser()


def resolve_remote(mode: str, remote: str | None) -> str | None:
    remote = remote or os.environ.get("RUNSYNC_REMOTE") or None
    if mode == "online" and not remote:
        raise ValueError("mode 'online' needs a remote: init(remote=URL) or RUNSYNC_REMOTE")
    return remote


def resolve_project(project: str | None) -> str:
    return project or env("RUNSYNC_PROJECT") or "default"


def resolve_wal_dir(wal_dir: str | os.PathLike[str] | None) -> Path | None:
    """Where the WAL goes when not in the run directory: ``init(wal_dir=)`` or ``$RUNSYNC_WAL_DIR`` (spec §8.5).

    Meant for a local disk when the run directory is on a network or FUSE
    mount. Unset (or empty): the run directory.
    """
    raw = wal_dir if wal_dir is not None else (os.environ.get("RUNSYNC_WAL_DIR") or None)
    if raw is None or str(raw).strip() == "":
        return None
    return Path(raw).expanduser().absolute()
