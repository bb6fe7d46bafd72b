"""`runsync import csv` (issue 17): a history table (a column per key, a step column) as one run."""

from __future__ import annotations

from pathlib import Path

from convert_util import cli, run_dirs, series, times, tree

import runsync


def test_csv_with_steps_and_times(tmp_path: Path) -> None:
    f = tmp_path / "metrics.csv"
    f.write_text("step,time,loss,acc,phase,flag\n0,1700000000.5,0.5,1,train,true\n10,1700000001.25,0.25,,eval,false\n"
                 "20,1700000002,nan,3,train,\n")
    root = tmp_path / "runs"
    r = cli("import", "csv", str(f), "--dir", str(root), "--project", "p")
    [d] = run_dirs(root)
    assert "imported" in r.stdout
    view = runsync.open_run(d)
    assert view.name == "metrics" and view.info.project == "p" and view.info.source["kind"] == "csv"
    loss = series(view, "loss")
    assert loss[:2] == [(0, 0.5), (10, 0.25)] and loss[2][0] == 20 and loss[2][1] != loss[2][1]  # NaN kept
    assert series(view, "acc") == [(0, 1.0), (20, 3.0)]
    assert times(view, "loss") == [(0, 1700000000500000), (10, 1700000001250000), (20, 1700000002000000)]
    h = view.history(format="arrow")
    assert h.column("phase").to_pylist() == ["train", "eval", "train"]
    assert h.column("flag").to_pylist() == [True, False, None]
    before = tree(d)
    assert "unchanged" in cli("import", "csv", str(f), "--dir", str(root)).stdout and tree(d) == before
    with open(f, "a") as fh:
        fh.write("30,1700000003,0.125,4,train,true\n")
    assert "updated" in cli("import", "csv", str(f), "--dir", str(root)).stdout
    assert runsync.open_run(d).rows(["loss"]).num_rows == 4


def test_csv_without_time_or_step_column(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("loss\n3\n2\n1\n")
    root = tmp_path / "runs"
    cli("import", "csv", str(f), "--dir", str(root))
    [d] = run_dirs(root)
    assert series(runsync.open_run(d), "loss") == [(0, 3.0), (1, 2.0), (2, 1.0)]
    before = tree(d)
    assert "unchanged" in cli("import", "csv", str(f), "--dir", str(root)).stdout and tree(d) == before
    f.write_text("loss\n3\n2\n1\n0.5\n")
    cli("import", "csv", str(f), "--dir", str(root))
    assert series(runsync.open_run(d), "loss")[-1] == (3, 0.5) and runsync.open_run(d).rows().num_rows == 4


def test_bad_csv_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_bytes(b"")
    r = cli("import", "csv", str(f), "--dir", str(tmp_path / "runs"), check=False)
    assert r.returncode == 1 and "needs a header row" in r.stderr and "Traceback" not in r.stderr
    f.write_text("step,loss\nx,1\n2,0.5\n")
    r = cli("import", "csv", str(f), "--dir", str(tmp_path / "runs"))
    assert "row 2: step 'x' is not a non-negative integer" in r.stdout
