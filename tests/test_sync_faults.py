"""The syncer under faults: flaky links, permanent errors, kill -9, hostile remotes, secrets, live runs, CLI."""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sync_s3server import moto_s3
from sync_util import (
    FAST,
    MB,
    ProxyFS,
    all_paths,
    assert_remote_mirrors,
    commit_problems,
    flaky,
    is_tmp,
    make_run,
    resume_run,
    sha,
    source_files,
    tree_hashes,
    tree_stats,
    wrap,
)

import runsync
import runsync.syncer
from runsync.cli import main as cli_main
from runsync.format.manifest import is_replaced, stored_at
from runsync.format.manifest import MANIFEST, blob_path
from runsync.syncer import PushOptions, Remote, RetryPolicy, pull, push, redact, remote_runs, verify

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cr3tP4ss"
RETRY_LINE = re.compile(r"^network error \((\w+)\)(?: reaching \S+)?, retrying in \d+ s \(attempt (\d+); gives up in \d+ s\)$")


def cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSYNC_", "AWS_"))}
    env["RUNSYNC_SILENT"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: Any, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runsync.cli", *map(str, args)], capture_output=True, text=True,
                          env=env or cli_env(), timeout=timeout, check=False)


def patch_remote(monkeypatch: pytest.MonkeyPatch, **proxy_kw: Any) -> list[ProxyFS]:
    """Make every Remote the CLI builds use a ProxyFS (fault injection / call counting)."""
    made: list[ProxyFS] = []

    class PatchedRemote(Remote):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            made.append(wrap(self, **proxy_kw))

    monkeypatch.setattr(runsync.syncer, "Remote", PatchedRemote)
    return made


# =========================================================================== flaky links: convergence


@pytest.fixture(scope="module")
def fault_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faultsrc") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNSYNC_SILENT", "1")
        shared = random.Random(7).randbytes(MB + 4321)  # over 1 MiB: the streamed upload path
        make_run(root, "run-a", steps=30, files={"files/ckpt.bin": shared, "files/a.txt": b"a" * 10})
        make_run(root, "run-b", steps=30, files={"files/ckpt.bin": shared})
        resume_run(root, "run-b", steps=5)
        make_run(root, "run-c", steps=10)
    return root


def _fault_url(backend: str, base: Path) -> str:
    if backend == "memory":
        return f"memory://faults-{uuid.uuid4().hex[:10]}/r"
    return str(base / f"remote-{uuid.uuid4().hex[:10]}")


@settings(max_examples=25, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), p=st.floats(0.02, 0.6), budget=st.integers(1, 12),
       retries=st.integers(0, 2), jobs=st.integers(1, 4), backend=st.sampled_from(["local", "memory"]))
def test_pushes_converge_under_transient_faults(fault_src: Path, tmp_path_factory: pytest.TempPathFactory,
                                                seed: int, p: float, budget: int, retries: int, jobs: int,
                                                backend: str) -> None:
    url = _fault_url(backend, tmp_path_factory.getbasetemp())
    clean = Remote(url)
    rng = random.Random(seed)
    fault = flaky(rng, p, budget)  # one flaky link across pushes; it recovers after `budget` faults
    said: list[str] = []
    failed_pushes = 0
    for _ in range(budget + 2):
        remote = Remote(url, policy=RetryPolicy(retries=retries, base=0.001, cap=0.002, say=said.append))
        wrap(remote, fault=fault)
        res = push(fault_src, remote, PushOptions(jobs=jobs))
        # never a state that was not true locally: every committed manifest is complete
        assert commit_problems(clean) == []
        if not res.failures:
            break
        failed_pushes += 1
        assert all("ConnectionError" in err and "gave up" in err for _, err in res.failures), res.failures
    else:
        pytest.fail(f"{budget + 2} pushes did not converge; last failures {res.failures}")
    event(f"failed pushes before convergence: {min(failed_pushes, 3)}{'+' if failed_pushes > 3 else ''}")
    event(f"retry lines: {'some' if said else 'none'}")
    assert all(RETRY_LINE.match(m) for m in said), said
    v = verify(clean)
    assert v.ok, v
    ids = ["run-a", "run-b", "run-c"]
    assert sorted(remote_runs(clean)) == ids
    assert_remote_mirrors(clean, fault_src, ids)
    again = push(fault_src, clean)
    assert again.failures == [] and again.files_sent == 0
    if backend == "local":
        for run_id in ids:  # leftover temporaries (if any) are invisible to stock readers
            assert len(pd.read_parquet(Path(url) / run_id / "history")) > 0
    else:
        clean.fs.rm(clean.root, recursive=True)


