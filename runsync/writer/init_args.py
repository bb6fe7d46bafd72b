"""``init()``'s arguments, as runsync's and W&B's scripts pass them: defaults from the environment, checks.

W&B's keyword arguments are all accepted: those that mean something here are
used (entity, job_type, notes, tags, group → run.json; resume with W&B's
meaning; config filters; a few W&B settings), the rest are accepted with one
notice each (README "Coming from W&B"). Nothing here does I/O but reading
the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..format.errors import RunsyncError
from .config import as_config_dict
from .settings import Settings, env, notice_once

__all__ = ["InitArgs", "RESUME_MODES", "resume_mode", "check_resume", "resolve_tags", "resolve_settings",
           "filter_config", "IGNORED_WANDB_ARGS"]

RESUME_MODES = ("allow", "must", "never", "auto")

# W&B's init() arguments that have no meaning offline here: accepted, one notice each.
IGNORED_WANDB_ARGS = {
    "anonymous": "there is no account offline",
    "force": "there is no login offline",
    "magic": "runsync does not patch frameworks on its own",
    "monitor_gym": "gym videos are not recorded",
    "resume_from": "rewinding a run is not supported; use init(id=..., resume='must') and log with step=",
    "fork_from": "forking a run is not supported; start a new run with its own id",
}

# W&B settings that mean something here; the rest are ignored with one notice.
_WANDB_SETTINGS_USED = ("console", "silent", "mode", "_disable_stats", "x_disable_stats", "disable_code",
                        "save_code", "project", "run_id", "run_name", "run_group", "run_job_type", "run_notes",
                        "run_tags", "entity", "resume", "root_dir", "allow_val_change")


def resume_mode(resume: Any, source: str = "init(resume=...)") -> str:
    """W&B's ``resume`` as one of ``none`` (False/None), ``allow``, ``must``, ``never``, ``auto`` (True)."""
    if resume is None or resume is False:
        return "none"
    if resume is True:
        return "auto"
    if isinstance(resume, str):
        r = resume.strip().lower()
        if r in ("", "false", "0", "no", "off"):
            return "none"
        if r in ("true", "1", "yes", "on"):
            return "auto"
        if r in RESUME_MODES:
            return r
    raise ValueError(f"{source}: {resume!r} is not one of True, False, 'allow', 'must', 'never', 'auto'")


def check_resume(mode: str, run_id: str, exists: bool, id_given: bool, where: str) -> bool:
    """Whether to continue an existing run, as W&B decides; a clear error where W&B raises one."""
    if mode == "must":
        if not id_given:
            raise RunsyncError("init(resume='must') needs the id of the run to continue: init(id=...), "
                               "RUNSYNC_RUN_ID or WANDB_RUN_ID")
        if not exists:
            raise RunsyncError(f"init(resume='must'): there is no run {run_id} in {where} to continue; check the id "
                               "and dir (RUNSYNC_DIR / WANDB_DIR), or pass resume='allow' to start it if missing")
        return True
    if mode == "never":
        if exists:
            raise RunsyncError(f"init(resume='never'): run {run_id} already exists in {where}; pass another id, or "
                               "resume='allow' to continue it")
        return False
    return mode in ("allow", "auto")


def resolve_tags(tags: Any) -> list[str]:
    """Tags from ``init(tags=)``, else ``$RUNSYNC_TAGS`` / ``$WANDB_TAGS`` (comma-separated)."""
    if tags is None:
        raw = env("RUNSYNC_TAGS")
        return [t.strip() for t in raw.split(",") if t.strip()] if raw else []
    if isinstance(tags, str):
        return [tags]
    return [str(t) for t in tags]


@dataclass
class InitArgs:
    """What ``init()`` uses of W&B's settings object (``wandb.Settings(...)`` or a dict)."""

    settings: Settings
    overrides: dict[str, Any] = field(default_factory=dict)


def resolve_settings(settings: Any) -> InitArgs:
    """A runsync ``Settings``; W&B settings given to it (or as a dict) become overrides of init's arguments."""
    if settings is None:
        return InitArgs(Settings())
    if isinstance(settings, Settings):
        base, foreign = settings, settings.wandb
    elif isinstance(settings, Mapping):
        base = Settings(**dict(settings))
        foreign = base.wandb
    else:
        notice_once("settings-type", f"init(settings=...): a {type(settings).__module__}.{type(settings).__name__} "
                    "is not runsync.Settings; ignored (pass runsync.Settings(...) or a dict)")
        return InitArgs(Settings())
    used = {k: v for k, v in foreign.items() if k in _WANDB_SETTINGS_USED and v is not None}
    ignored = sorted(k for k in foreign if k not in _WANDB_SETTINGS_USED)
    if ignored:
        notice_once("settings:" + ",".join(ignored), f"W&B settings without meaning offline ignored: "
                    f"{', '.join(ignored)}")
    out: dict[str, Any] = {}
    if "console" in used:
        out["console"] = str(used["console"]).lower() not in ("off", "false", "0")
    if "silent" in used:
        out["silent"] = bool(used["silent"])
    if used.get("_disable_stats") or used.get("x_disable_stats"):
        out["system"] = False
    if "disable_code" in used:
        out["save_code"] = not bool(used["disable_code"])
    if "save_code" in used:
        out["save_code"] = bool(used["save_code"])
    for src, dst in (("mode", "mode"), ("project", "project"), ("run_id", "id"), ("run_name", "name"),
                     ("run_group", "group"), ("run_job_type", "job_type"), ("run_notes", "notes"),
                     ("run_tags", "tags"), ("entity", "entity"), ("resume", "resume"), ("root_dir", "dir"),
                     ("allow_val_change", "allow_val_change")):
        if src in used:
            out[dst] = used[src]
    if str(out.get("mode", "")).lower() in ("online", "shared"):
        notice_once("wandb-settings-mode", f"W&B setting mode={out.pop('mode')!r} ignored: runsync logs offline; "
                    "it goes online only with RUNSYNC_MODE=online or init(mode='online', remote=...)")
    return InitArgs(base, out)


def filter_config(config: Any, include: Any, exclude: Any) -> dict[str, Any]:
    """``init(config=)`` as a dict (a mapping, ``argparse.Namespace`` or absl flags), filtered as W&B does."""
    data = as_config_dict(config, "init(config=...)")
    if include is not None:
        keep = set(include)
        data = {k: v for k, v in data.items() if k in keep}
    if exclude is not None:
        drop = set(exclude)
        data = {k: v for k, v in data.items() if k not in drop}
    return data
