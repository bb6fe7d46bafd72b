#!/usr/bin/env python
"""Performance benchmark for the runsync syncer (`runsync push` to S3).

    python bench/bench_sync.py            # 1,000 runs + a 1 GB blob (~5-10 min on 2 cores)
    python bench/bench_sync.py --quick    # 200 runs + a 256 MB blob (~1-3 min)

One S3-compatible server (moto in server mode, a subprocess listening on
127.0.0.1 only, fake credentials) is started and used by every tool in the run:
`runsync push`, `aws s3 sync` / `aws s3 cp` and `rclone copy`. Each figure sits
next to the baselines measured against the same server in the same run. The
issue's targets are printed with OK/MISS for a human to read; nothing here
fails on them (exit status 1 only if a transfer actually fails).

See bench/README.md for what each section measures.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RUNSYNC_SILENT", "1")
os.environ.setdefault("RUNSYNC_CONSOLE", "off")  # the template runs are written by this process: keep its output

import runsync
from _common import fmt_table, med, note, progress, section, status  # noqa: E402 (bench/ is on sys.path)
from runsync.format.meta import dump_json

try:
    import psutil  # runsync depends on it
except ImportError:  # pragma: no cover
    psutil = None

ACCESS_KEY = "testing"  # fake credentials: moto accepts anything
SECRET_KEY = "testing"
REGION = "us-east-1"
TEMPLATES = 20  # real runs written with runsync; the rest of the tree are copies with new ids


# ---------------------------------------------------------------------------
# helpers (same look as bench_writer.py)
# ---------------------------------------------------------------------------

def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e7 else f"{n / 1e6:,.1f} MB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script_path(name: str) -> str | None:
    """The real entry point next to this interpreter (not a pyenv/asdf shim), else PATH."""
    p = Path(sysconfig.get_path("scripts")) / name
    if p.is_file() and os.access(p, os.X_OK):
        return str(p)
    return shutil.which(name)


@dataclass
class Proc:
    """One timed child process: wall time, exit code, output, and its own rusage (os.wait4)."""
    cmd: list[str]
    wall: float
    rc: int
    out: str
    err: str
    cpu: float  # user + sys seconds of the child (and its waited-for children)
    maxrss: int  # bytes
    server_cpu: float  # CPU seconds the S3 server spent meanwhile
    reqs: collections.Counter[str]  # HTTP requests the server logged meanwhile, by kind

    @property
    def nreqs(self) -> int:
        return sum(self.reqs.values())

    def tail(self, n: int = 6) -> str:
        lines = (self.err.strip() or self.out.strip()).splitlines()
        return " | ".join(lines[-n:])


def run_cmd(cmd: list[str], env: dict[str, str], server: MotoServer, timeout: float = 1800.0) -> Proc:
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        s0 = server.cpu()
        log0 = server.log_offset()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        while True:
            pid, wstatus, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, wstatus, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(wstatus)
        s1 = server.cpu()
        reqs = server.requests_since(log0)
        fo.seek(0)
        fe.seek(0)
        return Proc(cmd, wall, p.returncode, fo.read(), fe.read(), ru.ru_utime + ru.ru_stime,
                    ru.ru_maxrss * 1024, s1 - s0, reqs)


# ---------------------------------------------------------------------------
# the S3 server
# ---------------------------------------------------------------------------

class MotoServer:
    """`python -m moto.server` as a subprocess on 127.0.0.1 (its own process, so it does not
    share a GIL with any tool being measured)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        tmp = workdir / "moto-tmp"  # large objects spill to temp files: keep them in our temp dir
        tmp.mkdir()
        env = dict(os.environ, TMPDIR=str(tmp), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        self.log_path = workdir / "moto.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        self._ps = psutil.Process(self.proc.pid) if psutil is not None else None
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}; see {workdir / 'moto.log'}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not come up within 60 s") from None
                time.sleep(0.1)
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                               aws_secret_access_key=SECRET_KEY)

    def cpu(self) -> float:
        if self._ps is None:
            return float("nan")
        try:
            t = self._ps.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return float("nan")

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def requests_since(self, offset: int) -> collections.Counter[str]:
        """Requests in the server's access log (werkzeug) after ``offset``, by kind: PUT, GET,
        LIST (GET with list-type), HEAD, HEAD-404, POST (multipart create/complete), ..."""
        time.sleep(0.05)  # the server logs a request just after answering it
        c: collections.Counter[str] = collections.Counter()
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            for line in f.read().decode("utf-8", "replace").splitlines():
                parts = line.split('"')
                if len(parts) < 3 or not parts[1][:4] in ("GET ", "PUT ", "HEAD", "POST", "DELE"):
                    continue
                method, target = parts[1].split()[:2]
                code = parts[2].split()[0] if parts[2].split() else "?"
                kind = "LIST" if method == "GET" and "list-type=" in target else method
                if code.startswith(("4", "5")):
                    kind += f"-{code}"
                c[kind] += 1
        return c

    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(page.get("Contents", []))
        return out

    def empty(self, bucket: str) -> None:
        """Delete a bucket's objects (frees the server's memory/temp space between big transfers)."""
        keys = [{"Key": o["Key"]} for o in self.objects(bucket)]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000]})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------