def test_push_interrupted_before_first_commit_leaves_no_manifest(root: Path, tmp_path: Path) -> None:
    """A first push that dies before its commit leaves no manifest (unreferenced files at most)."""
    make_run(root, "run-a", steps=20, files={"files/x.bin": b"x" * 3000})
    remote = Remote(str(tmp_path / "remote"), policy=RetryPolicy(retries=0, say=lambda m: None))

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        if name == "mv" and str(args[1]).endswith(MANIFEST):
            return ConnectionError("link down"), False
        return None
    wrap(remote, fault=fault)
    res = push(root, remote)
    assert [r for r, _ in res.failures] == ["run-a"]
    clean = Remote(str(tmp_path / "remote"))
    assert remote_runs(clean) == [] and commit_problems(clean) == []
    assert verify(clean).runs == 0
    res = push(root, clean)
    assert res.failures == [] and verify(clean).ok
    assert_remote_mirrors(clean, root, ["run-a"])


@pytest.mark.parametrize("backend", ["local", "memory"])
def test_interrupted_repush_of_changed_run_keeps_old_commit_valid(root: Path, tmp_path: Path, backend: str) -> None:
    make_run(root, "run-a", steps=20)
    url = _fault_url(backend, tmp_path)
    assert push(root, Remote(url)).failures == []
    resume_run(root, "run-a", steps=5)  # status.json, summary.json change; a new part and claim appear
    remote = Remote(url, policy=RetryPolicy(retries=0, say=lambda m: None))

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        target = str(args[1] if name == "mv" else args[0]) if name in ("mv", "pipe_file") else ""
        if target.endswith(MANIFEST) and not is_tmp(target):
            return ConnectionError("link down just before the commit"), False
        return None
    wrap(remote, fault=fault)
    res = push(root, remote)
    assert [r for r, _ in res.failures] == ["run-a"]
    clean = Remote(url)
    assert commit_problems(clean) == []  # the old commit must still be a true state
    v = verify(clean)
    # The new part was moved into place just before the failed commit (spec §12.3 step 2): unlisted,
    # and nothing the old commit names is missing or damaged.
    assert not (v.missing or v.corrupt or v.stale) and [r for r, _ in v.unlisted] == ["run-a"], v
    assert pull(clean, tmp_path / "pulled").failures == []
    assert push(root, clean).failures == []  # the next push commits and removes what no manifest names
    assert verify(clean).ok


def test_parallel_runs_sharing_a_blob_send_it_once(root: Path) -> None:
    big = os.urandom(2 * MB)
    for run_id in ("run-a", "run-b", "run-c"):
        make_run(root, run_id, steps=5, files={"files/ckpt.bin": big})
    remote = Remote(f"memory://race-{uuid.uuid4().hex[:8]}/r")
    slow_blob = blob_path(sha(big))

    def delay(name: str, args: tuple) -> float:  # a slow link: the blob upload takes 0.5 s
        return 0.5 if name in ("put_file", "pipe_file") and any(slow_blob in str(a) for a in args) else 0.0
    proxy = wrap(remote, delay=delay)
    res = push(root, remote, PushOptions(jobs=4))
    assert res.failures == []
    assert sum(1 for p in proxy.written() if p.endswith(slow_blob)) == 1
    assert res.bytes_deduplicated == 2 * len(big)


# =========================================================================== retries and permanent errors


@pytest.mark.parametrize("exc", [ConnectionError("reset"), TimeoutError("timed out"),
                                 OSError(104, "Connection reset by peer"), RuntimeError("503 SlowDown")],
                         ids=["ConnectionError", "TimeoutError", "ECONNRESET", "503-text"])
def test_transient_error_is_retried_with_message(root: Path, tmp_path: Path, exc: BaseException) -> None:
    make_run(root, "run-a", steps=5)
    said: list[str] = []
    remote = Remote(str(tmp_path / "remote"), policy=RetryPolicy(retries=3, base=0.001, say=said.append))
    left = [2]

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        if name == "ls" and left[0] > 0:  # the first request of a push: its listing of the remote
            left[0] -= 1
            return exc, False
        return None
    wrap(remote, fault=fault)
    res = push(root, remote)
    assert res.failures == []
    assert len(said) == 2
    for k, line in enumerate(said, 1):
        m = RETRY_LINE.match(line)
        assert m, line
        assert m.group(1) == type(exc).__name__ and int(m.group(2)) == k
    assert verify(remote).ok


def test_retries_exhausted_reports_attempts(root: Path, tmp_path: Path) -> None:
    make_run(root, "run-a", steps=5)
    said: list[str] = []
    remote = Remote(str(tmp_path / "remote"), policy=RetryPolicy(retries=2, base=0.001, say=said.append))
    proxy = wrap(remote, fault=lambda n, a: (ConnectionError("down"), False))
    res = push(root, remote)
    assert len(res.failures) == 1
    assert "ConnectionError" in res.failures[0][1] and "gave up after 3 attempts" in res.failures[0][1]
    assert proxy.count() == 3 and len(said) == 2


