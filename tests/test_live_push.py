"""Pushing runs that change under the pusher (spec §12.3, since 1.3; issue 10 item 2).

A part merged away mid-push is no failure; files a push sends to a run's tabular paths (history/,
system/, media/) go through the staging area and are moved into place just before the commit, so no
object that no manifest names sits where stock readers read, and the commit removes whatever another
push left there; verify reports such a file as UNLISTED and a stale document copy as itself (§12.6).
Real writer subprocesses, a local-path remote and moto's real S3 server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import env_without_runsync
from sync_util import make_run, resume_run, wrap
from test_temp_files import start_child

from runsync.format.history import SCHEMA, list_parts, read_part, remove_parts, write_part
from runsync.format.manifest import MANIFEST, STAGING_ROOT
from runsync.syncer import PushOptions, Remote, push, verify

pytest.importorskip("s3fs")
from sync_s3server import moto_s3


def _remote(kind: str, tmp_path: Path) -> tuple[Remote, str, dict[str, Any] | None]:
    if kind == "local":
        url = str(tmp_path / "remote")
        os.makedirs(url)
        return Remote(url), url, None
    s3 = moto_s3()
    url = s3.fresh_url()
    return Remote(url, storage_options=s3.storage_options), url, s3.storage_options


def stock_rows(url: str, options: dict[str, Any] | None, run_id: str) -> int:
    """Rows of ``<remote>/<id>/history`` as stock pandas reads them (through s3fs for S3)."""
    if options:
        return len(pd.read_parquet(f"{url}/{run_id}/history", storage_options=options))
    return len(pd.read_parquet(f"{url}/{run_id}/history"))


def committed_names(remote: Remote, run_id: str) -> set[str]:
    raw = remote.read(f"{run_id}/{MANIFEST}")
    return set(json.loads(raw)["files"]) if raw else set()


def tabular_on_remote(remote: Remote, run_id: str) -> set[str]:
    return {f"{d}/{n}" for d in ("history", "system", "media") for n in remote.files(f"{run_id}/{d}")}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_pushes_of_a_training_run_never_fail_and_readers_count_each_row_once(tmp_path: Path, kind: str) -> None:
    """The issue's scenario: a run trains in a subprocess (parts every 50 ms, merged in pairs) while
    pushes run back to back; not one fails because a part vanished, and after the run finished and a
    final push, stock pandas reads exactly the source's rows from the remote."""
    root = tmp_path / "runs"
    remote, url, options = _remote(kind, tmp_path)
    proc, ack = start_child(tmp_path, root, "live1", steps=3000, end="finish", sleep=0.001)
    results = []
    try:
        while proc.poll() is None:
            if (root / "live1" / "run.json").exists():
                results.append(push(root, remote))
            time.sleep(0.3)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert len(results) >= 3, "the run ended before it could be pushed live"
    failures = [f for r in results for f in r.failures]
    assert failures == [], failures
    final = push(root, remote)
    assert final.failures == []
    v = verify(remote)
    assert v.ok, v.as_dict()
    src = len(pd.read_parquet(root / "live1" / "history"))
    assert src == 3 * 3000
    assert stock_rows(url, options, "live1") == src
    assert tabular_on_remote(remote, "live1") <= committed_names(remote, "live1")
    assert remote.files(f"{STAGING_ROOT}/live1") == {}


def _big_part_run(root: Path) -> Path:
    """A finished run whose first part is over 1 MiB (sent from its file, not from memory) and a later
    small part: a merge of the two makes the big one vanish."""
    run_dir = make_run(root, "merge", steps=20)
    hist = run_dir / "history"
    (p,) = list_parts(hist)
    rng = np.random.default_rng(1)
    n = 200_000
    big = pa.table({"step": np.arange(n, dtype=np.int64), "time": pa.array(np.full(n, 1_700_000_000_000_000),
                                                                            pa.timestamp("us", tz="UTC")),
                    "key": ["noise"] * n, "type": np.full(n, 1, np.int8), "value": rng.random(n),
                    "int": pa.nulls(n, pa.int64()), "text": pa.nulls(n, pa.string()), "stream": ["side"] * n,
                    "seq": np.arange(n, dtype=np.int64)}, schema=SCHEMA)
    write_part(hist, "side", 0, n - 1, big)
    assert os.path.getsize(hist / "side.000000000000-000000199999.parquet") > 1 << 20
    write_part(hist, "side", n, n, big.slice(0, 1).set_column(8, SCHEMA.field("seq"), pa.array([n], pa.int64())))
    return run_dir


