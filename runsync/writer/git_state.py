"""The git part of the environment record: repository, commit, branch, remote, and the uncommitted patch.

Kept apart from ``environment.py`` because it is the one part that runs subprocesses under a time budget
and builds a patch file: only local git commands (``rev-parse``, ``symbolic-ref``, ``config``, ``status``,
``diff``) with ``GIT_TERMINAL_PROMPT=0`` and a timeout, no index, object or lock of the user's repository
touched, and every file section checked against ``redact`` before it goes into the patch.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from typing import Any

from .redact import Scrubber, is_secret_file, strip_url_credentials

__all__ = [
    "FILE_DIFF_MAX",
    "GIT_BUDGET",
    "GIT_CALL_TIMEOUT",
    "OMITTED_LIST_MAX",
    "PATCH_MAX",
    "UNTRACKED_EXAMINE_MAX",
    "UNTRACKED_FILE_MAX",
    "UNTRACKED_MAX_FILES",
    "UNTRACKED_TOTAL_MAX",
    "entry_script",
    "git_snapshot",
]

GIT_BUDGET = 10.0  # seconds for all git calls together
GIT_CALL_TIMEOUT = 5.0  # seconds per git call
PATCH_MAX = 16 << 20  # the diff of tracked files is not recorded beyond this
FILE_DIFF_MAX = 4 << 20  # one tracked file's section beyond this is left out
UNTRACKED_FILE_MAX = 512 << 10
UNTRACKED_TOTAL_MAX = 4 << 20
UNTRACKED_MAX_FILES = 100
UNTRACKED_EXAMINE_MAX = 2000  # untracked paths looked at (a data directory not ignored may hold millions)
OMITTED_LIST_MAX = 200


def entry_script(argv0: str | None) -> str | None:
    if not argv0 or argv0 in ("-c", "-m", "-"):
        return None
    try:
        return os.path.abspath(argv0) if os.path.isfile(argv0) else None
    except (OSError, ValueError):
        return None


class _GitError(Exception):
    pass


class _Git:
    """Local git commands in one directory, each with a timeout, all within one budget."""

    CONFIG = ("-c", "core.quotepath=true", "-c", "diff.noprefix=false", "-c", "diff.mnemonicprefix=false",
              "-c", "diff.relative=false", "-c", "color.ui=false")

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self.deadline = time.monotonic() + GIT_BUDGET
        self.env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C", GIT_PAGER="cat")

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _GitError(f"git took longer than {GIT_BUDGET:.0f} s in all")
        return min(GIT_CALL_TIMEOUT, left)

    def run(self, *args: str, ok: tuple[int, ...] = (0,), stdout: Any = subprocess.PIPE) -> bytes | None:
        """stdout of ``git ARGS`` if its exit status is in ``ok``, else None."""
        cmd = ["git", *self.CONFIG, *args]
        try:
            r = subprocess.run(cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=stdout,
                               stderr=subprocess.PIPE, timeout=self._timeout(), check=False)
        except subprocess.TimeoutExpired:
            raise _GitError(f"'git {args[0]}' timed out") from None
        self.last_stderr = r.stderr.decode("utf-8", "replace").strip()
        if r.returncode not in ok:
            return None
        return r.stdout if r.stdout is not None else b""

    def text(self, *args: str) -> str | None:
        out = self.run(*args)
        return None if out is None else out.decode("utf-8", "surrogateescape").strip()


def _find_root(cwd: str | None, argv0: str | None) -> tuple[_Git | None, str]:
    """A git helper at the top level of the repository holding the entry script, else the working directory."""
    candidates = []
    script = entry_script(argv0)
    if cwd is None and script:
        candidates.append(os.path.dirname(script))
    candidates.append(cwd or os.getcwd())
    reason = "not a git repository"
    for d in candidates:
        if not os.path.isdir(d):
            continue
        try:
            g = _Git(d)
            top = g.text("rev-parse", "--show-toplevel")
        except FileNotFoundError:
            return None, "git not found"
        if top:
            g.cwd = top
            return g, ""
        if g.last_stderr and "not a git repository" not in g.last_stderr:
            reason = g.last_stderr.splitlines()[0][:300]
    return None, reason


def _status(g: _Git) -> tuple[bool, list[str], list[str]] | None:
    """(tracked changes?, changed tracked paths, untracked paths) from ``git status --porcelain -z``."""
    out = g.run("status", "--porcelain", "-z", "--untracked-files=all")
    if out is None:
        return None
    entries = out.split(b"\0")
    tracked: list[str] = []
    untracked: list[str] = []
    i = 0
    while i < len(entries):
        e = entries[i]
        i += 1
        if len(e) < 4:
            continue
        code, path = e[:2], e[3:].decode("utf-8", "surrogateescape")
        if code == b"??":
            untracked.append(path)
        elif code != b"!!":
            tracked.append(path)
            if code[:1] in (b"R", b"C"):
                i += 1  # the source path of a staged rename or copy follows
    return bool(tracked), tracked, untracked


def _c_unquote(s: bytes) -> bytes:
    """Undo git's C-style path quoting ("a/\\303\\251.py")."""
    out = bytearray()
    i = 0
    simple = {ord("n"): 10, ord("t"): 9, ord('"'): 34, ord("\\"): 92, ord("a"): 7, ord("b"): 8, ord("f"): 12,
              ord("r"): 13, ord("v"): 11}
    while i < len(s):
        c = s[i]
        if c == 92 and i + 1 < len(s):
            n = s[i + 1]
            if 48 <= n <= 55 and i + 3 < len(s) + 1:
                out.append(int(s[i + 1:i + 4], 8))
                i += 4
                continue
            out.append(simple.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _section_path(header: bytes) -> str:
    """Path of a ``diff --git a/P b/P`` section (no renames, so both sides name one path)."""
    rest = header[len(b"diff --git "):].rstrip(b"\n")
    if rest.startswith(b'"'):
        end = 1
        while end < len(rest) and not (rest[end] == 34 and rest[end - 1] != 92):
            end += 1
        path = _c_unquote(rest[1:end])
    else:
        path = rest[: (len(rest) - 1) // 2]
    if path.startswith(b"a/"):
        path = path[2:]
    return path.decode("utf-8", "surrogateescape")


def _sections(diff: bytes) -> list[tuple[str, bytes]]:
    """Split ``git diff`` output into (path, section) per file."""
    starts = [0] if diff.startswith(b"diff --git ") else []
    starts += [m.start() + 1 for m in re.finditer(rb"\ndiff --git ", diff)]
    out = []
    for j, s in enumerate(starts):
        chunk = diff[s: starts[j + 1] if j + 1 < len(starts) else len(diff)]
        header = chunk.split(b"\n", 1)[0]
        out.append((_section_path(header), chunk))
    return out


_DIFF_ARGS = ("--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/")


class _Omitted:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self.more = 0

    def add(self, path: str, reason: str) -> None:
        if len(self.items) < OMITTED_LIST_MAX:
            self.items.append({"path": path, "reason": reason})
        else:
            self.more += 1


def _in_run_dir(root: str, rel: str, cache: dict[str, bool]) -> bool:
    """Is ``rel`` inside a runsync run directory (one holding run.json and streams/) under ``root``?"""
    parts = rel.split("/")[:-1]
    for k in range(1, len(parts) + 1):
        d = "/".join(parts[:k])
        if d not in cache:
            base = os.path.join(root, d)
            cache[d] = os.path.isfile(os.path.join(base, "run.json")) and os.path.isdir(os.path.join(base, "streams"))
        if cache[d]:
            return True
    return False


def _tracked_diff(g: _Git, omitted: _Omitted, scrub: Scrubber) -> list[bytes]:
    with tempfile.TemporaryFile() as tmp:  # bounded memory however large the diff
        if g.run("diff", "HEAD", "--no-renames", *_DIFF_ARGS, stdout=tmp) is None:
            raise _GitError(f"git diff failed: {g.last_stderr[:300]}")
        size = tmp.seek(0, os.SEEK_END)
        if size > PATCH_MAX:
            omitted.add("*", f"the diff of tracked files is {size >> 20} MiB, over the {PATCH_MAX >> 20} MiB limit")
            return []
        tmp.seek(0)
        diff = tmp.read()
    kept = []
    for path, section in _sections(diff):
        if is_secret_file(path):
            omitted.add(path, "secret-looking file name")
        elif re.search(rb"\n(?:index [0-9a-f]+\.\.[0-9a-f]+ 160000|new file mode 160000|deleted file mode 160000)",
                       section):
            omitted.add(path, "submodule commit change (git apply cannot restore it)")
        elif len(section) > FILE_DIFF_MAX:
            omitted.add(path, f"diff larger than {FILE_DIFF_MAX >> 20} MiB")
        elif scrub.bytes_secret(section):
            omitted.add(path, "contains a secret-looking value")
        else:
            kept.append(section)
    return kept


def _untracked_diff(g: _Git, untracked: list[str], omitted: _Omitted, scrub: Scrubber) -> list[bytes]:
    kept: list[bytes] = []
    total = 0
    run_dirs: dict[str, bool] = {}
    for n, path in enumerate(untracked):
        if n >= UNTRACKED_EXAMINE_MAX or time.monotonic() > g.deadline - 1.0:
            for rest in untracked[n:]:
                omitted.add(rest, "not examined: too many untracked files or out of time")
            break
        full = os.path.join(g.cwd, path)
        if _in_run_dir(g.cwd, path, run_dirs):
            continue  # runsync's own output inside the repository: not code
        if is_secret_file(path):
            omitted.add(path, "secret-looking file name")
            continue
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if not os.path.isfile(full) or os.path.islink(full):
            omitted.add(path, "not a regular file")
            continue
        if st.st_size > UNTRACKED_FILE_MAX:
            omitted.add(path, f"untracked file larger than {UNTRACKED_FILE_MAX >> 10} KiB")
            continue
        if len(kept) >= UNTRACKED_MAX_FILES or total + st.st_size > UNTRACKED_TOTAL_MAX:
            omitted.add(path, f"over the limit of {UNTRACKED_MAX_FILES} untracked files / "
                              f"{UNTRACKED_TOTAL_MAX >> 20} MiB")
            continue
        try:
            with open(full, "rb") as f:
                head = f.read(8000)
        except OSError:
            continue
        if b"\0" in head:
            omitted.add(path, "untracked binary file")
            continue
        out = g.run("diff", "--no-index", *_DIFF_ARGS, "--", "/dev/null", path, ok=(0, 1))
        if not out:
            continue
        if scrub.bytes_secret(out):
            omitted.add(path, "contains a secret-looking value")
            continue
        kept.append(out)
        total += st.st_size
    return kept


def _choose_remote(g: _Git, branch: str | None) -> tuple[str | None, str | None]:
    out = g.run("config", "-z", "--get-regexp", r"^remote\..*\.url$", ok=(0, 1)) or b""
    urls: dict[str, str] = {}
    for entry in out.split(b"\0"):
        key, _, url = entry.decode("utf-8", "surrogateescape").partition("\n")
        if key.startswith("remote.") and key.endswith(".url") and url:
            urls.setdefault(key[len("remote."):-len(".url")], url)
    if not urls:
        return None, None
    preferred = g.text("config", "--get", f"branch.{branch}.remote") if branch else None
    name = preferred if preferred in urls else "origin" if "origin" in urls else next(iter(urls))
    return name, urls[name]


def git_snapshot(cwd: str | None, argv0: str | None, scrub: Scrubber, errors: list[str]) -> tuple[
        dict[str, Any] | None, bytes | None, str]:
    """(git section, patch bytes, reason when there is no git section)."""
    g, reason = _find_root(cwd, argv0)
    if g is None:
        return None, None, reason
    info: dict[str, Any] = {"root": g.cwd, "commit": None, "branch": None, "remote": None, "remote_url": None,
                            "dirty": None, "untracked_files": None, "untracked_in_patch": 0, "patch": None,
                            "omitted": [], "omitted_more": 0}
    patch: bytes | None = None
    try:
        info["commit"] = g.text("rev-parse", "--verify", "-q", "HEAD^{commit}") or None
        info["branch"] = g.text("symbolic-ref", "-q", "--short", "HEAD") or None
        remote, url = _choose_remote(g, info["branch"])
        if url:
            scrub.add_url_secrets(url)
            info["remote"], info["remote_url"] = remote, strip_url_credentials(url)
        st = _status(g)
        if st is None:
            errors.append(f"git status failed: {g.last_stderr[:300]}")
        else:
            dirty, _tracked, untracked = st
            info["dirty"], info["untracked_files"] = dirty, len(untracked)
            if info["commit"] is None:
                errors.append("git: the repository has no commits yet; no patch recorded")
            else:
                omitted = _Omitted()
                sections = _tracked_diff(g, omitted, scrub) if dirty else []
                extra = _untracked_diff(g, untracked, omitted, scrub)
                info["untracked_in_patch"] = len(extra)
                info["omitted"], info["omitted_more"] = omitted.items, omitted.more
                body = b"".join(s if s.endswith(b"\n") else s + b"\n" for s in sections + extra)
                patch = body or None
    except _GitError as e:
        errors.append(f"git: {e}")
    except OSError as e:
        errors.append(f"git: {e}")
    return info, patch, ""
