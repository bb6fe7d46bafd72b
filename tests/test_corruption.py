"""Truncated, corrupted and foreign files give an error naming the file — never a hang or wrong data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import runsync
from runsync.format.errors import CorruptFileError, DataLossWarning, NotARunError, UnsupportedVersionError


def _run(root: Path) -> Path:
    with runsync.init(dir=root) as run:
        for i in range(100):
            run.log({"a": float(i), "s": f"v{i}"})
    return run.dir


def test_truncated_part_names_the_file(root: Path) -> None:
    d = _run(root)
    part = next((d / "history").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(CorruptFileError) as e:
        runsync.open_run(d).history()
    assert part.name in str(e.value)


def test_garbage_part_names_the_file(root: Path) -> None:
    d = _run(root)
    part = next((d / "history").glob("*.parquet"))
    part.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CorruptFileError, match=part.name):
        runsync.open_run(d).rows()


def test_foreign_parquet_is_rejected(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = _run(root)
    pq.write_table(pa.table({"x": [1]}), d / "history" / "main.000000009999-000000009999.parquet")
    with pytest.raises(CorruptFileError, match="runsync.format"):
        runsync.open_run(d).rows()


def test_files_that_are_not_parts_are_ignored(root: Path) -> None:
    d = _run(root)
    (d / "history" / "notes.txt").write_text("hello")
    (d / "history" / ".main.000000000000-000000000001.parquet.ab12.tmp").write_bytes(b"partial")
    assert len(runsync.open_run(d).history()) == 100


def test_corrupt_run_json(root: Path) -> None:
    d = _run(root)
    (d / "run.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="run.json"):
        runsync.open_run(d)


def test_foreign_directory_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(NotARunError, match="photos"):
        runsync.open_run(tmp_path / "photos")
    with pytest.raises(NotARunError):
        runsync.open_run(tmp_path / "missing")


def test_unknown_major_version_is_rejected(root: Path) -> None:
    d = _run(root)
    info = json.loads((d / "run.json").read_text())
    info["format"] = "2.0"
    (d / "run.json").write_text(json.dumps(info))
    with pytest.raises(UnsupportedVersionError, match="2.0"):
        runsync.open_run(d)


def test_newer_minor_version_and_unknown_fields_are_accepted(root: Path) -> None:
    d = _run(root)
    info = json.loads((d / "run.json").read_text())
    info["format"] = "1.7"
    info["some_future_field"] = {"x": 1}
    (d / "run.json").write_text(json.dumps(info))
    assert runsync.open_run(d).info.id == info["id"]


def test_torn_wal_tail_is_ignored(root: Path) -> None:
    """A WAL segment whose last record is garbage: records before it are read, the garbage is not."""
    settings = runsync.Settings(part_interval=3600, flush_interval=3600)
    run = runsync.init(dir=root, settings=settings)
    for i in range(50):
        run.log({"a": float(i)})
    seg = next((run.dir / "streams" / "main").glob("wal.*"))
    view = runsync.open_run(run.dir)
    assert view.history()["a"].tolist() == [float(i) for i in range(50)]
    # Simulate a torn record after the last good one: a plausible length, wrong contents.
    raw = bytearray(seg.read_bytes())
    end = 64
    while int.from_bytes(raw[end : end + 4], "little"):
        end += int.from_bytes(raw[end : end + 4], "little")
    copy = root / "copy"
    import shutil

    run.finish()
    # Work on a copy of a crashed-looking state: the finished run's segments are gone.
    assert not list((run.dir / "streams" / "main").glob("wal.*"))
    shutil.copytree(run.dir, copy)
    (copy / "streams" / "main" / "wal.000000.000000").write_bytes(bytes(raw[:end]) + (48).to_bytes(4, "little")
                                                                + (12345).to_bytes(4, "little") + b"\x03" * 40)
    t = time.time()
    # A kill never leaves a torn record (§8.2), so the garbage is reported as damage (§8.5, since 1.3).
    with pytest.warns(DataLossWarning, match=r"wal\.000000\.000000.*after seq 49"):
        assert runsync.open_run(copy).history()["a"].tolist() == [float(i) for i in range(50)]
    assert time.time() - t < 10
