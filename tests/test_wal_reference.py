"""runsync's WAL Decoder agrees with an independent decoder written from the spec (tests/wal_reference.py,
driven by spec/schema/wal.json) on the golden corpus's segments and on a fresh crashed writer's segments
(issue 14 item 5). Until now only runsync's own Decoder read WAL bytes."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from wal_reference import decode_incarnation

from runsync.format.wal import SEGMENT_HEADER_SIZE, Columns, Decoder

TESTDATA = Path(__file__).resolve().parents[1] / "spec" / "testdata"


def _by_incarnation(stream_dir: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(stream_dir.glob("wal.*")):
        out[p.name.split(".")[1]].append(p)
    return out


def _runsync_rows(paths: list[Path]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    dec = Decoder(verify=True)
    cols = Columns()
    for p in sorted(paths):
        data = p.read_bytes()
        if len(data) >= SEGMENT_HEADER_SIZE and data[:SEGMENT_HEADER_SIZE] != bytes(SEGMENT_HEADER_SIZE):
            dec.decode(data, SEGMENT_HEADER_SIZE, len(data), cols, p)
    rows = []
    for key, chunks in cols.chunks.items():
        for vtype, steps, times, seqs, values in chunks:
            for i in range(len(seqs)):
                v = None if values is None else values[i]
                v = v.item() if hasattr(v, "item") else v
                rows.append((int(seqs[i]), int(steps[i]), float(times[i]), key, int(vtype), v))
    meta = [(m.seq, m.op, m.time, m.payload) for m in cols.meta]
    return rows, meta


def _norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted((r[:5] + (("nan",) if isinstance(r[5], float) and math.isnan(r[5]) else (r[5],))) for r in rows)


def _agree(stream_dir: Path) -> int:
    n = 0
    for inc, paths in _by_incarnation(stream_dir).items():
        ref = decode_incarnation(paths)
        rows, meta = _runsync_rows(paths)
        assert _norm(rows) == _norm(ref.rows), f"{stream_dir} incarnation {inc}: rows differ"
        assert sorted(meta, key=str) == sorted(ref.meta, key=str), f"{stream_dir} incarnation {inc}: META differs"
        n += len(ref.rows)
    return n


def test_decoders_agree_on_the_golden_corpus_segments() -> None:
    dirs = sorted({p.parent for p in TESTDATA.rglob("wal.*")})
    assert dirs, "the golden corpus holds WAL segments (a crashed run)"
    assert sum(_agree(d) for d in dirs) > 0


_CHILD = textwrap.dedent('''
    import os, signal, sys
    import runsync
    run = runsync.init(dir=sys.argv[1], id="ref", settings=runsync.Settings(part_interval=3600))
    for i in range(3000):
        row = {"f": i / 7, "i": i * 3 - 100, "b": i % 2 == 0}
        if i % 5 == 0:
            row["s"] = f"text {i} é"
        if i % 11 == 0:
            row["n"] = None
        if i % 13 == 0:
            row["big"] = 2 ** 62 + i
        run.log(row, step=i // 2)
        if i % 500 == 0:
            run.summary["best"] = i
            run.config.update({"epoch": i})
    run.log({"nan": float("nan"), "inf": float("inf")})
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_decoders_agree_on_a_fresh_crashed_writers_segments(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    n = _agree(tmp_path / "ref" / "streams" / "main")
    assert n >= 3000 * 3


@pytest.mark.parametrize("flip", [200, 1000, 5000])
def test_decoders_agree_on_a_damaged_segment(tmp_path: Path, flip: int) -> None:
    """After a flipped byte, every row the reference reads before the damage runsync reads identically; runsync
    may read more, since it resynchronises after a damaged record (§8.5, since 1.3), and never raises but a
    CorruptFileError."""
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    seg = sorted((tmp_path / "ref" / "streams" / "main").glob("wal.*"))[0]
    raw = bytearray(seg.read_bytes())
    raw[flip] ^= 0x10
    seg.write_bytes(bytes(raw))
    import warnings
    for inc, paths in _by_incarnation(seg.parent).items():
        ref = decode_incarnation(paths)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the DataLossWarning of the resync
                rows, _meta = _runsync_rows(paths)
        except Exception as e:  # a damaged record may make runsync raise a CorruptFileError; nothing else
            assert type(e).__name__ == "CorruptFileError", repr(e)
            continue
        got = set(map(tuple, _norm(rows)))
        missing = [r for r in _norm(ref.rows) if tuple(r) not in got]
        assert not missing, f"incarnation {inc}: {len(missing)} rows the reference reads differ in runsync"
