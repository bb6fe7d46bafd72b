"""A damaged WAL record is not a silent end of the tail (spec §8.5, since 1.3).

A crashed run (a real writer process killed with SIGKILL) whose segment has a flipped
bit in the middle: the reader warns once, naming the segment and the seqs lost, and
reads every later record; it never turns the damaged bytes into rows.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
from conftest import env_without_runsync

import runsync
from runsync.format.errors import DataLossWarning

N = 300
# Even calls carry a string (a GENERIC record, always with a CRC); odd calls are fixed-size
# values only (a ROW record, CRC 0 on the hot path).
CHILD = """
import os, signal, sys, runsync
run = runsync.init(dir=sys.argv[1], id="crashed", settings=runsync.Settings(part_interval=3600, flush_interval=3600))
for i in range({n}):
    if i % 2:
        run.log({{"acc": i / 1000.0, "n": i, "loss": 1.0 / (i + 1)}})
    else:
        run.log({{"acc": i / 1000.0, "tag": "s%d" % i}})
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    env = {**env_without_runsync(), "RUNSYNC_SILENT": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(n=N), str(root)], env=env, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    return root / "crashed"


def _copy(crashed: Path, tmp_path: Path) -> tuple[Path, Path]:
    d = tmp_path / "crashed"
    shutil.copytree(crashed, d)
    segs = sorted((d / "streams" / "main").glob("wal.*"))
    assert len(segs) >= 1
    return d, segs[0]


