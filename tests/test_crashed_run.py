"""A crashed run is a first-class run, locally and on the remote (issue 10 item 6; spec §8.5, §12.4).

The scenario: a child logs 601 steps with no part written (part_interval of an
hour), is killed with SIGKILL and never resumed. Everything it logged is in its
WAL tail (3 preallocated 16 MiB segments), ``history/`` is empty.

- ls, runs, show and the report take steps, duration and last values from the tail;
- push (local path and S3 on a moto server) and bundle ship no WAL segment but the
  part recovery would write, under the same name, so stock readers read every
  acknowledged row, and the remote costs about what a finished run of the same data
  costs; the source run is not touched;
- after the run is resumed locally, the next push converges to the recovered run.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sync_s3server import moto_s3
from sync_util import all_paths, remote_files, sha_file, source_files, tree_hashes
from test_crash import Children, child_config, children, new_ack_file  # noqa: F401 (fixture)

import runsync
from runsync.cli import main as cli_main
from runsync.format import history
from runsync.format.manifest import MANIFEST
from runsync.format.meta import State
from runsync.reader import index
from runsync.reader.index import INDEX_PATH
from runsync.syncer import Remote, RetryPolicy, pull, push, verify
from runsync.syncer.bundle import BUNDLE_INDEX, make_bundle, push_bundle

STEPS = 601
# No part before the kill: every row is in the tail. Default segment size (16 MiB, preallocated).
CHILD_SETTINGS = {"flush_interval": 0.05, "part_interval": 3600.0}
WAL = re.compile(r"(^|/)wal\.[0-9]{6}\.[0-9]{6}$")
TAIL_PART = f"history/main.{0:012d}-{STEPS - 1:012d}.parquet"  # what recovery names the tail's part (§8.5)


def crash(root: Path, tmp: Path, children: Children, run_id: str = "crashed1",  # noqa: F811
          end: str = "hang") -> int:
    """Run the child until it logged STEPS calls; SIGKILL it (``end="hang"``) or let it finish. Calls logged."""
    cfg = child_config(root, run_id, new_ack_file(tmp / f"{run_id}.ack"), kind="str", count=STEPS, end=end,
                       settings=dict(CHILD_SETTINGS))
    child = children.start(cfg, name=run_id)
    if end == "finish":
        assert child.proc.wait(timeout=60) == 0, child.errors()
        return STEPS
    child.wait_phase(2)
    time.sleep(0.2)  # the flusher has drained the queue into the WAL (not into a part: part_interval is an hour)
    acked = child.kill9()
    assert acked == STEPS
    return acked


def resume(root: Path, run_id: str, steps: int = 20) -> None:
    """Resume ``run_id`` in this process (recovering its tail) and log ``steps`` more calls like the child's."""
    run = runsync.init(dir=root, id=run_id, resume=True)
    for i in range(run.step, run.step + steps):
        run.log({"i": i, "x": i * 0.5, "s": f"v{i}"})
    run.finish()


def cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli_main([str(a) for a in args])
    return rc, capsys.readouterr().out


def report_runs(capsys: pytest.CaptureFixture[str], root: Path, out: Path) -> dict[str, Any]:
    rc, _ = cli(capsys, "report", root, "-o", out, "-q")
    assert rc == 0
    m = re.search(r'<script type="application/json" id="runsync-data">(.*?)</script>', out.read_text(), re.DOTALL)
    assert m
    return {r["id"]: r for r in json.loads(m.group(1))["runs"]}


def expected_end(run_dir: Path) -> tuple[float, float]:
    """(start, time of the last row) of the run, from what open_run reads (parts plus tails)."""
    view = runsync.open_run(run_dir)
    start = min(s["started"] for s in view.streams())
    last = view.rows().column("time").to_pylist()
    return start, max(t.timestamp() for t in last)


