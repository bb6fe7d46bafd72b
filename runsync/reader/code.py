"""The recorded code and environment of a run, and ``restore``: that code state back as a git worktree.

A writer records, per stream and incarnation, ``environment.<inc>.json`` and (when the working tree had
changes) ``diff.<inc>.patch`` (see runsync.writer.environment). ``restore`` checks out the recorded commit
into a new, detached worktree of a repository that has it and applies the patch there; it never fetches or
clones (no network), and when no repository at hand has the commit it says exactly what to run instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format.errors import CorruptFileError, FormatError, RunsyncError
from ..format.layout import RunLayout
from ..format.version import check_version

__all__ = ["RestoreResult", "describe", "environment_files", "load_environment", "restore"]

_ENV_RE = re.compile(r"^environment\.([0-9]{6})\.json$")
GIT_TIMEOUT = 600.0  # a worktree checkout of a large repository takes a while


def environment_files(stream_dir: Path) -> list[tuple[int, Path]]:
    """(incarnation, path) of the environment documents of one stream, ascending."""
    try:
        names = os.listdir(stream_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted((int(m.group(1)), stream_dir / n) for n in names if (m := _ENV_RE.match(n)))


def load_environment(run_dir: Path, stream: str | None = None) -> tuple[dict[str, Any], Path | None]:
    """(latest environment document of ``stream``, path of its patch or None).

    Default stream: ``main`` if it has a document, else the first stream (by name) that has one.
    """
    layout = RunLayout(Path(run_dir))
    if stream is not None:
        candidates = [layout.stream(stream)]
    else:
        streams = layout.streams()
        candidates = sorted(streams, key=lambda s: (s.name != "main", s.name))
    for st in candidates:
        files = environment_files(st.dir)
        if not files:
            continue
        _inc, path = files[-1]
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            raise CorruptFileError(f"cannot read the environment document ({e})", path) from None
        if not isinstance(doc, dict):
            raise CorruptFileError("expected a JSON object", path)
        check_version(doc.get("format", "1.0"), path)
        git = doc.get("git")
        patch_name = git.get("patch") if isinstance(git, dict) else None
        patch = st.dir / patch_name if isinstance(patch_name, str) and "/" not in patch_name else None
        return doc, patch if patch is not None and patch.is_file() else None
    where = f"stream {stream!r}" if stream is not None else "any stream"
    raise FormatError(f"no environment record in {where} of this run (it is written just after init(); runs from "
                      "runsync versions without it, or whose writer died within its first second, have none)", run_dir)


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore`` did. ``applied`` is False only when a recorded patch did not apply (see ``apply_error``)."""

    dest: Path
    repo: Path
    commit: str
    branch: str | None
    remote_url: str | None
    patch: Path | None
    applied: bool
    apply_error: str | None = None
    omitted: list[dict[str, str]] = field(default_factory=list)