# the tools
# ---------------------------------------------------------------------------

RUNSYNC_API = r"""
import json, os, sys
from runsync.syncer import PushOptions, Remote, push
so = {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
      "client_kwargs": {"endpoint_url": os.environ["BENCH_S3_ENDPOINT"], "region_name": os.environ["AWS_DEFAULT_REGION"]}}
res = push(sys.argv[1], Remote(sys.argv[2], storage_options=so), PushOptions(jobs=int(sys.argv[3])))
print(json.dumps(res.as_dict()))
sys.exit(1 if res.failures else 0)
"""


@dataclass
class Tools:
    env: dict[str, str]
    jobs: int
    runsync: str | None
    aws: str | None
    rclone: str | None
    runsync_mode: str = "cli"  # or "api" if the CLI cannot reach the endpoint
    missing: dict[str, str] = field(default_factory=dict)

    def runsync_push(self, src: Path, url: str) -> list[str]:
        if self.runsync_mode == "cli" and self.runsync:
            return [self.runsync, "push", str(src), url, "--jobs", str(self.jobs), "--json"]
        return [sys.executable, "-c", RUNSYNC_API, str(src), url, str(self.jobs)]

    def aws_sync(self, src: Path, url: str) -> list[str]:
        assert self.aws
        return [self.aws, "s3", "sync", str(src), url, "--exclude", ".runsync/*", "--no-progress"]

    def aws_cp(self, path: Path, url: str) -> list[str]:
        assert self.aws
        return [self.aws, "s3", "cp", str(path), url, "--no-progress"]

    def rclone_copy(self, src: Path, bucket_path: str) -> list[str]:
        assert self.rclone
        return [self.rclone, "copy", str(src), f"bench:{bucket_path}", "--exclude", "/.runsync/**",
                "--transfers", str(self.jobs), "--stats", "0", "-v"]