def _merge_side(hist: Path) -> None:
    """What the writer's compaction does (spec §4.4): the merged part first, then the sources go."""
    parts = [p for p in list_parts(hist) if p.stream == "side"]
    write_part(hist, "side", parts[0].lo, parts[-1].hi, pa.concat_tables([read_part(p.path) for p in parts]))
    remove_parts(p.path for p in parts)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_part_merged_away_mid_push_is_pushed_as_it_is_now(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "runs"
    run_dir = _big_part_run(root)
    remote, url, options = _remote(kind, tmp_path)
    merged = []

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        if name in ("put_file", "pipe_file") and not merged:  # the first upload: the writer merges meanwhile
            merged.append(name)
            _merge_side(run_dir / "history")
        return None
    wrap(remote, fault=fault)
    res = push(root, remote)
    assert merged and res.failures == [], res.failures
    assert committed_names(remote, "merge") >= {"history/side.000000000000-000000200000.parquet"}
    assert stock_rows(url, options, "merge") == len(pd.read_parquet(run_dir / "history"))
    assert tabular_on_remote(remote, "merge") <= committed_names(remote, "merge")
    assert verify(remote).ok


def test_a_run_whose_parts_keep_vanishing_fails_alone_and_clearly(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run_dir = _big_part_run(root)
    make_run(root, "calm", steps=5)
    remote, _url, _opts = _remote("local", tmp_path)
    hist = run_dir / "history"

    def fault(name: str, args: tuple) -> tuple[BaseException, bool] | None:
        if name == "put_file":  # every upload of the big part: it is renamed away (a new name each time)
            (big,) = [p for p in list_parts(hist) if p.stream == "side" and p.path.stat().st_size > 1 << 20]
            os.rename(big.path, hist / f"side.{big.lo:012d}-{big.hi + 1:012d}.parquet")
        return None
    wrap(remote, fault=fault)
    res = push(root, remote)
    assert [r for r, _ in res.failures] == ["merge"], res.failures
    assert "kept vanishing" in res.failures[0][1] and "push again" in res.failures[0][1]
    assert res.runs_pushed == 1  # the other run is committed
    assert remote.read(f"merge/{MANIFEST}") is None and tabular_on_remote(remote, "merge") == set()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runsync.cli", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _many_parts_run(root: Path, n: int) -> Path:
    run_dir = make_run(root, "many", steps=10)
    hist = run_dir / "history"
    rng = np.random.default_rng(2)
    rows = 40_000
    for i in range(n):
        lo = 1000 + i * rows
        t = pa.table({"step": np.arange(rows, dtype=np.int64), "time": pa.array(np.full(rows, 1_700_000_000_000_000),
                                                                                pa.timestamp("us", tz="UTC")),
                      "key": ["noise"] * rows, "type": np.full(rows, 1, np.int8), "value": rng.random(rows),
                      "int": pa.nulls(rows, pa.int64()), "text": pa.nulls(rows, pa.string()),
                      "stream": ["side"] * rows, "seq": np.arange(lo, lo + rows, dtype=np.int64)}, schema=SCHEMA)
        write_part(hist, "side", lo, lo + rows - 1, t)
    return run_dir


def test_push_killed_mid_upload_leaves_nothing_unlisted_where_stock_readers_read(tmp_path: Path) -> None:
    s3 = moto_s3()
    root = tmp_path / "runs"
    run_dir = _many_parts_run(root, 40)
    url = s3.fresh_url()
    remote = Remote(url, storage_options=s3.storage_options)
    env = {**env_without_runsync(), **s3.env}
    proc = _cli(["push", str(root), url], env)
    try:
        deadline = time.monotonic() + 120
        while len(remote.files(f"{STAGING_ROOT}/many")) < 10:  # well inside step 1 of 40+ uploads
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert remote.read(f"many/{MANIFEST}") is None
    assert tabular_on_remote(remote, "many") == set()  # nothing at history/ that no manifest names
    staged = remote.files(f"{STAGING_ROOT}/many")
    assert len(staged) >= 10
    # The next push resumes: what was staged is not sent again; then everything is in place, once.
    proxy = wrap(remote)
    res = push(root, remote)
    assert res.failures == []
    sent = [str(a[1] if n == "put_file" else a[0]) for n, a in proxy.calls if n in ("put_file", "pipe_file")]
    assert not [p for p in sent if p.rsplit("/", 1)[-1] in staged], "a staged file was sent again"
    assert stock_rows(url, s3.storage_options, "many") == len(pd.read_parquet(run_dir / "history"))
    assert tabular_on_remote(remote, "many") == {r for r in committed_names(remote, "many")
                                                 if r.startswith(("history/", "system/", "media/"))}
    assert remote.files(f"{STAGING_ROOT}/many") == {}
    assert verify(remote).ok


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_verify_reports_unlisted_and_the_next_push_removes_it(tmp_path: Path, kind: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    run_dir = make_run(root, "run-u", steps=30)
    remote, url, options = _remote(kind, tmp_path)
    assert push(root, remote).failures == []
    part = sorted((run_dir / "history").glob("*.parquet"))[0]
    planted = "history/main.000000900000-000000900029.parquet"  # what a failed 1.2 push could leave
    remote.write(f"run-u/{planted}", part.read_bytes())
    assert stock_rows(url, options, "run-u") == 2 * 30 * 3  # stock readers count those rows twice
    v = verify(remote)
    assert not v.ok and v.unlisted == [("run-u", planted)] and not (v.missing or v.corrupt or v.stale)
    from runsync.cli import main as cli_main

    env = moto_s3().env if kind == "s3" else {}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = cli_main(["verify", url])
    finally:
        for k, val in old.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
    out = capsys.readouterr().out
    assert rc == 1 and f"UNLISTED run-u/{planted}" in out, out
    # A plain push of the unchanged run trusts its own record: one listing of the remote root (to see
    # runs the remote lost, spec §12.5) and nothing per run ...
    proxy = wrap(remote)
    assert push(root, remote).skipped == 1 and proxy.count() == 1
    # ... push --verify looks, and removes it.
    assert push(root, remote, PushOptions(verify=True)).failures == []
    assert verify(remote).ok and stock_rows(url, options, "run-u") == 30 * 3
    # So does the next push that commits the run (it changed), whichever push left the file.
    remote.write(f"run-u/{planted}", part.read_bytes())
    resume_run(root, "run-u", steps=5)
    assert push(root, remote).failures == []
    assert verify(remote).ok and stock_rows(url, options, "run-u") == 30 * 3 + 5 * 2


def test_verify_reports_a_stale_copy_as_itself(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "run-s", steps=10)
    remote, _url, _opts = _remote("local", tmp_path)
    assert push(root, remote).failures == []
    resume_run(root, "run-s", steps=3)  # a second commit: replaced documents now live in the blob store
    assert push(root, remote).failures == []
    copy = Path(remote.path("run-s/streams/main/status.json"))
    copy.write_bytes(copy.read_bytes().replace(b"finished", b"running!"))
    v = verify(remote)
    assert v.stale == [("run-s", "streams/main/status.json")] and not (v.corrupt or v.missing or v.unlisted)
    assert not v.ok and v.as_dict()["stale"] == ["run-s/streams/main/status.json"]
    assert push(root, remote, PushOptions(verify=True)).failures == []
    assert verify(remote).ok


def test_unchanged_run_costs_no_request_after_a_staged_push(tmp_path: Path) -> None:
    """A no-op push of an unchanged run still costs no remote request (spec §12.5), staging or not."""
    root = tmp_path / "runs"
    make_run(root, "run-n", steps=10)
    remote, _url, _opts = _remote("s3", tmp_path)
    assert push(root, remote).failures == []
    proxy = wrap(remote)
    res = push(root, remote)
    # one listing of the remote root (runs the remote lost are pushed again, spec §12.5), nothing per run
    assert (res.skipped, res.files_sent) == (1, 0) and proxy.count() == 1, proxy.calls
