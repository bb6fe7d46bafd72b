"""Recovery edge cases: each test pins a bug that once lost data or blocked a stream."""

from __future__ import annotations

import errno
import struct
import zlib
from pathlib import Path

import pytest

import runsync
from runsync.format import history
from runsync.format.wal import Columns, Decoder, Kind, SCHEMA_ITEM, SCHEMA_PREFIX
from runsync.writer import flusher


def test_failed_part_write_then_resume_loses_nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents are written before parts; recovery must not treat their applied_seq as stored rows."""

    def full_disk(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(flusher, "write_part", full_disk)
    run = runsync.init(dir=root, id="diskfull")
    for i in range(100):
        run.log({"i": i})
    run.summary["note"] = "kept"
    run.finish()
    assert not list((run.dir / "history").glob("*.parquet"))
    assert list((run.dir / "streams" / "main").glob("wal.*")), "rows must stay in the WAL"
    assert runsync.open_run(run.dir).history()["i"].tolist() == list(range(100))
    monkeypatch.undo()

    run2 = runsync.init(dir=root, id="diskfull", resume=True)
    assert run2.step == 100
    run2.log({"i": 100})
    run2.finish()
    import pandas as pd

    df = pd.read_parquet(run2.dir / "history")
    assert sorted(df["int"].astype(int)) == list(range(101))
    assert runsync.open_run(run2.dir).summary["note"] == "kept"


def test_nested_dict_logged_repeatedly(root: Path) -> None:
    with runsync.init(dir=root) as run:
        for i in range(5):
            run.log({"a": {"b": i, "c": 0.5}})
    assert runsync.open_run(run.dir).history()["a/b"].tolist() == list(range(5))


def test_interrupted_segment_creation_does_not_block_resume(root: Path) -> None:
    with runsync.init(dir=root, id="seg") as run:
        run.log({"x": 1.0})
    # A crash between creating a segment file and writing its header leaves zeros.
    (run.dir / "streams" / "main" / "wal.000000.000007").write_bytes(bytes(4096))
    assert runsync.open_run(run.dir).history()["x"].tolist() == [1.0]
    with runsync.init(dir=root, id="seg", resume=True) as run2:
        run2.log({"x": 2.0})
    assert runsync.open_run(run.dir).history()["x"].tolist() == [1.0, 2.0]


def test_unknown_type_code_in_schema_is_skipped() -> None:
    """A newer minor version may add type codes: older readers skip those records by length."""
    body = SCHEMA_PREFIX.pack(Kind.SCHEMA, 0, 1) + SCHEMA_ITEM.pack(0, 42)
    # A SCHEMA record always carries its CRC (§8.3.2; a reader checks it since 1.3).
    rec = struct.pack("<II", 8 + 16, zlib.crc32(body.ljust(16, b"\0"))) + body.ljust(16, b"\0")
    row = struct.pack("<IIB3xIqqd", 48, 0, Kind.ROW, 0, 1, 0, 0.0) + bytes(8)
    data = rec + row
    cols = Columns()
    end = Decoder(verify=True).decode(data, 0, len(data), cols)
    assert end == len(data) and cols.rows == 0


def test_leftover_merge_sources_are_removed_by_next_owner(root: Path) -> None:
    settings = runsync.Settings(part_interval=3600)
    with runsync.init(dir=root, id="dup", settings=settings) as run:
        for i in range(10):
            run.log({"i": i})
    parts = history.list_parts(run.dir / "history")
    assert len(parts) == 1
    # Fake a writer that died after renaming a merged part but before unlinking its sources.
    src = parts[0]
    import shutil

    shutil.copy(src.path, run.dir / "history" / history.part_name("main", src.lo, src.hi + 5))
    assert len(runsync.open_run(run.dir).history()) == 10  # the cover rule hides the duplicate
    with runsync.init(dir=root, id="dup", resume=True, settings=settings):
        pass
    import pandas as pd

    assert len(pd.read_parquet(run.dir / "history")) == 10  # stock readers: no duplicates left


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="merge_factor"):
        runsync.Settings(merge_factor=1)
    with pytest.raises(ValueError, match="flush_interval"):
        runsync.Settings(flush_interval=0)
