"""Code and environment capture at init(): what ran, from which code, where (spec: environment documents).

Each incarnation of a stream writes, in ``streams/<stream>/``:

- ``environment.<inc:06d>.json`` — one JSON object, written whole (``write_atomic``);
- ``diff.<inc:06d>.patch`` — uncommitted changes against the recorded commit, in ``git apply``
  form; absent when the tree is clean, code capture is disabled, or there is no repository.
  Written before the JSON document that names it.

``environment.<inc>.json``:

| field | type | meaning |
|---|---|---|
| `format` | string | format version, `"1.2"` |
| `time` | number | unix time of the capture |
| `stream`, `incarnation` | string, int | which stream and incarnation this describes |
| `code` | string | `recorded` (git data present), `disabled` (`RUNSYNC_DISABLE_CODE`), or `unavailable` |
| `code_reason` | string or null | why `git` is null: `disabled`, `not a git repository`, `git not found`, ... |
| `host.hostname` | string | `socket.gethostname()` (no DNS lookup) |
| `host.os`, `host.distribution` | string, string or null | `Linux`/`Darwin`/`Windows`; e.g. `Debian GNU/Linux 12 (bookworm)` |
| `host.platform`, `host.kernel`, `host.machine` | string | `platform.platform()`, `platform.release()`, `platform.machine()` |
| `host.cpu_model` | string or null | CPU model name |
| `host.cpu_count`, `host.cpu_count_physical` | int or null | logical and physical CPUs |
| `host.memory_bytes` | int or null | total RAM |
| `host.gpus` | array of objects | one per GPU (`index`, `name`, `memory_bytes`, `uuid`, `driver` where known); `[]` if none |
| `python.version`, `python.implementation` | string | e.g. `3.11.7`, `CPython` |
| `python.executable`, `python.prefix` | string | `sys.executable`, `sys.prefix` |
| `python.virtualenv` | bool | `sys.prefix != sys.base_prefix` |
| `python.conda_env` | string or null | `$CONDA_DEFAULT_ENV` |
| `python.packages` | object | installed distribution (PEP 503 normalised name) → version, sorted by name |
| `command.argv` | array of strings | `sys.argv`, secrets redacted (see below) |
| `command.orig_argv` | array of strings or null | `sys.orig_argv` (interpreter and its options), redacted |
| `command.entry_script` | string or null | absolute path of `sys.argv[0]` if it is a file |
| `command.module` | string or null | the module run with `python -m`, if any |
| `command.cwd` | string | working directory |
| `git` | object or null | null unless `code` is `recorded` |
| `git.root` | string | absolute path of the working tree's top level |
| `git.commit` | string or null | full id of HEAD (null in a repository without commits) |
| `git.branch` | string or null | checked-out branch; null when HEAD is detached |
| `git.remote`, `git.remote_url` | string or null | the branch's remote (else `origin`, else the first) and its URL, credentials stripped |
| `git.dirty` | bool or null | tracked files differ from HEAD (staged or not); untracked files do not count |
| `git.untracked_files` | int or null | untracked, non-ignored files in the working tree |
| `git.untracked_in_patch` | int | how many of them the patch adds |
| `git.patch` | string or null | file name of the patch in this directory |
| `git.omitted` | array of objects | `{path, reason}` for changed files left out of the patch (at most 200) |
| `git.omitted_more` | int | how many more were left out than listed |
| `scheduler` | object | only the schedulers present: `slurm`, `pbs`, `lsf`, `mpi`, `torch`, `devices` (below) |
| `errors` | array of strings | what could not be collected and why (capture never fails init) |

``scheduler`` holds an allowlist of environment variables, never the environment:
``slurm`` ← ``SLURM_JOB_ID`` → ``job_id``, ``SLURM_JOB_NAME`` → ``job_name``, ``SLURM_ARRAY_JOB_ID``,
``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_COUNT``, ``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NODEID``,
``SLURM_NTASKS``, ``SLURM_NNODES``, ``SLURM_JOB_NODELIST`` (or ``SLURM_NODELIST``) → ``nodelist``,
``SLURM_CLUSTER_NAME``, ``SLURM_JOB_PARTITION`` → ``partition``, ``SLURM_RESTART_COUNT`` (keys: the name
without ``SLURM_``/``SLURM_JOB_``, lower case); ``pbs`` ← ``PBS_JOBID``, ``PBS_JOBNAME``, ``PBS_ARRAYID``/
``PBS_ARRAY_INDEX`` → ``array_index``, ``PBS_ARRAY_ID``, ``PBS_QUEUE``; ``lsf`` ← ``LSB_JOBID``, ``LSB_JOBINDEX``,
``LSB_JOBNAME``, ``LSB_QUEUE``; ``mpi`` ← ``OMPI_COMM_WORLD_RANK``/``PMI_RANK``/``PMIX_RANK`` → ``rank``,
``OMPI_COMM_WORLD_SIZE``/``PMI_SIZE`` → ``size``, ``OMPI_COMM_WORLD_LOCAL_RANK`` → ``local_rank``; ``torch`` ←
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``NODE_RANK``,
``TORCHELASTIC_RESTART_COUNT`` (integers), ``MASTER_ADDR``, ``MASTER_PORT``; ``devices`` ← ``CUDA_VISIBLE_DEVICES``,
``HIP_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES`` (lower case). Values are strings unless noted.

Secrets. Nothing from the environment is recorded beyond that allowlist. The command line is redacted:
the value of an option whose name looks secret (``--api-key X``, ``--api-key=X``, ``-password X``) and of a
``KEY=VALUE`` argument whose key looks secret becomes ``[REDACTED]``. A name looks secret when, split into
words (``-``, ``_``, ``.``, camelCase), it contains ``passw``, ``secret``, ``credential``, ``cookie``,
``apikey``, ``passphrase``, ``privatekey``, ``accesskey``, ``pwd`` ... anywhere, or its last word is ``key``,
``token``, ``auth``, ``session``, ``pass``, ``pw``, ``sig``, ``signature``, ``jwt``, ``otp`` (so ``--hf-token`` is
redacted, ``--max-tokens``, ``--tokenizer`` and ``--num-key-value-heads`` are not). URLs anywhere lose their
credentials (``https://user:tok@host/x`` → ``https://host/x``; an ssh user without password is kept). Known token
formats (``ghp_…``, ``sk-…``, ``hf_…``, ``AKIA…``, ``xox?-…``, private-key blocks, ``Bearer …``) and the values of
secret-named environment variables (8+ characters, not paths) are replaced wherever they appear in the document.
A file whose patch section contains such a value, or whose name looks secret (``.env``, ``*.pem``, ``*.key``,
``id_rsa``, ``*secret*``, ``.netrc``, ...), is left out of the patch and listed in ``git.omitted``.

Untracked files. The patch holds ``git diff HEAD --binary`` (staged and unstaged changes to tracked files) plus
untracked, non-ignored *text* files of at most 512 KiB each (at most 100 files, 4 MiB in all), each produced by
``git diff --no-index /dev/null FILE`` — no index, object or lock of the user's repository is touched. New source
files are usually untracked when a run starts; outputs and data are usually large or binary, and runsync run
directories inside the repository are skipped, so neither swamps the patch. Everything left out is listed.

Nothing here opens a socket: git runs only local commands (``rev-parse``, ``symbolic-ref``, ``config``,
``status``, ``diff``) with ``GIT_TERMINAL_PROMPT=0`` and a timeout; the hostname is not resolved.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..format.atomic import write_atomic

__all__ = [
    "ENV_FORMAT",
    "REDACTED",
    "collect",
    "environment_name",
    "installed_packages",
    "patch_name",
    "redact_argv",
    "scheduler_context",
    "secret_name",
    "strip_url_credentials",
    "write_environment",
]

ENV_FORMAT = "1.2"
REDACTED = "[REDACTED]"

GIT_BUDGET = 10.0  # seconds for all git calls together
GIT_CALL_TIMEOUT = 5.0  # seconds per git call
PATCH_MAX = 16 << 20  # the diff of tracked files is not recorded beyond this
FILE_DIFF_MAX = 4 << 20  # one tracked file's section beyond this is left out
UNTRACKED_FILE_MAX = 512 << 10
UNTRACKED_TOTAL_MAX = 4 << 20
UNTRACKED_MAX_FILES = 100
UNTRACKED_EXAMINE_MAX = 2000  # untracked paths looked at (a data directory not ignored may hold millions)
OMITTED_LIST_MAX = 200
_SECRET_VALUE_MIN = 8


def environment_name(incarnation: int) -> str:
    return f"environment.{incarnation:06d}.json"


def patch_name(incarnation: int) -> str:
    return f"diff.{incarnation:06d}.patch"


# -- secret detection ---------------------------------------------------------------------------------------------

_STRONG = ("passw", "secret", "credential", "cookie", "apikey", "passphrase", "privatekey", "accesskey",
           "authtoken", "accesstoken", "refreshtoken", "bearer", "pwd", "authorization")
_LAST = frozenset({"key", "token", "auth", "session", "sessionid", "pass", "pw", "sig", "signature", "jwt", "otp"})
_ENV_SECRET = re.compile(r"key|token|secret|passw|pwd|auth|credential|cookie|session|private|signature", re.IGNORECASE)
_ENV_NOT_SECRET = frozenset({"DESKTOP_SESSION", "SESSION_MANAGER", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "KEYTIMEOUT",
                             "PWD", "OLDPWD"})

_TOKEN_FORMATS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|xox[abeprs]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_-]{50,})"
    r"|\b(?:Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9+/=])[A-Za-z0-9._~+/=-]{16,}"
)
_TOKEN_FORMATS_B = re.compile(_TOKEN_FORMATS.pattern.encode())
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s\"'<>]*)@")
_INLINE_KEY = re.compile(r"""(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)["']?\s*[=:]\s*""")
_INLINE_VALUE = re.compile(r"""\[REDACTED\]|(?P<q>["'])(?P<qv>[^"']*)(?P=q)|(?P<v>[^\s"',;&}\]\)]+)""")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git", "sftp", "scp"})

