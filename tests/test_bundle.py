"""One-way transfer bundles: incremental, verified whole, never unpacked outside their target."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

import runsync
from runsync.format.errors import CorruptFileError
from runsync.syncer import Remote, verify
from runsync.syncer.bundle import BUNDLE_INDEX, make_bundle, push_bundle


def _runs(root: Path, ids: list[str], steps: int = 50) -> None:
    for rid in ids:
        with runsync.init(dir=root, id=rid) as run:
            for i in range(steps):
                run.log({"i": i, "x": i * 0.5})


def test_incremental_bundles_push_to_an_identical_remote(root: Path, tmp_path: Path) -> None:
    _runs(root, ["a", "b"])
    r1 = make_bundle(root, tmp_path / "b1.tar")
    assert r1.runs == 2 and r1.files > 0
    with runsync.init(dir=root, id="b", resume=True) as run:
        run.log({"i": 50})
    r2 = make_bundle(root, tmp_path / "b2.tar")
    assert r2.runs == 1 and r2.skipped_runs == 1
    assert r2.files < r1.files  # only what changed
    r3 = make_bundle(root, tmp_path / "b3.tar")
    assert r3.runs == 0 and r3.files == 0
    remote = Remote(str(tmp_path / "remote"))
    for b in ("b1.tar", "b2.tar", "b3.tar"):
        assert not push_bundle(tmp_path / b, remote).failures
    assert verify(remote).ok
    assert sorted(pd.read_parquet(tmp_path / "remote" / "b" / "history")["int"].dropna().astype(int).unique()) == list(range(51))


def test_later_bundle_alone_does_not_commit(root: Path, tmp_path: Path) -> None:
    _runs(root, ["a"])
    make_bundle(root, tmp_path / "b1.tar")
    with runsync.init(dir=root, id="a", resume=True) as run:
        run.log({"i": 99})
    make_bundle(root, tmp_path / "b2.tar")
    remote = Remote(str(tmp_path / "remote"))
    res = push_bundle(tmp_path / "b2.tar", remote)
    assert res.failures and "push that bundle first" in res.failures[0][1]
    assert not (tmp_path / "remote" / "a" / "manifest.json").exists()
    # Its carried parts wait in the staging area, not where stock readers read (spec §12.3).
    assert not (tmp_path / "remote" / "a" / "history").exists()
    assert list((tmp_path / "remote" / ".runsync" / "staging" / "a").iterdir())
    assert not push_bundle(tmp_path / "b1.tar", remote).failures
    assert not push_bundle(tmp_path / "b2.tar", remote).failures
    assert verify(remote).ok and not list((tmp_path / "remote" / ".runsync" / "staging" / "a").iterdir())
    assert len(pd.read_parquet(tmp_path / "remote" / "a" / "history")) == len(pd.read_parquet(root / "a" / "history"))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_bundle_is_rejected_naming_files(root: Path, tmp_path: Path, damage: str) -> None:
    _runs(root, ["a"], steps=2000)
    b = tmp_path / "b.tar"
    make_bundle(root, b)
    data = bytearray(b.read_bytes())
    if damage == "flip":
        i = data.find(b"PAR1", 2048)
        data[i + 200] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    b.write_bytes(bytes(data))
    # A flipped byte names the altered part; a cut names every file it lost.
    with pytest.raises(CorruptFileError, match="history/main" if damage == "flip" else "run.json"):
        push_bundle(b, Remote(str(tmp_path / "remote")))
    assert not (tmp_path / "remote").exists()
    r = subprocess.run([sys.executable, "-m", "runsync.cli", "push", str(b), str(tmp_path / "remote")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "damaged" in r.stderr


def _hostile(tmp_path: Path, members: list[tarfile.TarInfo], payload: bytes = b"evil") -> Path:
    index = {"format": "1.1", "created": 0, "runs": {"r1": {"files": {}, "carried": []}}}
    raw = json.dumps(index).encode()
    b = tmp_path / "hostile.tar"
    with tarfile.open(b, "w") as tar:
        ti = tarfile.TarInfo(BUNDLE_INDEX)
        ti.size = len(raw)
        tar.addfile(ti, io.BytesIO(raw))
        for m in members:
            if m.isfile():
                m.size = len(payload)
                tar.addfile(m, io.BytesIO(payload))
            else:
                tar.addfile(m)
    return b


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    return m


@pytest.mark.parametrize("member", [
    _member("../../evil"),
    _member("/abs/evil"),
    _member("r1/../../evil"),
    _member("r1/history/link", tarfile.SYMTYPE, "/etc/passwd"),
    _member("r1/history/hard", tarfile.LNKTYPE, "/etc/passwd"),
    _member("r1/dev", tarfile.CHRTYPE),
    _member("r1/notlisted.parquet"),
])
def test_hostile_bundle_writes_nothing_anywhere(tmp_path: Path, member: tarfile.TarInfo) -> None:
    b = _hostile(tmp_path, [member])
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(CorruptFileError):
        push_bundle(b, Remote(str(work / "remote")))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "evil").exists()


def _index_only_bundle(tmp_path: Path, index: object) -> Path:
    """A bundle holding nothing but the given index."""
    raw = json.dumps(index).encode()
    b = tmp_path / "h.tar"
    with tarfile.open(b, "w") as tar:
        ti = tarfile.TarInfo(BUNDLE_INDEX)
        ti.size = len(raw)
        tar.addfile(ti, io.BytesIO(raw))
    return b


def test_hostile_index_is_rejected(tmp_path: Path) -> None:
    b = _index_only_bundle(tmp_path, {"format": "1.1", "runs": {"r1": {
        "files": {"../x": {"size": 1, "sha256": "0" * 64}}, "carried": ["../x"]}}})
    with pytest.raises(CorruptFileError, match="index rejected"):
        push_bundle(b, Remote(str(tmp_path / "remote")))


_BLOB = {"size": 1, "sha256": "0" * 64}


@pytest.mark.parametrize("index", [
    {"format": "1.1", "runs": []},
    [],
    {"format": "1.1", "runs": {"r1": []}},
    {"format": "1.1", "runs": {"r1": {"files": {"run.json": _BLOB}, "carried": "run.json"}}},
    # a manifest never lists itself (spec §12.2), carried or not
    {"format": "1.1", "runs": {"r1": {"files": {"manifest.json": _BLOB}, "carried": ["manifest.json"]}}},
    {"format": "1.1", "runs": {"r1": {"files": {"manifest.json": _BLOB}, "carried": []}}},
    {"format": "1.1", "runs": {"r1": {"files": {}, "carried": ["manifest.json"]}}},  # carried, never listed
    {"format": "1.1", "runs": {"r1": {"files": {"run.json": _BLOB}, "carried": ["other.json"]}}},
])
def test_malformed_or_self_listing_index_is_rejected(tmp_path: Path, index: object) -> None:
    b = _index_only_bundle(tmp_path, index)
    with pytest.raises(CorruptFileError, match="index rejected"):
        push_bundle(b, Remote(str(tmp_path / "remote")))
    assert not (tmp_path / "remote").exists() or not any((tmp_path / "remote").rglob("manifest.json"))


def test_a_manifest_that_lists_itself_is_rejected() -> None:
    from runsync.format.manifest import parse_manifest
    raw = json.dumps({"format": "1.1", "run_id": "r1", "created": 0.0,
                      "files": {"run.json": _BLOB, "manifest.json": _BLOB}}).encode()
    with pytest.raises(CorruptFileError, match="never listed in itself"):
        parse_manifest(raw, "remote/r1/manifest.json")


def test_not_a_bundle(tmp_path: Path) -> None:
    b = tmp_path / "x.tar"
    with tarfile.open(b, "w") as tar:
        ti = tarfile.TarInfo("hello.txt")
        tar.addfile(ti, io.BytesIO(b""))
    with pytest.raises(CorruptFileError, match="not a runsync bundle"):
        push_bundle(b, Remote(str(tmp_path / "remote")))