def _records(data: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, length, crc, kind) of every record of a segment."""
    out, pos = [], 64
    while (length := int.from_bytes(data[pos : pos + 4], "little")) != 0:
        out.append((pos, length, int.from_bytes(data[pos + 4 : pos + 8], "little"), data[pos + 8]))
        pos += length
    return out


def _cells(d: Path) -> dict[tuple[int, str], str]:
    rows = runsync.open_run(d).rows().to_pandas()
    return {(int(r.seq), r.key): f"{r.value!r}/{r.int!r}/{r.text!r}" for r in rows.itertuples()}


def _read(d: Path) -> tuple[dict[tuple[int, str], str], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cells = _cells(d)
    return cells, [str(w.message) for w in caught if issubclass(w.category, DataLossWarning)]


def test_intact_crashed_run_reads_every_row_without_warning(crashed: Path, tmp_path: Path) -> None:
    d, _seg = _copy(crashed, tmp_path)
    cells, warned = _read(d)
    assert {s for s, _k in cells} == set(range(N)) and not warned


def test_flip_in_a_middle_record_loses_that_record_only_and_warns(crashed: Path, tmp_path: Path) -> None:
    d, seg = _copy(crashed, tmp_path)
    ref, _ = _read(d)
    data = bytearray(seg.read_bytes())
    generic = [r for r in _records(bytes(data)) if r[3] == 4]
    off, _length, _crc, _kind = generic[len(generic) // 2]
    seq = int.from_bytes(data[off + 16 : off + 24], "little")
    data[off + 30] ^= 0x20  # the record's step field: its CRC fails
    seg.write_bytes(bytes(data))
    cells, warned = _read(d)
    assert len(warned) == 1, warned
    assert seg.name in warned[0] and f"seq {seq} lost" in warned[0], warned[0]
    assert {s for s, _k in cells} == set(range(N)) - {seq}  # every later row kept
    assert all(ref[c] == v for c, v in cells.items())


def test_zeroed_length_of_a_row_record_resynchronises(crashed: Path, tmp_path: Path) -> None:
    """A ROW record (CRC 0) whose length 64 lost its one set bit looks like the end of the log."""
    d, seg = _copy(crashed, tmp_path)
    data = bytearray(seg.read_bytes())
    rows = [r for r in _records(bytes(data)) if r[3] == 3 and r[1] == 64]
    assert rows, "the test needs 64-byte ROW records"
    off = rows[len(rows) // 2][0]
    seq = int.from_bytes(data[off + 16 : off + 24], "little")
    data[off] ^= 0x40
    seg.write_bytes(bytes(data))
    cells, warned = _read(d)
    assert len(warned) == 1 and f"seq {seq} lost" in warned[0], warned
    assert {s for s, _k in cells} == set(range(N)) - {seq}


def test_flip_sweep_over_checksummed_records(crashed: Path, tmp_path: Path) -> None:
    """60 seeded flips in CRC-carrying records past the definitions: each loses exactly its record, with a
    warning naming the segment and seq; nothing else changes and no row is invented."""
    d, seg = _copy(crashed, tmp_path)
    ref, _ = _read(d)
    orig = seg.read_bytes()
    recs = [r for r in _records(orig) if r[3] == 4][5:]  # GENERIC records, past the first few
    rnd = random.Random(1202)
    outcomes: Counter[str] = Counter()
    for _ in range(60):
        off, length, _crc, _kind = rnd.choice(recs)
        at = off + rnd.randrange(length)
        seq = int.from_bytes(orig[off + 16 : off + 24], "little")
        raw = bytearray(orig)
        raw[at] ^= 1 << rnd.randrange(8)
        seg.write_bytes(bytes(raw))
        cells, warned = _read(d)
        invented = [c for c, v in cells.items() if ref.get(c) != v]
        lost = set(ref) - set(cells)
        assert not invented, f"flip at {at}: rows changed or invented: {invented[:5]}"
        if not lost:
            outcomes["identical"] += 1
            continue
        assert {s for s, _k in lost} == {seq}, f"flip at {at} (record of seq {seq}): lost {sorted(lost)[:10]}"
        assert len(warned) == 1 and seg.name in warned[0] and f"{seq}" in warned[0], warned
        outcomes["one record lost, warned"] += 1
    seg.write_bytes(orig)
    assert outcomes["one record lost, warned"] >= 55, dict(outcomes)


def test_garbage_is_never_decoded_as_rows(crashed: Path, tmp_path: Path) -> None:
    """Random bytes over the middle of the segment: rows before and (if resynchronised) after are exact;
    the bytes themselves yield no row."""
    d, seg = _copy(crashed, tmp_path)
    ref, _ = _read(d)
    data = bytearray(seg.read_bytes())
    recs = _records(bytes(data))
    a, b = recs[len(recs) // 3][0], recs[len(recs) // 2][0]
    data[a:b] = random.Random(7).randbytes(b - a)
    seg.write_bytes(bytes(data))
    cells, warned = _read(d)
    assert len(warned) == 1 and seg.name in warned[0], warned
    assert all(ref.get(c) == v for c, v in cells.items())
    assert max(s for s, _k in cells) == N - 1  # the records after the garbage are read


def test_random_bytes_after_the_last_record_are_not_a_loss(crashed: Path, tmp_path: Path) -> None:
    """Non-zero bytes after the end of records that form no record (a record being written when the
    writer was killed, body before header): the end of the log, as before; no warning."""
    d, seg = _copy(crashed, tmp_path)
    data = bytearray(seg.read_bytes())
    end = sum(r[1] for r in _records(bytes(data))) + 64
    data[end + 8 : end + 64] = random.Random(3).randbytes(56)
    seg.write_bytes(bytes(data))
    cells, warned = _read(d)
    assert {s for s, _k in cells} == set(range(N)) and not warned


def test_resume_recovers_the_rows_after_the_damage(crashed: Path, tmp_path: Path) -> None:
    d, seg = _copy(crashed, tmp_path)
    data = bytearray(seg.read_bytes())
    generic = [r for r in _records(bytes(data)) if r[3] == 4]
    off = generic[len(generic) // 2][0]
    seq = int.from_bytes(data[off + 16 : off + 24], "little")
    data[off + 44] ^= 0x01
    seg.write_bytes(bytes(data))
    with runsync.init(dir=d.parent, id="crashed", resume=True):
        pass
    assert not list((d / "streams" / "main").glob("wal.*"))
    rows = runsync.open_run(d).rows()
    assert set(rows.column("seq").to_pylist()) == set(range(N)) - {seq}


LIVE = """
import sys, time, runsync
settings = runsync.Settings(part_interval=0.5, flush_interval=0.05, segment_size=1 << 20)
run = runsync.init(dir=sys.argv[1], id="live", settings=settings)
stop, i = time.monotonic() + 3.0, 0
while time.monotonic() < stop:
    run.log({"x": float(i), "s": "v%d" % i} if i % 3 == 0 else {"x": float(i)})
    i += 1
    if i % 20 == 0:
        time.sleep(0.001)
run.finish()
"""


def test_a_live_writer_is_never_reported_as_damaged(tmp_path: Path) -> None:
    """Reading segments while their writer (another process) appends: a record in the making is no damage."""
    env = {**env_without_runsync(), "RUNSYNC_SILENT": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", LIVE, str(tmp_path)], env=env)
    reads = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataLossWarning)
            while proc.poll() is None:
                try:
                    runsync.open_run(tmp_path / "live").rows()
                except runsync.NotARunError:
                    time.sleep(0.01)
                    continue
                reads += 1
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0 and reads >= 3, reads


def test_show_warns_once_on_stderr(crashed: Path, tmp_path: Path) -> None:
    d, seg = _copy(crashed, tmp_path)
    data = bytearray(seg.read_bytes())
    off = [r for r in _records(bytes(data)) if r[3] == 4][10][0]
    seq = int.from_bytes(data[off + 16 : off + 24], "little")
    data[off + 33] ^= 0x02
    seg.write_bytes(bytes(data))
    env = {**env_without_runsync(), "RUNSYNC_SILENT": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "runsync.cli", "show", str(d)], capture_output=True, text=True,
                       env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "runsync: warning:" in ln]
    assert len(lines) == 1 and seg.name in lines[0] and f"seq {seq} lost" in lines[0], r.stderr
