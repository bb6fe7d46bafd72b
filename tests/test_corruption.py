"""Truncated, corrupted and foreign files give an error naming the file — never a hang or wrong data."""

from __future__ import annotations

import json
import struct
import time
import zlib
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
    (d / ".tmp").mkdir(exist_ok=True)  # a run's temp files (spec §2.3, since 1.3)
    (d / ".tmp" / "main.000000000000-000000000001.parquet.0123abcd.tmp").write_bytes(b"partial")
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


@pytest.mark.parametrize("bad", [" 1.2", "1.2 ", "1.0_0", "1.\u0662", "+1.2", "1.-2", "1.2.0", "", 1.2, 1, None, ["1.2"]])
def test_version_strings_that_are_not_ascii_major_dot_minor_are_rejected(root: Path, bad: object) -> None:
    """§1.2: the version is a string matching ^[0-9]+\\.[0-9]+$ (ASCII); readers MUST NOT guess, so
    int()'s leniency (blanks, '+', '_', other scripts' digits) and a JSON number are all refused, naming the file."""
    d = _run(root)
    info = json.loads((d / "run.json").read_text())
    info["format"] = bad
    (d / "run.json").write_text(json.dumps(info))
    with pytest.raises(UnsupportedVersionError, match="run.json.*unreadable format version"):
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


def _record(body: bytes) -> bytes:
    """One WAL record (spec §8.3): u32 length (multiple of 8), u32 crc32 of the body, the body padded."""
    from runsync.format.wal import align8
    length = align8(8 + len(body))
    body = body + b"\0" * (length - 8 - len(body))
    return length.to_bytes(4, "little") + zlib.crc32(body).to_bytes(4, "little") + body


def _keydef(key_id: int, name: str) -> bytes:
    from runsync.format.wal import KEYDEF
    raw = name.encode()
    return _record(KEYDEF.pack(1, key_id, len(raw)) + raw)


def _generic(seq: int, t: float, items: list[tuple[int, int, bytes]]) -> bytes:
    from runsync.format.wal import GENERIC_PREFIX
    return _record(GENERIC_PREFIX.pack(4, len(items), seq, seq, t)
                   + b"".join(k.to_bytes(4, "little") + bytes([vt]) + v for k, vt, v in items))


def test_undefined_key_id_in_a_wal_record_is_a_corrupt_file_naming_it() -> None:
    """§1.3/§8.3.6: a record naming a key id that no KEYDEF defined is a CorruptFileError naming the
    segment and the id — not a bare KeyError: 999999."""
    from runsync.format.wal import Columns, Decoder
    data = _keydef(0, "a") + _generic(0, 1.0, [(999999, 1, struct.pack("<d", 1.5))])
    with pytest.raises(CorruptFileError, match=r"wal\.000000\.000000.*key id 999999"):
        Decoder().decode(data, 0, len(data), Columns(), "run/streams/main/wal.000000.000000")


def test_generic_record_skipped_for_an_unknown_type_code_does_not_move_the_time_floor() -> None:
    """§1.2/§4.3: a GENERIC record with a type code of a newer minor version is skipped as a whole, and
    like a ROW of a skipped schema it does not raise the time floor of the rows after it."""
    from runsync.format.wal import Columns, Decoder
    data = (_keydef(0, "a") + _generic(0, 1.0, [(0, 1, struct.pack("<d", 0.5))])
            + _generic(1, 1000.0, [(0, 200, b"")])  # type code 200: unknown, skipped
            + _generic(2, 2.0, [(0, 1, struct.pack("<d", 2.5))]))
    cols = Columns()
    Decoder().decode(data, 0, len(data), cols, "seg")
    times = [t for chunk in cols.chunks["a"] for t in chunk[2].tolist()]
    assert times == [1.0, 2.0]


def test_same_boot_needs_the_same_host_and_a_known_boot_id() -> None:
    """§8.5: records past synced_off are trusted only in the writer's own boot. Two hosts, or a host
    that cannot name its boot (an empty boot id), are not 'the same boot'."""
    from runsync.format.liveness import host_identity, same_boot
    host, boot = host_identity()
    assert boot, "this machine names its boot (Linux boot_id, else the boot time)"
    assert same_boot(host, boot)
    assert not same_boot("some-other-host", boot)
    assert not same_boot(host, "")
    assert not same_boot("", "")
