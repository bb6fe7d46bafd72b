"""W&B's ``resume="auto"`` (or ``True``) without an id: continue the run this script last left unfinished.

W&B keeps the last run's id in a file of its working directory and removes it
when the run finishes cleanly. Here the hint is ``<root>/.resume/<key>.json``
(spec §2.1, since 1.3), keyed by the working directory and the script, so a
requeued job that runs the same command from the same place continues its run,
while other scripts sharing the root do not. I/O only in ``init()`` and ``finish()``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from ..format.errors import FormatError
from ..format.layout import ID_RE, resume_hint_path
from ..format.meta import ResumeHint, load_doc, save_doc

__all__ = ["hint_path", "hinted_id", "write_hint", "clear_hint"]


def _identity() -> tuple[str, str]:
    script = sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>"
    if script not in ("-c", "<interactive>", ""):
        script = os.path.abspath(script)
    return os.getcwd(), script


def hint_path(root: Path) -> Path:
    cwd, script = _identity()
    key = hashlib.sha256(f"{cwd}\0{script}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return resume_hint_path(root, key)


def hinted_id(root: Path) -> str | None:
    """The id in this script's hint, if it names a run that exists under ``root``."""
    path = hint_path(root)
    try:
        hint = load_doc(ResumeHint, path)
    except (FileNotFoundError, FormatError, OSError):
        return None
    if not isinstance(hint.id, str) or not ID_RE.match(hint.id) or not (root / hint.id / "run.json").is_file():
        return None
    return hint.id


def write_hint(root: Path, run_id: str) -> Path | None:
    """Remember ``run_id`` for the next start of this script; None (and no error) if it cannot be written."""
    path = hint_path(root)
    cwd, script = _identity()
    try:
        os.makedirs(path.parent, exist_ok=True)
        save_doc(ResumeHint(id=run_id, cwd=cwd, script=script, time=time.time()), path)
    except OSError:
        return None
    return path


def clear_hint(path: Path, run_id: str) -> None:
    """At a clean finish: the next start is a new run (unless the hint now names another run)."""
    try:
        if load_doc(ResumeHint, path).id == run_id:
            os.unlink(path)
    except (FileNotFoundError, FormatError, OSError):
        pass