def make_env(work: Path, endpoint: str, jobs: int) -> dict[str, str]:
    """One environment for every tool: fake keys, the local endpoint, nothing from the user's AWS/rclone setup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_", "BOTO_"))}
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    cfg = work / "aws-config"
    cfg.write_text(f"[default]\nregion = {REGION}\ns3 =\n  max_concurrent_requests = {jobs}\n")
    (work / "aws-credentials").write_text("")
    (work / "rclone.conf").write_text("")
    env.update({
        "RUNSYNC_SILENT": "1",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(cfg), "AWS_SHARED_CREDENTIALS_FILE": str(work / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        # botocore >= 1.31 reads these: how `aws` and runsync's s3fs (the CLI has no endpoint option) find moto
        "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint,
        "BENCH_S3_ENDPOINT": endpoint,
        "RCLONE_CONFIG": str(work / "rclone.conf"),
        "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint, "RCLONE_CONFIG_BENCH_REGION": REGION,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS_KEY, "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET_KEY,
    })
    return env


def tool_version(cmd: list[str], env: dict[str, str]) -> str:
    try:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=60)
        return (p.stdout.strip() or p.stderr.strip()).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


# ---------------------------------------------------------------------------
# the source tree
# ---------------------------------------------------------------------------

def write_templates(tpl_root: Path, n: int) -> list[Path]:
    """``n`` real runs: init, a few dozen log() calls with a handful of keys, summary, finish."""
    out = []
    for k in range(n):
        run = runsync.init(project="bench-sync", dir=str(tpl_root), id=f"tpl-{k:03d}",
                           config={"lr": 1e-3 * (k + 1), "batch": 128, "arch": "resnet18"})
        for s in range(48):
            run.log({"train/loss": 2.0 / (s + 1) + k * 1e-3, "train/acc": s / 48, "lr": 1e-3 * (k + 1),
                     "grad_norm": 1.0 + (s % 7) * 0.1, "epoch": s // 12})
        run.summary["best_acc"] = 47 / 48
        run.finish()
        out.append(tpl_root / f"tpl-{k:03d}")
    return out


def clone_run(tpl: Path, dest: Path, run_id: str, i: int) -> None:
    """Copy a template run under a new id. run.json's id is rewritten to match the directory, and
    the documents a remote stores content-addressed (status/config/summary) are made unique per
    run, as they are in real runs, so no tool gets free deduplication from the copying."""
    shutil.copytree(tpl, dest, ignore=shutil.ignore_patterns(".runsync"))
    rj = json.loads((dest / "run.json").read_bytes())
    rj["id"] = run_id
    rj["name"] = f"{rj.get('name') or 'run'}-{i}"
    (dest / "run.json").write_bytes(dump_json(rj))
    for st in (dest / "streams").iterdir():
        cfg = json.loads((st / "config.json").read_bytes())
        cfg["config"]["seed"] = i
        (st / "config.json").write_bytes(dump_json(cfg))
        summ = json.loads((st / "summary.json").read_bytes())
        summ["values"]["seed"] = i
        summ["time"]["seed"] = summ["time"].get("best_acc", 0.0)
        summ["manual"] = sorted(set(summ.get("manual", [])) | {"seed"})
        (st / "summary.json").write_bytes(dump_json(summ))
        stj = json.loads((st / "status.json").read_bytes())
        for key in ("started", "ended", "heartbeat"):
            if isinstance(stj.get(key), (int, float)):
                stj[key] += i * 1e-3
        (st / "status.json").write_bytes(dump_json(stj))


def build_tree(work: Path, n_runs: int) -> tuple[Path, list[Path], int, int, float, float]:
    src = work / "src"
    src.mkdir()
    tpl_root = work / "templates"
    n_tpl = min(TEMPLATES, n_runs)
    t0 = time.perf_counter()
    tpls = write_templates(tpl_root, n_tpl)
    t_tpl = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n_runs):
        rid = f"run-{i:05d}"
        clone_run(tpls[i % n_tpl], src / rid, rid, i)
    t_copy = time.perf_counter() - t0
    # sanity: every run.json id matches its directory, and copies read back as finished runs
    nfiles = nbytes = 0
    for d in sorted(src.iterdir()):
        assert json.loads((d / "run.json").read_bytes())["id"] == d.name, d
        for p in d.rglob("*"):
            if p.is_file():
                nfiles += 1
                nbytes += p.stat().st_size
    for d in (src / "run-00000", src / f"run-{n_runs - 1:05d}"):
        r = runsync.open_run(str(d))
        assert str(r.status) in ("finished", "State.FINISHED"), (d, r.status)
    return src, tpls, nfiles, nbytes, t_tpl, t_copy


# ---------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------

def count_transfers(tool: str, p: Proc) -> int | None:
    if tool == "runsync":
        try:
            return int(json.loads(p.out)["files_sent"])
        except (ValueError, KeyError):
            return None
    if tool == "aws":
        return sum(1 for line in p.out.splitlines() if line.startswith(("upload:", "copy:")))
    if tool == "rclone":
        return sum(1 for line in p.err.splitlines() if ": Copied (" in line)
    return None


def fmt_reqs(c: collections.Counter[str], per: int = 1) -> str:
    fmt = (lambda v: f"{v / per:.3g}") if per != 1 else str
    return " ".join(f"{k} {fmt(v)}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "none"


def runsync_internal(p: Proc) -> float | None:
    try:
        return float(json.loads(p.out)["seconds"])
    except (ValueError, KeyError):
        return None


def bench_first_and_noop(cfg: argparse.Namespace, tools: Tools, server: MotoServer, src: Path, nfiles: int,
                         nbytes: int, results: dict[str, Any]) -> None:
    n_runs = cfg.runs
    order = ["runsync"] + [t for t in ("aws", "rclone") if getattr(tools, t)]
    cmds = {
        "runsync": lambda b: tools.runsync_push(src, f"s3://{b}/runs"),
        "aws": lambda b: tools.aws_sync(src, f"s3://{b}/runs"),
        "rclone": lambda b: tools.rclone_copy(src, f"{b}/runs"),
    }
    label = {"runsync": f"runsync push --jobs {tools.jobs}" + (" (Python API)" if tools.runsync_mode == "api" else ""),
             "aws": f"aws s3 sync (max_concurrent_requests={tools.jobs})",
             "rclone": f"rclone copy --transfers {tools.jobs}"}

    # ---- 1. first push
    section(f"1. first push of {n_runs:,} runs ({nfiles:,} files, {mb(nbytes)}) into an empty bucket, "
            f"concurrency {tools.jobs}")
    first: dict[str, Proc] = {}
    buckets: dict[str, str] = {}
    for tool in order:
        b = server.bucket(f"first-{tool}")
        buckets[tool] = b
        progress(f"first push: {tool}")
        p = run_cmd(cmds[tool](b), tools.env, server)
        first[tool] = p
        if p.rc != 0:
            results["errors"].append(f"first push with {tool} failed (exit {p.rc}): {p.tail()}")
    rows = []
    objs: dict[str, int] = {}
    for tool in order:
        p = first[tool]
        objs[tool] = len(server.objects(buckets[tool]))
        sent = count_transfers(tool, p)
        inner = runsync_internal(p) if tool == "runsync" else None
        rows.append([label[tool], f"{p.wall:.2f}", f"{nfiles / p.wall:,.0f}", f"{nbytes / 1e6 / p.wall:.2f}",
                     f"{p.wall / first['runsync'].wall:.2f}x" if tool != "runsync" else "1.00x",
                     "-" if sent is None else f"{sent:,}", f"{objs[tool]:,}", f"{p.nreqs:,}",
                     f"{p.cpu:.1f}", f"{p.server_cpu:.1f}",
                     f"{inner:.2f}" if inner is not None else "", "ok" if p.rc == 0 else f"EXIT {p.rc}"])
    print(fmt_table(["tool", "wall s", "files/s", "MB/s", "time vs runsync", "files sent", "objects",
                     "HTTP reqs", "tool CPU s", "server CPU s", "push() s", "result"], rows))
    note(f"files/s = the {nfiles:,} source files / wall time of the whole command (process start to exit, "
         f"interpreter start-up included for every tool)")
    note("objects = what the bucket holds afterwards. runsync also writes one manifest.json per run (the commit, "
         "spec §12.3); a run's first push writes status/config/summary.json at their run paths only (§12.1.2)")
    note("HTTP requests per run, from the server's access log: " + "; ".join(
        f"{t} {first[t].nreqs / n_runs:.1f} ({fmt_reqs(first[t].reqs, n_runs)})" for t in order))
    note("tool CPU s = user+sys of the tool's process; server CPU s = of the moto server meanwhile (2 cores are "
         "shared by both: a server near 1 CPU-second per wall-second is the bottleneck)")
    note("push() s = runsync's own timer from --json (excludes interpreter start-up and imports)")
    if tools.missing:
        for t, hint in tools.missing.items():
            note(f"{t} not installed, baseline skipped: {hint}")

    tgt = []
    rs_rate = nfiles / first["runsync"].wall
    for tool in ("aws", "rclone"):
        if tool in first:
            r = nfiles / first[tool].wall
            tgt.append([f"first push files/s vs {label[tool].split(' (')[0].split(' --')[0]}",
                        f"{rs_rate:,.0f} vs {r:,.0f} files/s ({rs_rate / r:.2f}x)", "≥ 1.0x",
                        status(rs_rate >= r)])
        else:
            tgt.append([f"first push files/s vs {tool}", "not installed", "≥ 1.0x", "n/a"])
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["first"] = tgt

    # ---- 2. no-op re-push
    section(f"2. no-op re-push of the unchanged tree ({nfiles:,} files), {cfg.noop_repeats} repeats, medians")
    noop: dict[str, list[Proc]] = {t: [] for t in order}
    for r in range(cfg.noop_repeats):
        for tool in order:  # interleaved, so drift in machine load hits every tool alike
            progress(f"no-op repeat {r + 1}/{cfg.noop_repeats}: {tool}")
            p = run_cmd(cmds[tool](buckets[tool]), tools.env, server)
            noop[tool].append(p)
            if p.rc != 0:
                results["errors"].append(f"no-op push with {tool} failed (exit {p.rc}): {p.tail()}")
    W = {t: med([p.wall for p in v]) for t, v in noop.items()}
    rows = []
    for tool in order:
        ps = noop[tool]
        sent = [count_transfers(tool, p) for p in ps]
        inner = [runsync_internal(p) for p in ps] if tool == "runsync" else []
        rows.append([label[tool], f"{W[tool]:.2f}", f"{min(p.wall for p in ps):.2f}",
                     f"{nfiles / W[tool]:,.0f}", f"{W[tool] / W['runsync']:.1f}x" if tool != "runsync" else "1.0x",
                     "/".join("-" if s is None else str(s) for s in sent), f"{med([p.nreqs for p in ps]):,.0f}",
                     f"{med([p.cpu for p in ps]):.2f}", f"{med([p.server_cpu for p in ps]):.2f}",
                     f"{med([x for x in inner if x is not None]):.3f}" if any(x is not None for x in inner) else ""])
    print(fmt_table(["tool", "median s", "best s", "files checked/s", "time vs runsync", "files sent",
                     "HTTP reqs", "tool CPU s", "server CPU s", "push() s"], rows))
    note("files sent should be 0 for every tool: nothing changed")
    note("rclone compares size and modification time, which it keeps in object metadata (one HEAD per object "
         "unless --size-only / --use-server-modtime); aws s3 sync lists the prefix and compares size and "
         "LastModified; runsync stats the local files against its sync state (no network at all)")
    inner = [x for x in (runsync_internal(p) for p in noop["runsync"]) if x is not None]
    startup = measure_startup(cfg, tools)
    if startup:
        note("runsync start-up alone (no push): " + "; ".join(f"{k} {v:.2f} s" for k, v in startup.items()))
    results["noop_startup"] = startup
    tgt = []
    if "aws" in W:
        sp = W["aws"] / W["runsync"]
        tgt.append(["no-op re-push speedup vs aws s3 sync (wall)",
                    f"{sp:.1f}x ({W['runsync']:.2f} vs {W['aws']:.2f} s)", "≥ 10x", status(sp >= 10)])
        if inner:
            sp2 = W["aws"] / max(med(inner), 1e-6)
            tgt.append(["  same, runsync push() time only (no start-up)",
                        f"{sp2:.0f}x ({med(inner):.3f} vs {W['aws']:.2f} s)", "(report only)", "-"])
    else:
        tgt.append(["no-op re-push speedup vs aws s3 sync", "aws not installed", "≥ 10x", "n/a"])
    if "rclone" in W:
        tgt.append(["no-op re-push speedup vs rclone copy (wall)",
                    f"{W['rclone'] / W['runsync']:.1f}x ({W['runsync']:.2f} vs {W['rclone']:.2f} s)",
                    "(report only)", "-"])
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["noop"] = tgt


def measure_startup(cfg: argparse.Namespace, tools: Tools) -> dict[str, float]:
    """Where a no-op CLI push's wall time goes before push() starts (medians of 3)."""
    out: dict[str, float] = {}
    probes = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import runsync.cli": [sys.executable, "-c", "import runsync.cli"],
        "+ Remote('s3://...') (imports s3fs/aiobotocore)":
            [sys.executable, "-c", "import runsync.cli; from runsync.syncer import Remote; Remote('s3://x-bench/p')"],
    }
    for name, cmd in probes.items():
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=tools.env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ts.append(time.perf_counter() - t0)
        out[name] = med(ts)
    return out


