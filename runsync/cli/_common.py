"""Helpers shared by the command modules: tables, number and age formatting, common options."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ..format.errors import RunsyncError

DEFAULT_DIR = "$RUNSYNC_DIR or ./runs"


def runs_dir(arg: str | None) -> Path:
    """The runs root to read: a directory, or a remote URL read through the local cache."""
    from ..reader.remote import local_root

    return local_root(arg)


def age(t: float | None) -> str:
    if t is None:
        return "-"
    d = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= size:
            return f"{d / size:.0f}{unit} ago"
    return f"{d:.0f}s ago"


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


REDUCE_CHOICES = ("mean", "min", "max")  # --reduce of show and watch (reader.streams.REDUCTIONS)
SUMMARY_NOTE = ("(rankN) after a summary value: the run's streams set different values; shown is that "
                "stream's, the first in reader order (spec §3.3). `runsync show RUN` lists each stream's.")


def summary_source(record: dict[str, Any], key: str) -> str:
    """`` (rank0)`` if the run's streams set different values of summary ``key`` (the stream shown), else ``""``."""
    src = (record.get("summary_from") or {}).get(key)
    return f" ({src})" if src else ""


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, allow_nan=True))


def flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.extend(flat(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def remote_arg(value: str | None) -> str:
    url = value or os.environ.get("RUNSYNC_REMOTE")
    if not url:
        raise RunsyncError("no REMOTE given and RUNSYNC_REMOTE is not set")
    return url


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def retry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, default=8, help="retries of a transient network error (default 8)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="give up on one operation after S seconds of retrying (default 300)")


def storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", "-o", dest="storage_option", action="append", metavar="KEY=VALUE",
                   help="an fsspec option for the remote's backend (repeatable; dotted keys nest; values are "
                   "JSON where they parse, e.g. -o client_kwargs.endpoint_url=http://127.0.0.1:9000 -o anon=true); "
                   "also $RUNSYNC_STORAGE_OPTIONS as a JSON object. Credentials belong in the backend's own "
                   "configuration or environment, never here")


def storage_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options for the remote's fsspec filesystem, from $RUNSYNC_STORAGE_OPTIONS and --storage-option."""
    from ..syncer.remote import env_storage_options

    out: dict[str, Any] = env_storage_options()
    for item in getattr(args, "storage_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RunsyncError(f"--storage-option {item!r}: expected KEY=VALUE")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RunsyncError(f"--storage-option {item!r}: {part!r} is already set to a value")
        node[last] = parsed
    return out