def _git(cwd: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return subprocess.run(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, check=False)


def _toplevel(path: Path) -> Path | None:
    if not path.is_dir():
        return None
    try:
        r = _git(path, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    out = r.stdout.decode("utf-8", "surrogateescape").strip()
    return Path(out) if r.returncode == 0 and out else None


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        return _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _run_id(run_dir: Path) -> str:
    try:
        doc = json.loads((run_dir / "run.json").read_bytes())
        return str(doc["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return run_dir.name


def _no_code_message(doc: dict[str, Any]) -> str:
    reason = doc.get("code_reason") or doc.get("code") or "unknown"
    if doc.get("code") == "disabled":
        why = "code capture was disabled (RUNSYNC_DISABLE_CODE)"
    else:
        why = f"no git repository was found when it started ({reason})"
    return f"the run recorded no code state: {why}"


def _manual_instructions(run_id: str, git: dict[str, Any], patch: Path | None, looked: list[str]) -> str:
    commit = git["commit"]
    url = git.get("remote_url")
    name = f"{run_id}-code"
    steps = [f"git clone {shlex.quote(url)} {shlex.quote(name)}" if url else
             f"git clone <URL of the repository> {shlex.quote(name)}",
             f"cd {shlex.quote(name)}", f"git checkout {commit}"]
    if patch is not None:
        steps.append(f"git apply {shlex.quote(str(patch.resolve()))}")
    where = "; ".join(looked) or "nowhere"
    lines = [f"run {run_id} was recorded at commit {commit}"
             + (f" (branch {git['branch']})" if git.get("branch") else "")
             + (f" of {url}" if url else " (no remote URL was recorded)")
             + f", but no repository at hand has that commit (looked in: {where}).",
             "Restore it by hand (needs network access to the remote):",
             "  " + " && ".join(steps),
             "or fetch the commit into a local clone and run: runsync restore RUN --repo PATH-OF-THE-CLONE"]
    return "\n".join(lines)


def restore(run_dir: Path, dest: Path | None, *, repo: Path | None = None, stream: str | None = None) -> RestoreResult:
    """Check out the run's recorded commit into a new detached worktree ``dest`` and apply its patch there.

    The repository: ``repo``, else the recorded repository root, else the current directory's repository,
    whichever first has the commit. ``dest`` defaults to ``./<run-id>-code`` and must not exist or be empty.
    Raises FormatError (with manual instructions) when no repository has the commit, or when the run recorded
    no code state. A patch that does not apply is reported in the result; the worktree is left at the commit.
    """
    run_dir = Path(run_dir)
    doc, patch = load_environment(run_dir, stream)
    git = doc.get("git")
    if not isinstance(git, dict):
        raise FormatError(_no_code_message(doc), run_dir)
    commit = git.get("commit")
    if not commit:
        raise FormatError("the run recorded a git repository without any commit; there is nothing to check out",
                          run_dir)
    run_id = _run_id(run_dir)
    dest = Path(dest) if dest is not None else Path.cwd() / f"{run_id}-code"
    dest = dest.absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RunsyncError(f"{dest} already exists and is not empty; give another DIR")

    candidates: list[Path] = []
    looked: list[str] = []
    if repo is not None:
        top = _toplevel(Path(repo))
        if top is None:
            raise RunsyncError(f"{repo} is not a git repository")
        candidates.append(top)
    else:
        for label, p in (("the recorded repository", Path(git["root"]) if git.get("root") else None),
                         ("the current directory", Path.cwd())):
            if p is None:
                continue
            top = _toplevel(p)
            if top is None:
                looked.append(f"{label} {p} ({'not a git repository' if p.is_dir() else 'missing'})")
            elif top not in candidates:
                candidates.append(top)
    found = None
    for c in candidates:
        if _has_commit(c, commit):
            found = c
            break
        looked.append(f"{c} (does not have the commit)")
    if found is None:
        raise FormatError(_manual_instructions(run_id, git, patch, looked), run_dir)

    r = _git(found, "worktree", "add", "--detach", str(dest), commit, timeout=GIT_TIMEOUT)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip()
        raise RunsyncError(f"git worktree add failed in {found}: {msg}")
    applied, error = True, None
    if patch is not None:
        a = _git(dest, "apply", "--whitespace=nowarn", str(patch.resolve()), timeout=GIT_TIMEOUT)
        if a.returncode != 0:
            applied = False
            error = a.stderr.decode("utf-8", "replace").strip() or f"git apply exited with status {a.returncode}"
    omitted = [o for o in git.get("omitted") or [] if isinstance(o, dict)]
    return RestoreResult(dest=dest, repo=found, commit=commit, branch=git.get("branch"),
                         remote_url=git.get("remote_url"), patch=patch, applied=applied, apply_error=error,
                         omitted=omitted)


def describe(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines summarising an environment document, for ``runsync show``."""
    out: list[tuple[str, str]] = []
    git = doc.get("git")
    if isinstance(git, dict):
        state = "dirty" if git.get("dirty") else "clean"
        extra = f", patch {git['patch']}" if git.get("patch") else ""
        where = git.get("remote_url") or git.get("root") or ""
        out.append(("code", f"{(git.get('commit') or 'no commit')[:12]} ({git.get('branch') or 'detached'}, "
                            f"{state}{extra}) {where}".rstrip()))
    else:
        out.append(("code", f"not recorded ({doc.get('code_reason') or doc.get('code') or 'unknown'})"))
    cmd = doc.get("command") or {}
    if cmd.get("argv"):
        out.append(("command", " ".join(shlex.quote(str(a)) for a in cmd["argv"])))
    host = doc.get("host") or {}
    gpus = host.get("gpus") or []
    gpu_text = ""
    if gpus:
        names: dict[str, int] = {}
        for g in gpus:
            n = str(g.get("name", "GPU")) if isinstance(g, dict) else str(g)
            names[n] = names.get(n, 0) + 1
        gpu_text = ", " + ", ".join(f"{c}× {n}" for n, c in names.items())
    mem = host.get("memory_bytes")
    out.append(("host", f"{host.get('hostname', '?')} ({host.get('distribution') or host.get('os', '?')}, "
                        f"{host.get('cpu_count', '?')} CPUs" + (f", {mem / 2**30:.0f} GiB" if mem else "")
                + gpu_text + ")"))
    py = doc.get("python") or {}
    out.append(("python", f"{py.get('version', '?')} {py.get('executable', '')}, "
                          f"{len(py.get('packages') or {})} packages".replace(" ,", ",")))
    for kind, section in (doc.get("scheduler") or {}).items():
        if isinstance(section, dict) and section:
            out.append((kind, " ".join(f"{k}={v}" for k, v in section.items())))
    return out
