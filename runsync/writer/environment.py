"""Code and environment capture at init(): what ran, from which code, where (spec: environment documents).

Each incarnation of a stream writes, in ``streams/<stream>/``:

- ``environment.<inc:06d>.json`` — one JSON object, written whole (``write_atomic``);
- ``diff.<inc:06d>.patch`` — uncommitted changes against the recorded commit, in ``git apply``
  form; absent when the tree is clean, code capture is disabled, or there is no repository.
  Written before the JSON document that names it.

``environment.<inc>.json``:

| field | type | meaning |
|---|---|---|
| `format` | string | format version, `"1.3"` |
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
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..format.atomic import write_atomic
from ..format.version import FORMAT_VERSION
from .git_state import entry_script, git_snapshot
from .system import gpu_inventory
from .redact import REDACTED, environment_secrets, Scrubber, redact_argv, secret_name, strip_url_credentials

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

ENV_FORMAT = FORMAT_VERSION  # the §16 document follows the format version


def environment_name(incarnation: int) -> str:
    return f"environment.{incarnation:06d}.json"


def patch_name(incarnation: int) -> str:
    return f"diff.{incarnation:06d}.patch"


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
    """GPU inventory (``host.gpus``): the one NVML inventory, runsync.writer.system's ``gpu_inventory``."""
    try:
        return [dict(g) for g in gpu_inventory()]
    except Exception as e:  # noqa: BLE001 — it never raises; should it, the capture goes on without GPUs
        errors.append(f"gpus: {type(e).__name__}: {e}")
        return []


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



def _command(argv: list[str] | None, scrub: Scrubber) -> dict[str, Any]:
    explicit = argv is not None
    args = list(argv) if explicit else list(sys.argv)
    orig = None if explicit else getattr(sys, "orig_argv", None)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {
        "argv": redact_argv(args, scrub),
        "orig_argv": redact_argv(list(orig), scrub) if orig else None,
        "entry_script": entry_script(args[0] if args else None),
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


# -- the document ----------------------------------------------------------------------------------------------------

def collect(*, disable_code: bool, cwd: str | None = None, argv: list[str] | None = None) -> tuple[
        dict[str, Any], bytes | None]:
    """(environment document, patch bytes or None). ``git.patch`` is left null; write_environment names it.

    ``cwd``: the directory whose repository is recorded; by default the repository of the entry script
    (``sys.argv[0]``), else of the working directory. ``argv``: the command line (default ``sys.argv``).
    """
    errors: list[str] = []
    scrub = environment_secrets(dict(os.environ))
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
            git, patch, reason = git_snapshot(cwd, argv0, scrub, errors)
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
                      argv: list[str] | None = None, on_error: Callable[[str], None] | None = None,
                      tmp_dir: Path | None = None) -> None:
    """Collect and write ``environment.<inc>.json`` (and ``diff.<inc>.patch``) into ``stream_dir``.

    Never raises: a failure is passed to ``on_error`` (if given) as one line of text. ``tmp_dir``:
    the run's ``.tmp/`` (spec §2.3).
    """
    try:
        doc, patch = collect(disable_code=disable_code, cwd=cwd, argv=argv)
        doc["stream"], doc["incarnation"] = Path(stream_dir).name, int(incarnation)
        if patch is not None and doc.get("git") is not None:
            name = patch_name(incarnation)
            write_atomic(Path(stream_dir) / name, patch, tmp_dir=tmp_dir)
            doc["git"]["patch"] = name
        data = (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False, default=str)
                + "\n").encode("utf-8", "surrogateescape")
        write_atomic(Path(stream_dir) / environment_name(incarnation), data, tmp_dir=tmp_dir)
    except Exception as e:  # noqa: BLE001 — the run goes on without an environment record
        if on_error is not None:
            with contextlib.suppress(Exception):
                on_error(f"could not record the code and environment: {type(e).__name__}: {e}")
