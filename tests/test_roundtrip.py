"""What is logged reads back equal: through open_run() and through plain pandas/pyarrow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import runsync


def test_issue_example_reads_back_with_plain_pandas(root: Path) -> None:
    run = runsync.init(project="resnet", config={"lr": 1e-3, "batch": 128}, dir=root)
    for step in range(3000):
        run.log({"train/loss": 1.0 / (step + 1), "train/acc": step / 3000})
        if step % 1000 == 0:
            run.log({"val/acc": 0.5 + step / 1e4, "epoch": step // 1000})
    run.summary["best_val_acc"] = 0.77
    run.finish()

    df = pd.read_parquet(run.dir / "history")
    assert set(df.columns) >= {"step", "time", "key", "type", "value", "int", "text", "stream", "seq"}
    counts = df.key.value_counts().to_dict()
    assert counts == {"train/loss": 3000, "train/acc": 3000, "val/acc": 3, "epoch": 3}
    loss = df[df.key == "train/loss"].sort_values("seq")
    assert loss.value.tolist() == [1.0 / (s + 1) for s in range(3000)]
    epochs = df[df.key == "epoch"].sort_values("seq")
    assert epochs.int.tolist() == [0, 1, 2]

    view = runsync.open_run(run.dir)
    assert view.status == "finished"
    assert view.config == {"lr": 1e-3, "batch": 128}
    assert view.summary["best_val_acc"] == 0.77
    assert view.summary["train/loss"] == 1.0 / 3000
    wide = view.history()
    assert len(wide) == 3003
    assert wide["val/acc"].notna().sum() == 3


def test_types_are_exact(root: Path) -> None:
    values = {
        "f": 0.1,
        "nan": float("nan"),
        "inf": float("inf"),
        "ninf": float("-inf"),
        "i": -(2**63),
        "big": 2**63 - 1,
        "b": True,
        "s": "héllo\n",
        "none": None,
        "np32": np.float32(0.1),
        "npi": np.int16(-7),
        "npb": np.bool_(False),
        "zero_d": np.array(2.5),
        "nested": {"a": 1, "b": {"c": "x"}},
    }
    with runsync.init(dir=root) as run:
        run.log(values)
    rows = {r["key"]: r for r in runsync.open_run(run.dir).rows().to_pylist()}
    assert rows["f"]["value"] == 0.1 and rows["f"]["type"] == 1
    assert math.isnan(rows["nan"]["value"])
    assert rows["inf"]["value"] == math.inf and rows["ninf"]["value"] == -math.inf
    assert rows["i"]["int"] == -(2**63) and rows["i"]["type"] == 2
    assert rows["big"]["int"] == 2**63 - 1
    assert rows["b"]["type"] == 3 and rows["b"]["value"] == 1.0
    assert rows["s"]["text"] == "héllo\n" and rows["s"]["type"] == 4
    assert rows["none"]["type"] == 0 and rows["none"]["value"] is None
    assert rows["np32"]["value"] == float(np.float32(0.1))
    assert rows["npi"]["int"] == -7
    assert rows["npb"]["type"] == 3 and rows["npb"]["value"] == 0.0
    assert rows["zero_d"]["value"] == 2.5
    assert rows["nested/a"]["int"] == 1 and rows["nested/b/c"]["text"] == "x"
    wide = runsync.open_run(run.dir).history()
    assert wide["i"].iloc[0] == -(2**63)
    assert wide["b"].iloc[0] is True or bool(wide["b"].iloc[0]) is True
    assert wide["s"].iloc[0] == "héllo\n"


def test_steps_explicit_and_commit_false(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"a": 1.0})  # step 0
        run.log({"b": 2.0}, commit=False)  # step 1, not advanced
        run.log({"c": 3.0})  # step 1
        run.log({"d": 4.0}, step=10)
        assert run.step == 11
        run.log({"e": 5.0})  # step 11
    wide = runsync.open_run(run.dir).history()
    assert wide.step.tolist() == [0, 1, 10, 11]
    row1 = wide[wide.step == 1].iloc[0]
    assert row1["b"] == 2.0 and row1["c"] == 3.0


def test_repeated_step_last_write_wins(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"x": 1.0}, step=5)
        run.log({"x": 2.0}, step=5)
        run.log({"x": 3.0}, step=6)
        run.log({"x": 4.0}, step=5)
    view = runsync.open_run(run.dir)
    assert view.rows().num_rows == 4  # every value is stored
    wide = view.history()
    assert wide.set_index("step")["x"].to_dict() == {5: 4.0, 6: 3.0}


def test_part_files_have_identical_schema(root: Path, fast: runsync.Settings) -> None:
    import time

    with runsync.init(dir=root, settings=fast) as run:
        run.log({"a": 1.0})
        time.sleep(0.5)
        run.log({"late": "x", "n": None})
        time.sleep(0.5)
        run.log({"i": 3})
    parts = sorted((run.dir / "history").glob("*.parquet"))
    assert len(parts) >= 2
    schemas = {str(pq.read_schema(p).remove_metadata()) for p in parts}
    assert len(schemas) == 1


@pytest.mark.parametrize("bad,exc", [
    ({"": 1.0}, ValueError),
    ({"a\x00b": 1.0}, ValueError),
    ({"x" * 300: 1.0}, ValueError),
    ({"_private": 1.0}, ValueError),
    ({"step": 1.0}, ValueError),
    ({1: 1.0}, TypeError),
    ({"list": [1, "two"]}, TypeError),  # a list of numbers is a histogram (spec §5.3, since 1.3); mixed is not
    ({"empty": []}, TypeError),
    ({"obj": object()}, TypeError),
    ({"huge": 2**64}, ValueError),
    ({"arr": np.array(["a", "b"])}, TypeError),
    ({"carr": np.zeros(3, dtype=complex)}, TypeError),
])
def test_bad_input_raises_and_loses_nothing(root: Path, bad: dict, exc: type) -> None:
    """Spec §5.4: a bad value is refused, naming its key; the call's valid values are stored (a
    malformed call — a non-str key — stores nothing); nothing else is lost."""
    malformed = not isinstance(next(iter(bad)), str)
    with runsync.init(dir=root) as run:
        run.log({"ok": 1.0})
        with pytest.raises(exc) as info:
            run.log({"fine": 2.0, **bad})
        if not malformed and next(iter(bad)):
            assert repr(next(iter(bad)))[:20] in str(info.value) or "key" in str(info.value)
        if not malformed:
            assert isinstance(info.value, runsync.LogValueError)
        run.log({"ok": 3.0})
    wide = runsync.open_run(run.dir).history()
    assert wide["ok"].dropna().tolist() == [1.0, 3.0]
    if malformed:
        assert "fine" not in wide.columns
    else:
        assert wide["fine"].dropna().tolist() == [2.0]


def test_int_overflow_on_fast_path_is_clean(root: Path) -> None:
    with runsync.init(dir=root) as run:
        for i in range(5):
            run.log({"n": i, "f": 0.5})  # caches the fast path for (int, float)
        with pytest.raises(ValueError, match="'n'"):
            run.log({"n": 2**70, "f": 0.5})
        run.log({"n": 9, "f": 0.5})
    wide = runsync.open_run(run.dir).history()  # spec §5.4: "f" of the refused call is kept (step 5)
    assert wide["n"].dropna().tolist() == [0, 1, 2, 3, 4, 9]
    assert wide["step"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert wide["f"].tolist() == [0.5] * 7


def test_log_after_finish_raises(root: Path) -> None:
    run = runsync.init(dir=root)
    run.log({"a": 1.0})
    run.finish()
    with pytest.raises(runsync.RunFinishedError):
        run.log({"a": 2.0})
    with pytest.raises(runsync.RunFinishedError):
        run.summary["x"] = 1
    run.finish()  # idempotent


def test_type_changes_across_calls(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"v": 1})
        run.log({"v": 1.5})
        run.log({"v": True})
        run.log({"v": 2})
    rows = runsync.open_run(run.dir).rows().sort_by("seq").to_pylist()
    assert [r["type"] for r in rows] == [2, 1, 3, 2]
    assert [r["int"] for r in rows] == [1, None, None, 2]
