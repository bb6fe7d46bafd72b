"""``runsync verify DIR`` on a local runs directory (spec §12.8, since 1.3).

Every part's page checksums, every WAL segment's framing and CRCs, every JSON document:
exit 1 naming each damaged file, exit 0 with a one-line summary otherwise. Remotes are
still verified against their manifests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import env_without_runsync

import runsync
from runsync.syncer.check import check_local

REPO = Path(__file__).resolve().parents[1]
CRASH = """
import os, signal, sys, runsync
run = runsync.init(dir=sys.argv[1], id="crashed", settings=runsync.Settings(part_interval=3600, flush_interval=3600))
for i in range(200):
    run.log({"acc": i / 1000.0, "tag": "s%d" % i})
os.kill(os.getpid(), signal.SIGKILL)
"""


def _env() -> dict[str, str]:
    return {**env_without_runsync(), "RUNSYNC_SILENT": "1", "PYTHONPATH": str(REPO)}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runsync.cli", *args], capture_output=True, text=True, env=_env(),
                          timeout=300, check=False)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    with runsync.init(dir=root, id="finished", settings=runsync.Settings(part_interval=3600)) as run:
        for i in range(100):
            run.log({"loss": 1.0 / (i + 1), "note": f"n{i}"})
        run.summary["best"] = 0.5
    proc = subprocess.run([sys.executable, "-c", CRASH, str(root)], env=_env(), timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert list((root / "crashed" / "streams" / "main").glob("wal.*"))
    return root


def _flip_page(part: Path) -> None:
    md = pq.ParquetFile(part).metadata
    col = md.row_group(0).column([md.schema.column(i).name for i in range(md.num_columns)].index("value"))
    raw = bytearray(part.read_bytes())
    raw[col.data_page_offset + col.total_compressed_size // 2] ^= 0x08
    part.write_bytes(bytes(raw))


def _flip_wal_record(seg: Path) -> None:
    raw = bytearray(seg.read_bytes())
    pos, offs = 64, []
    while (length := int.from_bytes(raw[pos : pos + 4], "little")) != 0:
        offs.append(pos)
        pos += length
    raw[offs[len(offs) // 2] + 20] ^= 0x01  # inside the body: the record's CRC fails
    seg.write_bytes(bytes(raw))


def test_intact_runs_directory_is_ok_with_a_one_line_summary(runs: Path) -> None:
    r = _cli("verify", str(runs))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("2 runs:") and lines[0].endswith("OK"), r.stdout
    assert "WAL segments" in lines[0] and "documents" in lines[0]


def test_a_single_run_directory_is_checked(runs: Path) -> None:
    r = _cli("verify", str(runs / "crashed"))
    assert r.returncode == 0 and r.stdout.startswith("1 runs:"), r.stdout + r.stderr


def test_damaged_part_wal_segment_and_document_are_all_named(runs: Path) -> None:
    part = next((runs / "finished" / "history").glob("*.parquet"))
    _flip_page(part)
    seg = min((runs / "crashed" / "streams" / "main").glob("wal.*"))
    _flip_wal_record(seg)
    doc = runs / "finished" / "streams" / "main" / "summary.json"
    doc.write_bytes(doc.read_bytes()[:-3])
    r = _cli("verify", str(runs))
    assert r.returncode == 1, r.stdout + r.stderr
    damaged = [ln for ln in r.stdout.splitlines() if ln.startswith("DAMAGED")]
    assert len(damaged) == 3, r.stdout
    for path in (part, seg, doc):
        assert any(str(path) in ln for ln in damaged), (path, r.stdout)
    assert "CRC" in next(ln for ln in damaged if str(part) in ln)
    assert "lost" in next(ln for ln in damaged if str(seg) in ln)
    assert "Traceback" not in r.stderr
    assert r.stdout.strip().splitlines()[-1].endswith("3 DAMAGED")
    js = _cli("verify", "--json", str(runs))
    assert js.returncode == 1 and {d["path"] for d in json.loads(js.stdout)["damaged"]} == {str(part), str(seg), str(doc)}


def test_a_damaged_saved_file_is_named(runs: Path) -> None:
    store = runs / "finished" / "files" / "sha256" / "ab"
    store.mkdir(parents=True)
    (store / ("ab" + "0" * 62)).write_bytes(b"not what the name says")
    r = _cli("verify", str(runs))
    assert r.returncode == 1 and str(store) in r.stdout and "does not match" in r.stdout, r.stdout


def test_progress_is_reported_per_run(runs: Path) -> None:
    seen: list[tuple[int, int]] = []
    res = check_local(runs, lambda done, total, _res: seen.append((done, total)))
    assert res.ok and seen == [(1, 2), (2, 2)]
    assert res.parts >= 1 and res.segments >= 1 and res.documents >= 4 and res.parts_without_checksums == 0


def test_pushed_remote_is_still_verified_against_manifests(runs: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    push = _cli("push", str(runs / "finished"), str(remote))
    assert push.returncode == 0, push.stderr
    r = _cli("verify", str(remote))
    assert r.returncode == 0 and "files checked: OK" in r.stdout and "WAL segments" not in r.stdout, r.stdout
    # --local checks a directory with manifests (a pulled copy, a path remote) on its own terms too.
    loc = _cli("verify", "--local", str(remote))
    assert loc.returncode == 0 and loc.stdout.startswith("1 runs:"), loc.stdout + loc.stderr


def test_not_a_directory_with_local_is_a_clear_error(tmp_path: Path) -> None:
    r = _cli("verify", "--local", str(tmp_path / "missing"))
    assert r.returncode == 1 and "--local needs a local directory" in r.stderr and "Traceback" not in r.stderr