@pytest.fixture
def crashed(tmp_path: Path, children: Children) -> Path:  # noqa: F811
    root = tmp_path / "runs"
    root.mkdir()
    crash(root, tmp_path, children)
    run_dir = root / "crashed1"
    assert not list((run_dir / "history").glob("*.parquet")), "the scenario needs every row in the tail"
    assert len(list((run_dir / "streams" / "main").glob("wal.*"))) >= 2
    return run_dir


def test_ls_runs_show_and_report_count_the_tail(crashed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = crashed.parent
    monkeypatch.setattr(index, "RACY_SECONDS", -1.0)  # cache records of files just written
    start, last = expected_end(crashed)
    assert last > start
    for _ in range(2):  # built, then read from the runs index
        rc, out = cli(capsys, "ls", root, "--json")
        [rec] = json.loads(out)["runs"]
        assert rc == 0 and rec["status"] == State.CRASHED and rec["steps"] == STEPS
        assert rec["duration"] == pytest.approx(last - start, abs=1e-3)
    cached = json.loads((root / INDEX_PATH).read_text())["runs"]["crashed1"]["record"]
    assert cached["steps"] == STEPS  # the tail's decode is cached with the record
    rc, out = cli(capsys, "runs", root, "--json")
    [rec] = json.loads(out)["runs"]
    assert rec["steps"] == STEPS and rec["duration"] == pytest.approx(last - start, abs=1e-3)
    rc, out = cli(capsys, "ls", root)
    assert re.search(rf"crashed1\s+crashed\s+{STEPS}\s", out), out
    rc, out = cli(capsys, "show", "crashed1", "--dir", root, "--json")
    shown = json.loads(out)
    assert shown["meta"]["duration"] == pytest.approx(last - start, abs=1e-3)
    assert shown["last"] == {"i": STEPS - 1, "x": (STEPS - 1) * 0.5, "s": f"v{STEPS - 1}"}
    assert shown["summary"]["i"] == STEPS - 1
    table = report_runs(capsys, root, tmp_path / "r1.html")["crashed1"]
    assert table["steps"] == STEPS and table["duration"] == pytest.approx(last - start, abs=1e-3)

    # Resuming recovers the tail and adds steps: the cached record is rebuilt, not reused.
    run = runsync.init(dir=root, id="crashed1", resume=True)
    for i in range(STEPS, STEPS + 10):
        run.log({"i": i})
    run.finish()
    rc, out = cli(capsys, "ls", root, "--json")
    [rec] = json.loads(out)["runs"]
    assert rec["status"] == State.FINISHED and rec["steps"] == STEPS + 10
    assert report_runs(capsys, root, tmp_path / "r2.html")["crashed1"]["steps"] == STEPS + 10


def remote_bytes(remote: Remote, run_id: str) -> tuple[int, list[str]]:
    """(bytes under ``<remote>/<run_id>/``, its paths)."""
    files = {rel: data for rel, data in remote_files(remote).items() if rel.startswith(f"{run_id}/")}
    return sum(len(d) for d in files.values()), sorted(files)


def read_stock(url: str, run_id: str, storage_options: dict[str, Any] | None) -> pd.DataFrame:
    return pd.read_parquet(f"{url}/{run_id}/history", storage_options=storage_options)


def check_crashed_push(crashed: Path, tmp_path: Path, children: Children, url: str,  # noqa: F811
                       storage_options: dict[str, Any] | None) -> None:
    root = crashed.parent
    remote = Remote(url, storage_options=storage_options, policy=RetryPolicy(retries=1, base=0.001, cap=0.01))
    before_hashes, before_paths = tree_hashes(crashed), all_paths(crashed)

    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1
    assert tree_hashes(crashed) == before_hashes and all_paths(crashed) == before_paths  # source untouched
    size, paths = remote_bytes(remote, "crashed1")
    assert not [p for p in paths if WAL.search(p)], paths
    manifest = json.loads(remote.read(f"crashed1/{MANIFEST}") or b"{}")
    assert not [p for p in manifest["files"] if WAL.search(p)]
    assert TAIL_PART in manifest["files"]  # recovery's [lo, hi] name

    # Stock readers, default arguments: every acknowledged row (3 keys per call).
    df = read_stock(url, "crashed1", storage_options)
    assert len(df) == 3 * STEPS
    assert sorted(df[df["key"] == "i"]["step"]) == list(range(STEPS))
    assert verify(remote).ok

    # About what a finished run of the same data costs on the remote.
    fin_root = tmp_path / "finished"
    fin_root.mkdir()
    crash(fin_root, tmp_path, children, run_id="finished1", end="finish")
    assert push(fin_root, remote).failures == []
    fin_size, _ = remote_bytes(remote, "finished1")
    assert size < 2 * fin_size, (size, fin_size)

    # Pulled back: reads as the local crashed run does.
    assert pull(remote, tmp_path / "pulled", run_ids=["crashed1"]).failures == []
    back, orig = runsync.open_run(tmp_path / "pulled" / "crashed1"), runsync.open_run(crashed)
    assert back.status == orig.status == State.CRASHED
    pd.testing.assert_frame_equal(back.history(), orig.history())
    assert back.documents() == orig.documents()
    assert back.meta["duration"] == pytest.approx(orig.meta["duration"], abs=1e-6)
    status = json.loads((tmp_path / "pulled" / "crashed1" / "streams" / "main" / "status.json").read_bytes())
    assert status["state"] == "crashed" and status["last_step"] == STEPS - 1

    # A second push of the unchanged crashed run is recognised by stat() alone.
    again = push(root, remote)
    assert again.skipped == 1 and again.files_sent == 0

    # Resumed locally (recovery writes the same part), then pushed: the remote converges to the recovered run.
    pushed_part = manifest["files"][TAIL_PART]["sha256"]
    resume(root, "crashed1")
    assert sha_file(crashed / TAIL_PART) == pushed_part  # recovery wrote the very part the pusher built
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1
    assert verify(remote).ok
    manifest = json.loads(remote.read(f"crashed1/{MANIFEST}") or b"{}")
    local = source_files(crashed)
    assert {p: e["sha256"] for p, e in manifest["files"].items()} == local
    _, paths = remote_bytes(remote, "crashed1")
    assert not [p for p in paths if WAL.search(p)]
    assert len(read_stock(url, "crashed1", storage_options)) == 3 * (STEPS + 20)
    assert pull(remote, tmp_path / "pulled2", run_ids=["crashed1"]).failures == []
    assert tree_hashes(tmp_path / "pulled2" / "crashed1", skip=lambda r: r == MANIFEST) == local


def test_push_crashed_run_to_a_local_path(crashed: Path, tmp_path: Path, children: Children,  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    check_crashed_push(crashed, tmp_path, children, str(tmp_path / "remote"), None)
    # The same through the CLI: verify says OK, pull gives the recovered run.
    rc, out = cli(capsys, "verify", tmp_path / "remote")
    assert rc == 0 and "OK" in out, out
    rc, _ = cli(capsys, "pull", tmp_path / "remote", tmp_path / "pulled-cli")
    assert rc == 0
    pd.testing.assert_frame_equal(runsync.open_run(tmp_path / "pulled-cli" / "crashed1").history(),
                                  runsync.open_run(crashed).history())
    # The pulled crashed copy (status 'crashed', no WAL) resumes like any crashed run.
    pulled = tmp_path / "pulled"
    resume(pulled, "crashed1", steps=5)
    back = runsync.open_run(pulled / "crashed1")
    assert back.status == State.FINISHED and len(back.history()) == STEPS + 5


def test_recovered_part_whose_bytes_differ_replaces_the_pushed_one(crashed: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Same name, other bytes (say, another pyarrow wrote the recovery): the hash comparison sends it again."""
    root = crashed.parent
    remote = Remote(str(tmp_path / "remote"))
    assert push(root, remote).failures == []
    pushed = json.loads(remote.read(f"crashed1/{MANIFEST}") or b"{}")["files"][TAIL_PART]["sha256"]
    monkeypatch.setattr(history, "_WRITE_OPTS", dict(history._WRITE_OPTS, compression="gzip"))
    resume(root, "crashed1")
    assert sha_file(crashed / TAIL_PART) != pushed
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1 and verify(remote).ok
    manifest = json.loads(remote.read(f"crashed1/{MANIFEST}") or b"{}")
    assert {p: e["sha256"] for p, e in manifest["files"].items()} == source_files(crashed)
    assert sha_file(tmp_path / "remote" / "crashed1" / TAIL_PART) == sha_file(crashed / TAIL_PART)
    assert len(pd.read_parquet(tmp_path / "remote" / "crashed1" / "history")) == 3 * (STEPS + 20)


def test_push_crashed_run_to_s3(crashed: Path, tmp_path: Path, children: Children) -> None:  # noqa: F811
    s3 = moto_s3()
    check_crashed_push(crashed, tmp_path, children, s3.fresh_url(), s3.storage_options)


def test_bundle_of_a_crashed_run_carries_parts_not_wal(crashed: Path, tmp_path: Path) -> None:
    before = tree_hashes(crashed)
    out = tmp_path / "b.tar"
    make_bundle(crashed.parent, out)
    assert tree_hashes(crashed) == before
    with tarfile.open(out) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile(BUNDLE_INDEX).read())  # type: ignore[union-attr]
    assert not [n for n in names if WAL.search(n)] and not [p for p in index["runs"]["crashed1"]["files"]
                                                              if WAL.search(p)]
    assert f"crashed1/history/main.{0:012d}-{STEPS - 1:012d}.parquet" in names
    assert out.stat().st_size < 1 << 20  # not 3 × 16 MiB of preallocated WAL
    remote = Remote(str(tmp_path / "remote"))
    assert push_bundle(out, remote).failures == []
    assert verify(remote).ok
    assert len(pd.read_parquet(tmp_path / "remote" / "crashed1" / "history")) == 3 * STEPS
    back = runsync.open_run(tmp_path / "remote" / "crashed1")
    assert back.status == State.CRASHED
    pd.testing.assert_frame_equal(back.history(), runsync.open_run(crashed).history())


SYSTEM_CHILD = """
import os, signal, sys, time, runsync
run = runsync.init(dir=sys.argv[1], id="sys1", settings=runsync.Settings(
    flush_interval=0.05, part_interval=3600, system_interval=0.2, system_window=0.5))
for i in range(100):
    run.log({"a": float(i)})
sysdir = os.path.join(sys.argv[1], "sys1", "streams", "main", "system")
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not (os.path.isdir(sysdir) and any(n.startswith("wal.") for n in os.listdir(sysdir))):
    time.sleep(0.05)
time.sleep(1.0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_crashed_system_substream_is_pushed_as_system_parts(tmp_path: Path) -> None:
    """The system table's dead tail (spec §14) goes the same way, into system/ parts."""
    import subprocess
    import sys

    from test_crash import child_env

    root = tmp_path / "runs"
    env = dict(child_env(), RUNSYNC_SYSTEM="on")
    proc = subprocess.run([sys.executable, "-c", SYSTEM_CHILD, str(root)], env=env, timeout=60, check=False)
    assert proc.returncode == -9
    run_dir = root / "sys1"
    assert list((run_dir / "streams" / "main" / "system").glob("wal.*"))
    local = runsync.open_run(run_dir)
    assert len(local.system()) > 0 and not list((run_dir / "system").glob("*.parquet"))
    remote = Remote(str(tmp_path / "remote"))
    assert push(root, remote).failures == [] and verify(remote).ok
    got = tmp_path / "remote" / "sys1"
    assert not [p for p in got.rglob("*") if WAL.search(p.name)]
    assert list((got / "system").glob("main.*.parquet")) and len(pd.read_parquet(got / "system")) > 0
    back = runsync.open_run(got)
    assert back.status == State.CRASHED
    pd.testing.assert_frame_equal(back.system(), local.system())
    pd.testing.assert_frame_equal(back.history(), local.history())


def test_remote_wal_from_an_earlier_push_is_replaced_by_parts(crashed: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote that a pre-1.3 pusher gave WAL segments: the next push sends the part and removes them."""
    import contextlib
    import importlib

    push_mod = importlib.import_module("runsync.syncer.push")

    root = crashed.parent
    remote = Remote(str(tmp_path / "remote"))
    with monkeypatch.context() as m:  # the earlier pusher: the dead writer's segments as they are
        m.setattr(push_mod, "shipped_files", lambda run_dir, files: contextlib.nullcontext(files))
        assert push(root, remote).failures == []
    assert list((tmp_path / "remote" / "crashed1" / "streams" / "main").glob("wal.*"))
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1 and res.skipped == 0
    assert not [p for p in (tmp_path / "remote").rglob("*") if WAL.search(p.name)]
    assert verify(remote).ok and len(pd.read_parquet(tmp_path / "remote" / "crashed1" / "history")) == 3 * STEPS
    assert push(root, remote).skipped == 1  # and from then on it is unchanged


def test_live_stream_beside_a_crashed_one_ships_nothing_from_its_wal(tmp_path: Path,
                                                                     children: Children) -> None:  # noqa: F811
    """Per stream: the dead one's tail goes as a part; the live writer's WAL is neither sent nor built from."""
    root = tmp_path / "runs"
    cfg = child_config(root, "two", new_ack_file(tmp_path / "two.ack"), kind="str", count=STEPS, stream="a",
                       settings=dict(CHILD_SETTINGS))
    child = children.start(cfg, name="two")
    child.wait_phase(2)
    time.sleep(0.2)
    assert child.kill9() == STEPS
    run_dir = root / "two"
    dead_files = tree_hashes(run_dir / "streams" / "a")
    paused = runsync.Settings(flush_interval=3600.0, part_interval=3600.0, heartbeat_interval=3600.0,
                              segment_size=1 << 16)
    live = runsync.init(dir=root, id="two", stream="b", settings=paused)
    try:
        for i in range(30):
            live.log({"b": float(i)})
        assert list((run_dir / "streams" / "b").glob("wal.*"))
        remote = Remote(str(tmp_path / "remote"))
        assert push(root, remote).failures == []
        assert tree_hashes(run_dir / "streams" / "a") == dead_files
        got = tmp_path / "remote" / "two"
        assert not [p for p in got.rglob("*") if WAL.search(p.name)]
        assert sorted(p.name for p in (got / "history").glob("*.parquet")) == [f"a.{0:012d}-{STEPS - 1:012d}.parquet"]
        assert json.loads((got / "streams" / "a" / "status.json").read_bytes())["state"] == "crashed"
        assert json.loads((got / "streams" / "b" / "status.json").read_bytes())["state"] == "running"
        assert verify(remote).ok
    finally:
        live.finish()
    assert push(root, remote).failures == [] and verify(remote).ok
    assert sorted(set(pd.read_parquet(tmp_path / "remote" / "two" / "history")["stream"])) == ["a", "b"]


def test_writer_resuming_during_the_tail_read_is_not_committed(crashed: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that claims (and recovers) the stream while the pusher reads the tail: that push of the run
    fails, commits nothing; the next push sends the recovered run (spec §12.4)."""
    from runsync.format import recovery

    real = recovery.scan_stream
    resumed: list[bool] = []

    def scan_then_resume(layout: Any, st: Any) -> Any:
        h = real(layout, st)
        if not resumed:  # a real writer resumes the run right after the pusher decoded the tail
            resumed.append(True)
            resume(crashed.parent, "crashed1", steps=3)
        return h

    monkeypatch.setattr(recovery, "scan_stream", scan_then_resume)
    remote = Remote(str(tmp_path / "remote"))
    res = push(crashed.parent, remote)
    assert resumed and len(res.failures) == 1 and "claimed by a new writer" in res.failures[0][1]
    assert remote.read(f"crashed1/{MANIFEST}") is None
    res = push(crashed.parent, remote)
    assert res.failures == [] and verify(remote).ok
    assert len(pd.read_parquet(tmp_path / "remote" / "crashed1" / "history")) == 3 * (STEPS + 3)
