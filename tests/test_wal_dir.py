"""The WAL on a local disk (``RUNSYNC_WAL_DIR``, spec §6.1 ``wal_dir``, §8.5): who can read and recover the tail.

A writer on another node is simulated by rewriting the crashed incarnation's claim ``host``:
that is exactly what a reader or a resumed writer on another node sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import env_without_runsync
from test_crash import (
    SETTINGS,
    WAL_NAME,
    Children,
    check_crashed_run,
    child_config,
    children,  # noqa: F401  (fixture)
    new_ack_file,
)

import runsync
from runsync.reader.run import UnreadableTailWarning


def _crash_with_local_wal(tmp_path: Path, children: Children, run_id: str) -> tuple[Path, Path, int, int]:
    """A child writing run ``run_id`` with its WAL in a local dir, killed with most rows in the WAL."""
    root, local = tmp_path / "runs", tmp_path / "local"
    ack = new_ack_file(tmp_path / f"{run_id}.ack")
    cfg = child_config(root, run_id, ack, "bool", wal_dir=str(local))
    cfg["settings"]["part_interval"] = 60.0  # the first part only at the end: everything is WAL tail
    child = children.start(cfg)
    try:
        child.wait_acked(3000)
        time.sleep(0.3)
    finally:
        acked = child.kill9()
    run_dir = root / run_id
    n = check_crashed_run(run_dir, {"main": ("bool", acked, "")})["main"]  # same node: the tail is read
    return root, local, acked, n


def _set_claim_host(run_dir: Path, inc: int, host: str) -> None:
    """Make incarnation ``inc`` look written on ``host``; its heartbeat is an hour old (crashed, §7.3)."""
    stream = run_dir / "streams" / "main"
    claim = json.loads((stream / f"claim.{inc:06d}.json").read_bytes())
    claim["host"] = host
    claim["time"] -= 3600
    (stream / f"claim.{inc:06d}.json").write_text(json.dumps(claim))
    status = json.loads((stream / "status.json").read_bytes())
    if status["incarnation"] == inc and status["state"] == "running":
        status["host"] = host
        status["heartbeat"] -= 3600
        (stream / "status.json").write_text(json.dumps(status))


def test_wal_dir_kill9_loses_nothing_on_the_same_node(tmp_path: Path, children: Children) -> None:
    root, local, acked, n = _crash_with_local_wal(tmp_path, children, "wl")
    assert n >= acked
    assert [p for p in local.rglob("*") if WAL_NAME.match(p.name)]
    assert not [p for p in (root / "wl").rglob("*") if WAL_NAME.match(p.name)]
    assert runsync.open_run(root / "wl").streams()[0]["tail_visible"]
    # the runs table reads the tail too (its summary is the last logged value, not the last document's)
    table = runsync.runs(root)
    assert table["summary.i"].tolist() == [n - 1]


def test_other_node_sees_parts_only_and_says_so(tmp_path: Path, children: Children) -> None:
    root, local, acked, n = _crash_with_local_wal(tmp_path, children, "wo")
    run_dir = root / "wo"
    real_host = json.loads((run_dir / "streams" / "main" / "claim.000000.json").read_bytes())["host"]
    _set_claim_host(run_dir, 0, "another-node")
    view = runsync.open_run(run_dir)
    with pytest.warns(UnreadableTailWarning, match=r"keeps its write-ahead log in .* on host another-node"):
        rows = view.rows(["i"]).to_pandas()
    assert len(rows) == 0  # no part yet: the whole tail is on the other node's disk
    (s,) = view.streams()
    assert s["state"] == "crashed" and s["tail_visible"] is False and s["wal_dir"].startswith(str(local))
    show = subprocess.run([sys.executable, "-m", "runsync.cli", "show", str(run_dir)], capture_output=True, text=True,
                          env=env_without_runsync(), timeout=60)
    assert show.returncode == 0, show.stderr
    assert "its write-ahead log is on host another-node, not readable here" in show.stdout

    # A writer resuming on this "other" node cannot recover that tail: it says so, and continues
    # after what the parts hold (here: nothing).
    run = runsync.init(id="wo", dir=root, resume=True, settings=runsync.Settings(**SETTINGS))
    assert "cannot read; its rows since its last history part are lost" in (run._reporter.last_error or "")
    assert run.step == 0
    for k in range(100):
        run.log({"i": 10_000 + k})
    run.finish()
    assert [p for p in local.rglob("*") if WAL_NAME.match(p.name)], "another node's WAL is not this writer's to delete"

    # Back on the first node, the old segments are still there. Their seqs were reused by the
    # new incarnation (it could not see them): readers must ignore them, not show rows twice.
    _set_claim_host(run_dir, 0, real_host)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadableTailWarning)
        view = runsync.open_run(run_dir)
        rows = view.rows().to_pandas()
    assert not rows.duplicated(["stream", "key", "seq"]).any()
    assert sorted(rows[rows["key"] == "i"]["int"].tolist()) == [10_000 + k for k in range(100)]
    assert view.status == "finished"


def test_resume_on_the_same_node_recovers_the_local_tail(tmp_path: Path, children: Children) -> None:
    root, local, acked, n = _crash_with_local_wal(tmp_path, children, "wr")
    run = runsync.init(id="wr", dir=root, resume=True, settings=runsync.Settings(**SETTINGS), wal_dir=local)
    assert run.step == n
    run.finish()
    assert not [p for p in local.rglob("*") if WAL_NAME.match(p.name)], "recovered segments must be deleted"
    import pandas as pd

    df = pd.read_parquet(root / "wr" / "history")  # stock reader: the old tail is now a part
    assert sorted(df[df["key"] == "i"]["step"].tolist()) == list(range(n))