def test_cli_prints_retry_line(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    make_run(root, "run-a", steps=5)
    left = [1]

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        if left[0] > 0:
            left[0] -= 1
            return ConnectionError("flap"), False
        return None
    patch_remote(monkeypatch, fault=fault)
    rc, _, err = cli(capsys, "push", root, tmp_path / "remote")
    assert rc == 0, err
    assert re.search(r"^runsync: network error \(ConnectionError\)(?: reaching \S+)?, retrying in \d+ s "
                     r"\(attempt 1; gives up in \d+ s\)$", err, re.MULTILINE), err


@pytest.mark.parametrize("exc", [PermissionError(13, "Permission denied"), OSError("AccessDenied: Access Denied"),
                                 RuntimeError("An error occurred (InvalidAccessKeyId) when calling PutObject"),
                                 OSError("403 Forbidden")],
                         ids=["PermissionError", "AccessDenied", "InvalidAccessKeyId", "403"])
def test_permanent_error_fails_fast_without_retries(root: Path, tmp_path: Path, exc: BaseException) -> None:
    make_run(root, "run-a", steps=5)
    said: list[str] = []
    remote = Remote(str(tmp_path / "remote"), policy=RetryPolicy(retries=8, base=0.5, say=said.append))
    proxy = wrap(remote, fault=lambda n, a: (exc, False))
    t0 = time.monotonic()
    res = push(root, remote, PushOptions(jobs=1))
    assert time.monotonic() - t0 < 2.0
    assert proxy.count() == 1, proxy.calls  # the first call failed for good: no retry
    assert said == []
    [(run, err)] = res.failures
    assert run == "run-a"
    assert "permissions" in err, err  # actionable: local advice for a local path (issue 13 §2)


def test_permission_error_cli_exit_and_message(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    make_run(root, "run-a", steps=5)
    make_run(root, "run-b", steps=5)
    proxies = patch_remote(monkeypatch, fault=lambda n, a: (PermissionError(13, "Permission denied"), False))
    t0 = time.monotonic()
    rc, _, err = cli(capsys, "push", root, tmp_path / "remote")  # CLI default: 8 retries, 0.5 s base
    assert time.monotonic() - t0 < 3.0
    assert rc == 1
    assert "FAILED run-a" in err and "FAILED run-b" in err
    assert "PermissionError" in err and "this is a local path" in err and "permissions" in err  # local advice
    assert "retrying" not in err
    assert proxies[0].count() == 1  # the push's one listing of the remote, not retried: every run fails with it


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    server = moto_s3()
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    return server


@pytest.mark.parametrize("command", [
    "push",
    "verify",
    "pull",
])
def test_missing_bucket_fails_fast(s3: Any, root: Path, tmp_path: Path, command: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    make_run(root, "run-a", steps=5)
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/runs"
    args = {"push": ["push", root, url], "verify": ["verify", url], "pull": ["pull", url, tmp_path / "dest"]}[command]
    t0 = time.monotonic()
    rc, out, err = cli(capsys, *args)
    assert time.monotonic() - t0 < 10.0  # no long retry loop
    assert "retrying" not in err
    assert rc != 0, (out, err)
    assert re.search(r"bucket does not exist|NoSuchBucket|no such directory or bucket", out + err), (out, err)


# =========================================================================== kill -9


N_KILL_RUNS = 30


@pytest.fixture(scope="module")
def kill_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """~30 finished runs with a unique 2 MB file each, and the seconds one whole CLI push takes."""
    base = tmp_path_factory.mktemp("killsrc")
    root = base / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNSYNC_SILENT", "1")
        rng = random.Random(1234)
        for i in range(N_KILL_RUNS):
            make_run(root, f"run-{i:02d}", steps=20, files={"files/ckpt.bin": rng.randbytes(2 * MB)})
    t0 = time.monotonic()
    proc = run_cli("push", root, base / "calibration", "-q")
    assert proc.returncode == 0, proc.stderr
    return root, time.monotonic() - t0


@pytest.mark.parametrize("seed", range(6))
def test_kill_9_during_push_then_repush(kill_tree: tuple[Path, float], tmp_path: Path, seed: int) -> None:
    root, full = kill_tree
    rng = random.Random(seed)
    dest = tmp_path / "dest"
    proc = subprocess.Popen([sys.executable, "-m", "runsync.cli", "push", str(root), str(dest), "-q"],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    if seed % 2 == 0:  # at a random moment
        time.sleep(rng.uniform(0.1, full))
    else:  # at a random point of progress: once k runs are committed (plus a little)
        k = rng.randint(1, N_KILL_RUNS - 5)
        while (len(list(dest.glob(f"*/{MANIFEST}"))) < k and proc.poll() is None
               and time.monotonic() - t0 < 5 * full + 5):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]

    remote = Remote(str(dest))
    assert commit_problems(remote) == []  # each run: no manifest, or a complete one
    committed = sorted(p.parent.name for p in dest.glob(f"*/{MANIFEST}"))

    def stat_of(p: Path) -> tuple[int, int, int]:
        st = p.stat()
        return st.st_ino, st.st_mtime_ns, st.st_size
    before: dict[str, tuple[int, int, int]] = {}
    for run_id in committed:
        for rel, e in json.loads((dest / run_id / MANIFEST).read_bytes())["files"].items():
            where = stored_at(run_id, rel, e["sha256"])  # the committed bytes (spec §12.1, §12.1.2)
            if not (dest / where).exists() and is_replaced(rel):
                where = f"{run_id}/{rel}"
            before[where] = stat_of(dest / where)
        before[f"{run_id}/{MANIFEST}"] = stat_of(dest / run_id / MANIFEST)
    total = sum(len(source_files(root / f"run-{i:02d}")) for i in range(N_KILL_RUNS))

    again = run_cli("push", root, dest, "--json")
    assert again.returncode == 0, again.stderr
    res = json.loads(again.stdout)
    assert res["failures"] == []
    per_run = total // N_KILL_RUNS
    # A run killed between its commit and refreshing its run-path document copies gets those
    # (at most 3 per stream) rewritten: one such run per parallel job (4).
    assert res["files_sent"] <= total - per_run * len(committed) + 3 * 4
    if committed:
        assert res["files_sent"] < total
    # runs committed before the kill: not a byte re-sent, not even the manifest rewritten
    assert {where: stat_of(dest / where) for where in before} == before
    ids = [f"run-{i:02d}" for i in range(N_KILL_RUNS)]
    assert verify(remote).ok
    assert_remote_mirrors(remote, root, ids)  # dot-prefixed temporaries from the kill are tolerated
    for run_id in ids:  # ... and invisible to stock readers
        assert len(pd.read_parquet(dest / run_id / "history")) == 20 * 3
    assert not [p for p in dest.rglob("*.tmp") if not p.name.startswith(".")]


# =========================================================================== hostile remotes


def _good_remote(root: Path, tmp_path: Path) -> Path:
    make_run(root, "run-good", steps=10)
    make_run(root, "run-bad", steps=10)
    remote = tmp_path / "remote"
    assert push(root, Remote(str(remote))).failures == []
    return remote


@pytest.mark.parametrize("hostile", ["../../evil", "ABS", "a/../../b", "history/../../../evil", "./run.json",
                                     "history\\..\\..\\evil", "", "files/x", "sha-mismatch"])
def test_hostile_manifest_pull_refuses(root: Path, tmp_path: Path, hostile: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    remote = _good_remote(root, tmp_path)
    mpath = remote / "run-bad" / MANIFEST
    m = json.loads(mpath.read_bytes())
    evil = b"pwned"
    (tmp_path / "evil").write_bytes(evil)  # where a naive puller would read ../../evil from
    if hostile == "sha-mismatch":
        m["files"]["run.json"]["sha256"] = sha(b"something else")
    elif hostile == "files/x":  # a blob entry whose hash is a path
        m["files"]["files/x"] = {"size": 5, "sha256": "../../../../evil"}
    else:
        rel = str(tmp_path / "outside" / "abs-evil") if hostile == "ABS" else hostile
        m["files"][rel] = {"size": len(evil), "sha256": sha(evil)}
    mpath.write_bytes(json.dumps(m).encode())

    dest = tmp_path / "sub" / "dest"
    dest.parent.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    res = pull(Remote(str(remote)), dest)
    assert [r for r, _ in res.failures] == ["run-bad"], res.failures
    assert tree_hashes(dest / "run-good", skip=lambda rel: rel == MANIFEST) == source_files(root / "run-good")
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p.is_relative_to(dest) for p in new), sorted(map(str, new))
    assert not (dest / "run-bad" / MANIFEST).exists()
    assert not (tmp_path / "outside").exists() and not (tmp_path / "sub" / "evil").exists()
    assert not [p for p in dest.rglob("*") if p.is_file() and (is_tmp(p.name) or ".tmp" in p.parts)]  # §2.3
    if hostile == "sha-mismatch":
        assert "does not match" in res.failures[0][1]
        assert not (dest / "run-bad" / "run.json").exists()  # never renamed into place
    else:
        assert "manifest rejected" in res.failures[0][1]
        assert not (dest / "run-bad").exists()
    rc, _, err = cli(capsys, "pull", remote, tmp_path / "sub" / "dest2")
    assert rc == 1 and "FAILED run-bad" in err
    v = verify(Remote(str(remote)))
    assert not v.ok
    assert ("run-bad" in {r for r, _ in v.failures}) or v.corrupt == [("run-bad", "run.json")]


def test_pull_refuses_hostile_run_ids(root: Path, tmp_path: Path) -> None:
    remote = _good_remote(root, tmp_path)
    dest = tmp_path / "sub" / "dest"
    dest.parent.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    res = pull(Remote(str(remote)), dest, run_ids=["../run-good", "/etc", "run-good/../../x"])
    assert len(res.failures) == 3 and all("invalid run id" in e for _, e in res.failures)
    assert {p for p in tmp_path.rglob("*")} - before <= {dest}


# =========================================================================== credentials


class _Deny(http.server.BaseHTTPRequestHandler):
    def _deny(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "9")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"Forbidden")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _deny

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture(scope="module")
def deny_server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("kind", [
    "http-403",
    "http-closed-port",
    "sftp",
    "s3-embedded",
])
def test_credentials_never_printed_or_stored(kind: str, root: Path, tmp_path: Path, deny_server: int) -> None:
    make_run(root, "run-a", steps=5)
    env = cli_env()
    commands = ["push", "verify", "pull"]
    if kind == "http-403":
        url = f"http://user:{SECRET}@127.0.0.1:{deny_server}/runs"
    elif kind == "http-closed-port":
        url = f"http://user:{SECRET}@127.0.0.1:{_closed_port()}/runs"
    elif kind == "sftp":
        url = f"sftp://user:{SECRET}@127.0.0.1:{_closed_port()}/runs"
    else:
        pytest.importorskip("moto")
        pytest.importorskip("s3fs")
        url = f"s3://user:{SECRET}@bucket/runs"
        env = cli_env(**moto_s3().env)
    assert SECRET not in redact(url) and "user" not in redact(url)
    argv = {"push": ["push", root, url, "--retries", "0"], "verify": ["verify", url, "--retries", "0"],
            "pull": ["pull", url, tmp_path / "dest", "--retries", "0"]}
    procs = {c: subprocess.Popen([sys.executable, "-m", "runsync.cli", *map(str, argv[c])], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands}
    for c, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, (c, out, err)
        assert out + err, c  # it did say something...
        assert SECRET not in out and SECRET not in err, (c, out + err)
    stored = [p for p in (root / ".runsync").rglob("*") if p.is_file()] if (root / ".runsync").exists() else []
    for p in stored:
        assert SECRET.encode() not in p.read_bytes(), p


@pytest.mark.parametrize("url,want", [
    ("s3://AKIA:" + SECRET + "@bucket/p", "s3://bucket/p"),
    ("https://user:" + SECRET + "@host.example:8443/x?q=1", "https://host.example:8443/x?q=1"),
    ("sftp://user@host/p", "sftp://host/p"),
    ("/plain/path", "/plain/path"),
    ("memory://b/p", "memory://b/p"),
])
def test_redact(url: str, want: str) -> None:
    assert redact(url) == want


@pytest.mark.parametrize("form", [
    "full-url",
    "run-path",
    "userinfo",
    "bucket-name",
])
def test_remote_error_messages_strip_credentials(root: Path, tmp_path: Path, form: str) -> None:
    make_run(root, "run-a", steps=3)
    url = f"s3://user:{SECRET}@bucket/runs"
    text = {"full-url": f"cannot reach {url}", "run-path": f"cannot reach {url}/run-a/manifest.json",
            "userinfo": f"GET https://user:{SECRET}@bucket.s3.amazonaws.com/runs failed",
            "bucket-name": f'Invalid bucket name "user:{SECRET}@bucket"'}[form]
    for exc in (ConnectionError(text), PermissionError(text)):
        said: list[str] = []
        remote = Remote(str(tmp_path / "remote"), policy=RetryPolicy(retries=1, base=0.001, say=said.append))
        remote.url = url  # what Remote(url) keeps to redact its messages
        wrap(remote, fault=lambda n, a, e=exc: (e, False))
        res = push(root, remote)
        [(_, err)] = res.failures
        assert SECRET not in err and SECRET not in " ".join(said), err


@pytest.mark.parametrize("code,transient", [("InternalError", True), ("SlowDown", True),
                                             ("ServiceUnavailable", True), ("AccessDenied", False),
                                             ("NoSuchBucket", False), ("InvalidAccessKeyId", False)])
def test_s3_errors_as_s3fs_translates_them_are_classified_by_their_cause(code: str, transient: bool) -> None:
    """s3fs turns a 500 into OSError(EREMOTEIO) and a 503 into OSError(EBUSY), the ClientError as cause."""
    s3fs_errors = pytest.importorskip("s3fs.errors")
    from botocore.exceptions import ClientError

    from runsync.syncer.remote import is_transient

    original = ClientError({"Error": {"Code": code, "Message": f"{code} (test)"},
                            "ResponseMetadata": {"HTTPStatusCode": 500 if transient else 403}}, "UploadPart")
    try:
        raise s3fs_errors.translate_boto_error(original) from original
    except Exception as e:
        assert is_transient(e) is transient, (type(e), e)


def test_multi_line_service_errors_become_one_line(root: Path, tmp_path: Path) -> None:
    """Azure's errors repeat themselves as an XML body with request ids; a FAILED line keeps message and code."""
    make_run(root, "run-a", steps=3)
    text = ("Server failed to authenticate the request.\nRequestId:0916\nTime:2026-11-23T16:46:24Z\n"
            "ErrorCode:AuthorizationFailure\nContent: <?xml version=\"1.0\"?>\n<Error>\n  <Code>x</Code>\n</Error>")
    remote = Remote(str(tmp_path / "remote"), policy=RetryPolicy(retries=0))
    wrap(remote, fault=lambda n, a: (PermissionError(text), False))
    [(_, err)] = push(root, remote).failures
    assert "\n" not in err and "<?xml" not in err and "RequestId" not in err, err
    assert "Server failed to authenticate the request.; ErrorCode:AuthorizationFailure" in err, err


# =========================================================================== live and crashed runs


def test_live_run_push_skips_live_wal_and_leaves_writer_files_alone(root: Path, tmp_path: Path) -> None:
    make_run(root, "run-live", steps=50, settings=FAST)
    paused = runsync.Settings(flush_interval=3600.0, part_interval=3600.0, heartbeat_interval=3600.0,
                              segment_size=1 << 16)
    run = runsync.init(dir=root, id="run-live", resume=True, settings=paused)
    try:
        for i in range(20):
            run.log({"loss": 100.0 + i})
        time.sleep(0.2)
        run_dir = root / "run-live"
        live_wal = sorted(p.name for p in (run_dir / "streams" / "main").glob("wal.000001.*"))
        assert live_wal, "the live incarnation has a WAL"
        hashes = tree_hashes(run_dir)
        stats = {k: v for k, v in tree_stats(run_dir).items() if "/wal." not in k}  # mmap'd: mtime is lazy
        paths = all_paths(run_dir)
        remote = Remote(str(tmp_path / "remote"))
        res = push(root, remote)
        assert res.failures == [] and res.runs_pushed == 1
        assert tree_hashes(run_dir) == hashes  # the push modified nothing of the writer's
        assert {k: v for k, v in tree_stats(run_dir).items() if "/wal." not in k} == stats
        assert all_paths(run_dir) == paths  # nor created or removed anything in the run directory
        m = json.loads((tmp_path / "remote" / "run-live" / MANIFEST).read_bytes())
        assert not [rel for rel in m["files"] if "/wal." in rel]
        assert not list((tmp_path / "remote").rglob("wal.*"))
        assert "streams/main/claim.000001.json" in m["files"]
        assert verify(remote).ok
        assert len(pd.read_parquet(tmp_path / "remote" / "run-live" / "history")) == 50 * 3
        got = pull(remote, tmp_path / "pulled")
        assert got.failures == []
        assert len(runsync.open_run(tmp_path / "pulled" / "run-live").history()) == 50
    finally:
        run.finish()
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1 and res.files_sent > 0
    assert verify(remote).ok
    got = pull(remote, tmp_path / "pulled2")
    assert got.failures == []
    back = runsync.open_run(tmp_path / "pulled2" / "run-live")
    orig = runsync.open_run(root / "run-live")
    assert back.status == "finished" and len(back.history()) == 70
    pd.testing.assert_frame_equal(back.history(), orig.history())
    assert tree_hashes(tmp_path / "pulled2" / "run-live", skip=lambda r: r == MANIFEST) == source_files(root / "run-live")


CRASH_CHILD = """
import os, sys, time, runsync
run = runsync.init(dir=sys.argv[1], id="run-crash", settings=runsync.Settings(
    flush_interval=0.05, part_interval=3600, segment_size=1 << 16))
for i in range(400):
    run.log({"a": float(i), "s": "x" * 20})
time.sleep(0.4)
os._exit(0)
"""


def test_crashed_run_wal_tail_is_pushed_as_a_part_and_reads_back(root: Path, tmp_path: Path) -> None:
    """A dead writer's tail goes to the remote as the part recovery would write, never as WAL (spec §12.4)."""
    subprocess.run([sys.executable, "-c", CRASH_CHILD, str(root)], env=cli_env(), check=True, timeout=60)
    wal = sorted(p.name for p in (root / "run-crash" / "streams" / "main").glob("wal.*"))
    assert wal
    remote = Remote(str(tmp_path / "remote"))
    assert push(root, remote).failures == []
    assert not list((tmp_path / "remote" / "run-crash" / "streams" / "main").glob("wal.*"))
    assert len(pd.read_parquet(tmp_path / "remote" / "run-crash" / "history")) == 400 * 2
    assert pull(remote, tmp_path / "pulled").failures == []
    back = runsync.open_run(tmp_path / "pulled" / "run-crash")
    assert back.status == "crashed"
    pd.testing.assert_frame_equal(back.history(), runsync.open_run(root / "run-crash").history())
    assert len(back.history()) == 400


# =========================================================================== CLI


def test_cli_push_json_status_and_verify(root: Path, tmp_path: Path) -> None:
    make_run(root, "run-a", steps=10, files={"files/w.bin": b"w" * 2000})
    make_run(root, "run-b", steps=10)
    dest = str(tmp_path / "remote")
    st = run_cli("status", root, dest)
    assert st.returncode == 0 and st.stdout.count("never pushed") == 2, st.stdout
    p = run_cli("push", root, dest, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {"runs", "files_sent", "bytes_sent", "bytes_deduplicated", "skipped"} <= set(doc)
    assert doc["runs"] == 2 and doc["skipped"] == 0 and doc["files_sent"] > 0 and doc["bytes_sent"] > 0
    st = run_cli("status", root, dest)
    assert st.stdout.count("up to date") == 2, st.stdout
    resume_run(root, "run-b", steps=3)
    st = run_cli("status", root, dest, "--json")
    assert {r["run"]: r["status"] for r in json.loads(st.stdout)["runs"]} == {"run-a": "up to date",
                                                                              "run-b": "changed"}
    p = run_cli("push", root, dest, "--json")
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["skipped"] == 1 and doc["runs_pushed"] == 1
    assert run_cli("verify", dest).returncode == 0
    part = min((tmp_path / "remote" / "run-a" / "history").glob("*.parquet"))
    part.write_bytes(b"\0" * part.stat().st_size)
    v = run_cli("verify", dest)
    assert v.returncode == 1 and f"CORRUPT  run-a/history/{part.name}" in v.stdout, v.stdout


@pytest.mark.parametrize("damage", [
    "claim",
    "run.json",
])
def test_one_unreadable_run_does_not_stop_the_others(root: Path, tmp_path: Path, damage: str) -> None:
    for run_id in ("run-a", "run-b", "run-c"):
        make_run(root, run_id, steps=5)
    bad = root / "run-b" / ("streams/main/claim.000000.json" if damage == "claim" else "run.json")
    bad.write_bytes(b'{"truncated": ')
    dest = tmp_path / "remote"
    p = run_cli("push", root, dest, "--json")
    assert p.returncode == 1, (p.stdout, p.stderr)
    doc = json.loads(p.stdout)
    assert [f["run"] for f in doc["failures"]] == ["run-b"]
    assert "FAILED run-b" in p.stderr
    assert doc["runs"] == 3 and doc["runs_pushed"] == 2
    assert sorted(remote_runs(Remote(str(dest)))) == ["run-a", "run-c"]
    assert verify(Remote(str(dest))).ok


def test_progress_lines_say_what_happened_to_each_run(root: Path, tmp_path: Path) -> None:
    """Not a TTY: one line per run that was pushed or FAILED (a failing run is never 'done'); unchanged runs
    print nothing, the summary line counts them (issue 13 §2: 200 no-op lines are noise)."""
    for run_id in ("run-a", "run-b"):
        make_run(root, run_id, steps=5)
    dest = tmp_path / "remote"
    p = run_cli("push", root, dest, "--include", "run-a")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^runsync: run-a pushed \(1/1 runs ", p.stderr, re.M), p.stderr
    (root / "run-b" / "run.json").write_bytes(b'{"truncated": ')
    p = run_cli("push", root, dest)
    assert p.returncode == 1
    assert "unchanged" not in p.stderr and "1 unchanged, 1 failed" in p.stdout, (p.stdout, p.stderr)
    assert re.search(r"^runsync: run-b FAILED \(.*1 failed\)$", p.stderr, re.M), p.stderr
    p = run_cli("push", root, dest, "--dry-run", "--exclude", "run-b")
    assert "unchanged" not in p.stderr and "1 unchanged" in p.stdout, (p.stdout, p.stderr)
    p = run_cli("pull", dest, tmp_path / "back")
    assert p.returncode == 0 and re.search(r"^runsync: run-a pulled \(1/1 runs ", p.stderr, re.M), p.stderr


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_upload_reports_bytes_as_they_move(kind: str, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    url = str(tmp_path / "remote") if kind == "local" else f"memory://progress-{uuid.uuid4().hex[:8]}"
    heard: list[int] = []
    Remote(url).upload(str(src), "run-a/files/big.bin", progress=heard.append)
    assert heard and heard[-1] == 3 << 20 and heard == sorted(heard), heard[:5]


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_download_reports_bytes_as_they_move(kind: str, tmp_path: Path) -> None:
    content = os.urandom(3 << 20)
    url = str(tmp_path / "remote") if kind == "local" else f"memory://progress-{uuid.uuid4().hex[:8]}"
    remote = Remote(url)
    remote.write("run-a/files/big.bin", content)
    heard: list[int] = []
    remote.download("run-a/files/big.bin", str(tmp_path / "back.bin"), progress=heard.append)
    assert (tmp_path / "back.bin").read_bytes() == content
    assert heard and heard[0] == 0 and heard[-1] == 3 << 20 and heard == sorted(heard), heard[:5]


def test_transfer_restarted_inside_the_backend_counts_from_zero_again() -> None:
    """gcsfs retries a download itself, calling set_size again: the bytes heard must not add up across tries."""
    from runsync.syncer.remote import _callback

    heard: list[int] = []
    cb = _callback(heard.append)
    cb.set_size(10)
    cb.relative_update(6)  # the first try dies after 6 bytes
    cb.set_size(10)
    cb.relative_update(10)
    assert heard[-1] == 10 and max(heard) == 10, heard


def test_pull_counts_each_file_as_it_lands(root: Path, tmp_path: Path) -> None:
    """The progress line of a pull moves per file (and per byte in flight), not once per run."""
    make_run(root, "run-a", steps=5)
    dest = Remote(str(tmp_path / "remote"))
    assert not push(root, dest).failures
    seen: list[tuple[int, int]] = []
    real = dest.download

    def spy(rel: str, local_path: str, progress: Any = None) -> None:
        seen.append((res_box[0].files, res_box[0].bytes_in_flight))
        real(rel, local_path, progress=progress)

    res_box: list[Any] = []
    dest.download = spy  # type: ignore[method-assign]

    def progress(run_id: str, outcome: str, res: Any) -> None:
        res_box[:] = [res]
    res = pull(dest, tmp_path / "back", jobs=1, progress=progress)
    assert not res.failures and res.files >= 3
    assert [n for n, _ in seen] == list(range(res.files)), seen  # counted one by one as each landed
    assert res.bytes_in_flight == 0


def test_progress_line_on_a_terminal(root: Path, tmp_path: Path) -> None:
    """On a TTY: one line redrawn in place (\\r, erase), ending with a newline and the totals."""
    import pty

    make_run(root, "run-a", steps=5)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "runsync.cli", "push", str(root), str(tmp_path / "remote")],
                         stdout=subprocess.PIPE, stderr=slave, env=cli_env(), text=True)
    os.close(slave)
    out = p.communicate(timeout=60)[0]
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    err = b"".join(chunks).decode()
    assert p.returncode == 0, (out, err)
    assert "\r\x1b[K1/1 runs" in err and err.endswith("\n"), repr(err)
    assert "done" not in err and "ETA" in err, repr(err)


def test_retry_timeout_counts_time_spent_retrying_not_the_failed_transfer() -> None:
    """A long transfer that fails late (a big file on a slow link) still gets its retries."""
    calls: list[float] = []

    def op() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(0.6)  # longer than the whole timeout
            raise ConnectionError("reset by peer")
        return "ok"

    policy = RetryPolicy(retries=3, timeout=0.5, base=0.01, say=lambda m: None)
    assert policy.run("send big.bin", op) == "ok" and len(calls) == 2


def test_dry_run_progress_says_would_push_for_a_changed_run(root: Path, tmp_path: Path) -> None:
    make_run(root, "run-a", steps=5)
    dest = tmp_path / "remote"
    assert run_cli("push", root, dest).returncode == 0
    resume_run(root, "run-a", steps=3)
    p = run_cli("push", root, dest, "--dry-run")
    assert p.returncode == 0 and re.search(r"^runsync: run-a would push \(", p.stderr, re.M), p.stderr


def test_retry_lines_go_above_the_progress_line(capsys: pytest.CaptureFixture[str]) -> None:
    from runsync.cli.sync import _Progress
    from runsync.syncer import PushResult

    p = _Progress(quiet=False)
    p.tty = True  # as on a terminal
    res = PushResult(runs=2)
    p("run-a", "sending", res)
    p.say("network error (ConnectionError), retrying in 1 s (attempt 1)")
    res.files_sent, res.bytes_sent = 3, 3000
    p("run-a", "pushed", res)
    p.close()
    err = capsys.readouterr().err
    assert "\r\x1b[Krunsync: network error (ConnectionError), retrying in 1 s (attempt 1)\n\r\x1b[K0/2 runs" in err, \
        repr(err)
    last = err.rsplit("\r\x1b[K", 1)[1]
    assert last.startswith("1/2 runs  3 files  3.0 KB  ") and last.endswith("\n"), repr(err)