def write_big(path: Path, size: int) -> None:
    """Incompressible bytes (a checkpoint), written in 64 MiB chunks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 64 << 20
    block = os.urandom(chunk)
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            n = min(chunk, left)
            # vary each chunk cheaply so the file is not one repeated block
            f.write(i.to_bytes(8, "little") + block[8:n])
            left -= n
            i += 1


def bench_big(cfg: argparse.Namespace, tools: Tools, server: MotoServer, work: Path, tpl: Path,
              results: dict[str, Any]) -> None:
    size = cfg.big_mb << 20
    section(f"3. one {cfg.big_mb:,} MiB file in a run's files/ directory (a blob): runsync push of that run "
            f"vs aws s3 cp of the file, {cfg.big_repeats} repeat(s)")
    big_src = work / "big-src"
    big_src.mkdir()
    run_dir = big_src / "run-big"
    clone_run(tpl, run_dir, "run-big", 10**6)
    fpath = run_dir / "files" / "checkpoint.bin"
    progress(f"writing {cfg.big_mb} MiB file")
    write_big(fpath, size)
    small = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) - size

    t0 = time.perf_counter()
    with open(fpath, "rb") as f:
        h = hashlib.sha256()
        while chunk := f.read(1 << 20):
            h.update(chunk)
    t_hash = time.perf_counter() - t0
    # Where run.save() keeps it (spec §13.5): named by its hash, listed in the stream's files.json.
    digest = h.hexdigest()
    obj = run_dir / "files" / "sha256" / digest[:2] / digest
    obj.parent.mkdir(parents=True)
    fpath.rename(obj)
    fpath = obj
    (run_dir / "streams" / "main" / "files.json").write_bytes(dump_json({"format": "1.2", "files": [
        {"name": "checkpoint.bin", "sha256": digest, "size": size, "mtime": time.time(), "time": time.time(),
         "policy": "end"}]}))

    order = ["aws", "runsync"] if tools.aws else ["runsync"]
    runs: dict[str, list[Proc]] = {t: [] for t in order}
    for r in range(cfg.big_repeats):
        for tool in order:
            b = server.bucket(f"big-{tool}-{r}")
            progress(f"big file repeat {r + 1}/{cfg.big_repeats}: {tool}")
            if tool == "aws":
                cmd = tools.aws_cp(fpath, f"s3://{b}/files/checkpoint.bin")
            else:
                cmd = tools.runsync_push(run_dir, f"s3://{b}/runs")  # fresh URL: fresh sync state, full push
            p = run_cmd(cmd, tools.env, server)
            runs[tool].append(p)
            if p.rc != 0:
                results["errors"].append(f"big file with {tool} failed (exit {p.rc}): {p.tail()}")
            else:
                got = [o for o in server.objects(b) if o["Size"] == size]
                if len(got) != 1:
                    results["errors"].append(f"big file with {tool}: no {size}-byte object in the bucket")
            server.empty(b)  # free the server's space before the next transfer
    W = {t: med([p.wall for p in v]) for t, v in runs.items()}
    rate = {t: size / 1e6 / W[t] for t in W}
    rows = []
    for tool in order:
        ps = runs[tool]
        name = (f"runsync push RUN (1 blob + {small / 1e3:.0f} kB of small files)" if tool == "runsync"
                else f"aws s3 cp FILE (max_concurrent_requests={tools.jobs})")
        inner = [x for x in (runsync_internal(p) for p in ps) if x is not None] if tool == "runsync" else []
        rows.append([name, f"{W[tool]:.2f}", f"{rate[tool]:.0f}",
                     f"{rate[tool] / rate['aws']:.0%}" if "aws" in rate else "-", fmt_reqs(ps[0].reqs),
                     f"{med([p.cpu for p in ps]):.1f}", f"{max(p.maxrss for p in ps) / 2**20:,.0f}",
                     f"{med([p.server_cpu for p in ps]):.1f}", f"{med(inner):.2f}" if inner else ""])
    rows.append(["reference: sha256 of the file in this process (hashlib)", f"{t_hash:.2f}",
                 f"{size / 1e6 / t_hash:.0f}", "", "", "", "", "", ""])
    print(fmt_table(["", "median wall s", "MB/s", "vs aws", "HTTP reqs", "tool CPU s", "peak RSS MiB",
                     "server CPU s", "push() s"], rows))
    note("MB/s = file size / wall time of the command (start-up, hashing and multipart commit included)")
    note("the file is a saved-file object (files/sha256/<aa>/<sha256>, as run.save() writes it): its name is its "
         "hash, so runsync sends it without hashing it again (push --verify re-hashes); uploaded by "
         "runsync/syncer/s3_multipart.py through s3fs's client: 8 MiB parts, a window of 4 in flight, a CRC32 per "
         f"part; aws s3 cp uses 8 MiB parts with CRC32s, {tools.jobs} in flight")
    note("the file was just written, so both tools read it from the page cache")
    tgt = []
    if "aws" in rate:
        ratio = rate["runsync"] / rate["aws"]
        tgt.append([f"{cfg.big_mb} MiB blob throughput vs aws s3 cp",
                    f"{ratio:.0%} ({rate['runsync']:.0f} vs {rate['aws']:.0f} MB/s)", "≥ 80%", status(ratio >= 0.8)])
    else:
        tgt.append([f"{cfg.big_mb} MiB blob throughput vs aws s3 cp", "aws not installed", "≥ 80%", "n/a"])
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["big"] = tgt


# ---------------------------------------------------------------------------

def probe_runsync(tools: Tools, server: MotoServer, tpl: Path) -> str:
    """Can the `runsync push` CLI reach the endpoint? It has no endpoint option; try the AWS SDK's
    environment variables (AWS_ENDPOINT_URL_S3). Fall back to the Python API with storage_options."""
    b = server.bucket("probe-runsync")
    p = run_cmd(tools.runsync_push(tpl, f"s3://{b}/runs"), tools.env, server, timeout=120)
    if p.rc == 0 and count_transfers("runsync", p):
        return ("the runsync CLI reached the server through AWS_ENDPOINT_URL_S3 (read by botocore >= 1.31 inside "
                "s3fs), as a user's ~/.aws configuration would; --storage-option/-o would do as well")
    tools.runsync_mode = "api"
    return ("FINDING: `runsync push` has no way to pass an endpoint URL and AWS_ENDPOINT_URL_S3 did not work "
            f"({p.tail(2)}); measuring the Python API push(src, Remote(url, storage_options=...), "
            "PushOptions(jobs=N)) in a child process instead")


def header(cfg: argparse.Namespace, tools: Tools, server: MotoServer) -> None:
    import botocore
    import fsspec
    import moto
    import s3fs

    try:
        aff = len(os.sched_getaffinity(0))
    except AttributeError:
        aff = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("runsync syncer benchmark" + (" (--quick)" if cfg.quick else ""))
    print(f"  date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"  python    {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}")
    print(f"  cpus      {os.cpu_count()} (usable: {aff}); load average {load}")
    print(f"  versions  runsync {runsync.__version__}, s3fs {s3fs.__version__}, fsspec {fsspec.__version__}, "
          f"botocore {botocore.__version__}, moto {moto.__version__}")
    for name in ("runsync", "aws", "rclone"):
        path = getattr(tools, name)
        if path:
            ver = {"runsync": f"runsync {runsync.__version__}", "aws": tool_version([path, "--version"], tools.env),
                   "rclone": tool_version([path, "version"], tools.env)}[name]
            print(f"  {name:<9} {path} ({ver})")
        else:
            print(f"  {name:<9} NOT INSTALLED: {tools.missing[name]}")
    print(f"  server    moto server mode, {server.endpoint} (subprocess pid {server.proc.pid}), fake credentials; "
          "no other network")
    print(f"  temp dir  {tempfile.gettempdir()}")
    print("  Ratios are against baselines measured against the same server in this same run. Targets are "
          "shown for reading only.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 runs and a 256 MiB file (~1-3 min)")
    ap.add_argument("--runs", type=int, default=None, help="runs in the source tree (default 1000, 200 with --quick)")
    ap.add_argument("--big-mb", type=int, default=None, help="size of the big file in MiB (default 1024, 256 quick)")
    ap.add_argument("--jobs", type=int, default=4,
                    help="concurrency for every tool: runsync --jobs, aws max_concurrent_requests, "
                         "rclone --transfers (default 4, runsync's default)")
    ap.add_argument("--only", default="123", help="which sections to run (1 and 2 go together), e.g. 3")
    cfg = ap.parse_args(argv)
    cfg.runs = cfg.runs or (200 if cfg.quick else 1000)
    cfg.big_mb = cfg.big_mb or (256 if cfg.quick else 1024)
    cfg.noop_repeats = 3
    cfg.big_repeats = 3 if cfg.quick else 2

    work = Path(tempfile.mkdtemp(prefix="runsync-bench-sync-"))
    server: MotoServer | None = None
    results: dict[str, Any] = {"errors": []}
    t_start = time.perf_counter()
    try:
        progress("starting moto server")
        server = MotoServer(work)
        env = make_env(work, server.endpoint, cfg.jobs)
        missing = {}
        aws, rclone = script_path("aws"), shutil.which("rclone")
        if not aws:
            missing["aws"] = "pip install awscli"
        if not rclone:
            missing["rclone"] = "apt-get install -y rclone (Debian/Ubuntu), or see https://rclone.org/install/"
        tools = Tools(env=env, jobs=cfg.jobs, runsync=script_path("runsync"), aws=aws, rclone=rclone,
                      missing=missing)
        header(cfg, tools, server)

        section(f"0. setup: source tree of {cfg.runs:,} runs")
        progress(f"building {cfg.runs} runs")
        src, tpls, nfiles, nbytes, t_tpl, t_copy = build_tree(work, cfg.runs)
        note(f"{len(tpls)} runs written with runsync.init/log x48/finish in {t_tpl:.1f} s "
             f"({t_tpl / len(tpls) * 1000:.0f} ms per run); {cfg.runs:,} runs made from them by copying with new ids "
             f"(run.json id = directory name; config/summary/status made unique per run) in {t_copy:.1f} s")
        note(f"tree: {nfiles:,} files, {nbytes:,} bytes ({nbytes / nfiles:,.0f} B per file, "
             f"{nfiles / cfg.runs:.0f} files per run)")
        note(probe_runsync(tools, server, tpls[0]))

        if "1" in cfg.only or "2" in cfg.only:
            bench_first_and_noop(cfg, tools, server, src, nfiles, nbytes, results)
        if "3" in cfg.only:
            bench_big(cfg, tools, server, work, tpls[0], results)

        section("summary against the issue's targets (informational; not pass/fail)")
        rows = [r for k in ("first", "noop", "big") for r in results.get(k, [])]
        print(fmt_table(["target", "measured", "issue target", "status"], rows))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n  total benchmark time {time.perf_counter() - t_start:.0f} s; load average now {load} "
          "(the server and the tools share the same cores: compare ratios, rerun if in doubt)")
    if results["errors"]:
        print("  ERRORS: " + "; ".join(results["errors"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