_SECRET_FILE_NAMES = (".env", ".env.*", "*.env", ".envrc", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc",
                      ".git-credentials", ".htpasswd", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
                      "*.kdbx", "*.gpg", "*.asc", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*secret*",
                      "*credential*", "*passw*", "*apikey*", "*api_key*", "*api-key*", "token", "token.*",
                      "*_token", "*_token.*", "*-token", "*-token.*", "*.token", "kubeconfig")
_SECRET_DIRS = frozenset({".ssh", ".aws", ".gnupg", ".kube", ".docker", "secrets", ".secrets"})


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def secret_name(name: str) -> bool:
    """Does an option, key or variable name look like it holds a secret? (rule in the module docstring)"""
    words = _words(name)
    if not words:
        return False
    joined = "".join(words)
    return any(s in joined for s in _STRONG) or words[-1] in _LAST


def _secret_file(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    if any(p.lower() in _SECRET_DIRS for p in parts[:-1]):
        return True
    base = parts[-1].lower()
    return any(fnmatch.fnmatchcase(base, pat) for pat in _SECRET_FILE_NAMES)


def strip_url_credentials(url: str) -> str:
    """Drop credentials from every URL in ``url``: a password always, a user name unless ssh-like."""

    def repl(m: re.Match[str]) -> str:
        scheme, userinfo = m.group(1), m.group(2)
        if ":" not in userinfo and scheme[:-3].lower() in _SSH_SCHEMES:
            return m.group(0)
        return scheme

    return _URL_USERINFO.sub(repl, url)


def _inline_pairs(text: str) -> str:
    """``api_key=xyz``, ``"token": "xyz"``, ``?sig=xyz`` inside a longer string: the value is redacted."""
    out: list[str] = []
    pos = 0
    for m in _INLINE_KEY.finditer(text):
        if m.start() < pos or not secret_name(m.group("key")):
            continue
        v = _INLINE_VALUE.match(text, m.end())
        if v is None or v.group(0) == REDACTED:
            continue
        a, b = (v.start("qv"), v.end("qv")) if v.group("q") else (v.start("v"), v.end("v"))
        if text.startswith("//", a):  # scheme://host: not a value
            continue
        out.append(text[pos:a] + REDACTED)
        pos = b
    out.append(text[pos:])
    return "".join(out)


class _Scrubber:
    """Replaces secret-looking text; remembers every secret value it has seen so it is scrubbed everywhere."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known: set[str] = set()
        for k in known:
            self.add(k)

    def add(self, value: str | None) -> None:
        if value and len(value) >= 6 and value != REDACTED:
            self.known.add(value)

    def add_url_secrets(self, text: str) -> None:
        for m in _URL_USERINFO.finditer(text):
            user, _, password = m.group(2).partition(":")
            self.add(password)
            if len(user) >= 16:  # a long user name is a token (https://<token>@github.com/...)
                self.add(user)

    def text(self, s: str) -> str:
        self.add_url_secrets(s)
        s = strip_url_credentials(s)
        s = _inline_pairs(s)
        s = _TOKEN_FORMATS.sub(REDACTED, s)
        for k in sorted(self.known, key=len, reverse=True):
            if k in s:
                s = s.replace(k, REDACTED)
        return s

    def document(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.document(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.document(v) for v in obj]
        return obj

    def bytes_secret(self, data: bytes) -> bool:
        """Does ``data`` contain a known secret value or a known token format?"""
        if _TOKEN_FORMATS_B.search(data):
            return True
        return any(k.encode("utf-8", "surrogateescape") in data for k in self.known)


def _path_like(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../")) or bool(re.match(r"^[A-Za-z]:[\\/]", value))


def _environment_secrets(environ: dict[str, str]) -> _Scrubber:
    """Values of secret-named variables and URL passwords in any variable: scrubbed if they show up anywhere."""
    scrub = _Scrubber()
    for name, value in environ.items():
        if "://" in value:
            scrub.add_url_secrets(value)
        if name in _ENV_NOT_SECRET or name.startswith("XDG_") or not _ENV_SECRET.search(name):
            continue
        v = value.strip()
        if len(v) >= _SECRET_VALUE_MIN and not _path_like(v) and not v.isdigit():
            scrub.add(v)
    return scrub


def redact_argv(argv: list[str], scrub: _Scrubber | None = None) -> list[str]:
    """``argv`` with the values of secret-looking options and ``KEY=VALUE`` arguments replaced by [REDACTED].

    Every removed value is added to ``scrub`` (if given), so it is also scrubbed from the rest of the record.
    """
    scrub = scrub if scrub is not None else _Scrubber()
    out: list[str] = []
    redact_next = False
    for i, arg in enumerate(argv):
        arg = str(arg)
        if redact_next:
            redact_next = False
            scrub.add(arg)
            out.append(REDACTED)
            continue
        if i > 0 and arg.startswith("-") and len(arg) > 2 and not arg[1:2].isdigit() and arg != "--":
            name, eq, value = arg.partition("=")
            if secret_name(name.lstrip("-")):
                if eq:
                    scrub.add(value)
                    out.append(f"{name}={REDACTED}")
                else:
                    nxt = argv[i + 1] if i + 1 < len(argv) else None
                    redact_next = nxt is not None and not str(nxt).startswith("--")
                    out.append(arg)
                continue
            if eq:
                out.append(f"{name}={_redact_value(value, scrub)}")
                continue
            out.append(arg)
            continue
        out.append(_redact_value(arg, scrub))
    return [scrub.text(a) for a in out]


_KEY_VALUE = re.compile(r"^(?P<key>[+~]{0,2}[A-Za-z_][A-Za-z0-9_.\-/]*)=(?P<value>.*)$", re.DOTALL)


def _redact_value(value: str, scrub: _Scrubber) -> str:
    m = _KEY_VALUE.match(value)
    if m and secret_name(m.group("key").lstrip("+~")):
        scrub.add(m.group("value"))
        return f"{m.group('key')}={REDACTED}"
    return value


# -- host, python, command, scheduler ------------------------------------------------------------------------------

def _cpu_model() -> str | None:
    system = platform.system()
    if system == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                        return value.strip()
        except OSError:
            pass
        return platform.machine() or None
    if system == "Darwin":
        try:
            r = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, timeout=1.0,
                               stdin=subprocess.DEVNULL, check=False)
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.decode("utf-8", "replace").strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or None


def _gpus(errors: list[str]) -> list[dict[str, Any]]:
    """GPU inventory: runsync.writer.system if present, else NVML through pynvml, else none."""
    try:
        from . import system  # type: ignore[attr-defined]

        inventory = system.gpu_inventory
    except (ImportError, AttributeError):
        inventory = None
    if inventory is not None:
        try:
            return [dict(g) if isinstance(g, dict) else {"name": str(g)} for g in inventory() or []]
        except Exception as e:  # noqa: BLE001 — another module's trouble must not stop the capture
            errors.append(f"gpus: {type(e).__name__}: {e}")
            return []
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 — not installed, or broken: no GPUs known
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 — no driver: no NVIDIA GPUs
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            out.append({"index": i, "name": _text(pynvml.nvmlDeviceGetName(h)),
                        "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                        "uuid": _text(pynvml.nvmlDeviceGetUUID(h)), "driver": driver})
        return out
    except Exception as e:  # noqa: BLE001
        errors.append(f"gpus: {type(e).__name__}: {e}")
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _host(errors: list[str]) -> dict[str, Any]:
    host: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "distribution": None,
        "platform": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": None,
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": None,
        "memory_bytes": None,
        "gpus": [],
    }
    try:
        if hasattr(platform, "freedesktop_os_release") and host["os"] == "Linux":
            host["distribution"] = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pass
    try:
        host["cpu_model"] = _cpu_model()
    except Exception as e:  # noqa: BLE001
        errors.append(f"cpu_model: {e}")
    try:
        import psutil

        host["cpu_count_physical"] = psutil.cpu_count(logical=False)
        host["memory_bytes"] = int(psutil.virtual_memory().total)
    except Exception as e:  # noqa: BLE001
        errors.append(f"psutil: {e}")
    host["gpus"] = _gpus(errors)
    return host


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> dict[str, str]:
    """Installed distributions → version, as imports would see them (first on ``sys.path`` wins), sorted."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = version = None
        folder = getattr(dist, "_path", None)
        stem = getattr(folder, "name", "")
        if stem.endswith(".dist-info"):  # name-version.dist-info: no need to parse the metadata file
            n, _, v = stem[: -len(".dist-info")].partition("-")
            if n and v[:1].isdigit() and "-" not in v:
                name, version = n, v
        if name is None:
            try:
                name, version = dist.metadata["Name"], dist.version
            except Exception:  # noqa: BLE001, S112 — a broken distribution is skipped
                continue
        if name:
            found.setdefault(_canonical(name), str(version))
    return dict(sorted(found.items()))


def _python(errors: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "virtualenv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "conda_env": os.environ.get("CONDA_DEFAULT_ENV") or None,
        "packages": {},
    }
    try:
        info["packages"] = installed_packages()
    except Exception as e:  # noqa: BLE001
        errors.append(f"packages: {type(e).__name__}: {e}")
    return info


def _entry_script(argv0: str | None) -> str | None:
    if not argv0 or argv0 in ("-c", "-m", "-"):
        return None
    try:
        return os.path.abspath(argv0) if os.path.isfile(argv0) else None
    except (OSError, ValueError):
        return None


def _command(argv: list[str] | None, scrub: _Scrubber) -> dict[str, Any]:
    explicit = argv is not None
    args = list(argv) if explicit else list(sys.argv)
    orig = None if explicit else getattr(sys, "orig_argv", None)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {
        "argv": redact_argv(args, scrub),
        "orig_argv": redact_argv(list(orig), scrub) if orig else None,
        "entry_script": _entry_script(args[0] if args else None),
        "module": None if explicit else getattr(spec, "name", None),
        "cwd": os.getcwd(),
    }


_SCHEDULER_VARS: dict[str, tuple[tuple[str, str], ...]] = {
    "slurm": (("SLURM_JOB_ID", "job_id"), ("SLURM_JOB_NAME", "job_name"), ("SLURM_ARRAY_JOB_ID", "array_job_id"),
              ("SLURM_ARRAY_TASK_ID", "array_task_id"), ("SLURM_ARRAY_TASK_COUNT", "array_task_count"),
              ("SLURM_PROCID", "procid"), ("SLURM_LOCALID", "localid"), ("SLURM_NODEID", "nodeid"),
              ("SLURM_NTASKS", "ntasks"), ("SLURM_NNODES", "nnodes"), ("SLURM_JOB_NODELIST", "nodelist"),
              ("SLURM_NODELIST", "nodelist"), ("SLURM_CLUSTER_NAME", "cluster_name"),
              ("SLURM_JOB_PARTITION", "partition"), ("SLURM_RESTART_COUNT", "restart_count")),
    "pbs": (("PBS_JOBID", "job_id"), ("PBS_JOBNAME", "job_name"), ("PBS_ARRAYID", "array_index"),
            ("PBS_ARRAY_INDEX", "array_index"), ("PBS_ARRAY_ID", "array_id"), ("PBS_QUEUE", "queue")),
    "lsf": (("LSB_JOBID", "job_id"), ("LSB_JOBINDEX", "job_index"), ("LSB_JOBNAME", "job_name"),
            ("LSB_QUEUE", "queue")),
    "mpi": (("OMPI_COMM_WORLD_RANK", "rank"), ("PMI_RANK", "rank"), ("PMIX_RANK", "rank"),
            ("OMPI_COMM_WORLD_SIZE", "size"), ("PMI_SIZE", "size"), ("OMPI_COMM_WORLD_LOCAL_RANK", "local_rank")),
    "torch": (("RANK", "rank"), ("LOCAL_RANK", "local_rank"), ("WORLD_SIZE", "world_size"),
              ("LOCAL_WORLD_SIZE", "local_world_size"), ("GROUP_RANK", "group_rank"), ("NODE_RANK", "node_rank"),
              ("TORCHELASTIC_RESTART_COUNT", "restart_count"), ("MASTER_ADDR", "master_addr"),
              ("MASTER_PORT", "master_port")),
    "devices": (("CUDA_VISIBLE_DEVICES", "cuda_visible_devices"), ("HIP_VISIBLE_DEVICES", "hip_visible_devices"),
                ("ROCR_VISIBLE_DEVICES", "rocr_visible_devices")),
}
_TORCH_INTS = frozenset({"rank", "local_rank", "world_size", "local_world_size", "group_rank", "node_rank",
                         "restart_count"})


def scheduler_context(environ: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Job and rank context from an allowlist of variables (see the module docstring); only schedulers present."""
    env = os.environ if environ is None else environ
    out: dict[str, dict[str, Any]] = {}
    for kind, names in _SCHEDULER_VARS.items():
        section: dict[str, Any] = {}
        for var, key in names:
            value = env.get(var)
            if value is None or key in section:
                continue
            if kind == "torch" and key in _TORCH_INTS:
                try:
                    section[key] = int(value)
                    continue
                except ValueError:
                    pass
            section[key] = value
        if section:
            out[kind] = section
    return out


# -- git -------------------------------------------------------------------------------------------------------------

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
    script = _entry_script(argv0)
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


def _tracked_diff(g: _Git, omitted: _Omitted, scrub: _Scrubber) -> list[bytes]:
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
        if _secret_file(path):
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


def _untracked_diff(g: _Git, untracked: list[str], omitted: _Omitted, scrub: _Scrubber) -> list[bytes]:
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
        if _secret_file(path):
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


def _git(cwd: str | None, argv0: str | None, scrub: _Scrubber, errors: list[str]) -> tuple[
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


# -- the document ----------------------------------------------------------------------------------------------------

def collect(*, disable_code: bool, cwd: str | None = None, argv: list[str] | None = None) -> tuple[
        dict[str, Any], bytes | None]:
    """(environment document, patch bytes or None). ``git.patch`` is left null; write_environment names it.

    ``cwd``: the directory whose repository is recorded; by default the repository of the entry script
    (``sys.argv[0]``), else of the working directory. ``argv``: the command line (default ``sys.argv``).
    """
    errors: list[str] = []
    scrub = _environment_secrets(dict(os.environ))
    doc: dict[str, Any] = {"format": ENV_FORMAT, "time": time.time()}
    doc["command"] = _command(argv, scrub)
    doc["host"] = _host(errors)
    doc["python"] = _python(errors)
    doc["scheduler"] = scheduler_context()
    patch: bytes | None = None
    if disable_code:
        doc["git"], doc["code"], doc["code_reason"] = None, "disabled", "disabled"
    else:
        argv0 = (argv if argv is not None else sys.argv or [None])[0]
        try:
            git, patch, reason = _git(cwd, argv0, scrub, errors)
        except Exception as e:  # noqa: BLE001 — capture never fails init
            git, patch, reason = None, None, f"{type(e).__name__}: {e}"
        doc["git"] = git
        doc["code"], doc["code_reason"] = ("recorded", None) if git is not None else ("unavailable", reason)
    doc["errors"] = errors
    packages = doc["python"].pop("packages")  # names and versions hold no secrets; the rest is scrubbed
    doc = scrub.document(doc)
    doc["python"]["packages"] = packages
    return doc, patch


def write_environment(stream_dir: Path, incarnation: int, *, disable_code: bool, cwd: str | None = None,
                      argv: list[str] | None = None, on_error: Callable[[str], None] | None = None) -> None:
    """Collect and write ``environment.<inc>.json`` (and ``diff.<inc>.patch``) into ``stream_dir``.

    Never raises: a failure is passed to ``on_error`` (if given) as one line of text.
    """
    try:
        doc, patch = collect(disable_code=disable_code, cwd=cwd, argv=argv)
        doc["stream"], doc["incarnation"] = Path(stream_dir).name, int(incarnation)
        if patch is not None and doc.get("git") is not None:
            name = patch_name(incarnation)
            write_atomic(Path(stream_dir) / name, patch)
            doc["git"]["patch"] = name
        data = (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False, default=str)
                + "\n").encode("utf-8", "surrogateescape")
        write_atomic(Path(stream_dir) / environment_name(incarnation), data)
    except Exception as e:  # noqa: BLE001 — the run goes on without an environment record
        if on_error is not None:
            with contextlib.suppress(Exception):
                on_error(f"could not record the code and environment: {type(e).__name__}: {e}")
