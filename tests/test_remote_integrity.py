"""Pull and verify against a hostile or damaged remote (issue 10 items 1, 4, 5; spec §12.2, §12.6).

Local-path remotes: real files, real directories, real symbolic links. The S3 and other backends run
the manifest-gone and corrupt-manifest cases through the conformance suite (syncer_conformance.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sync_util import sha, source_files, tree_hashes

import runsync
from runsync.cli import main as cli_main
from runsync.format.errors import CorruptFileError
from runsync.format.manifest import MANIFEST, parse_manifest
from runsync.syncer import Remote, pull, push, verify


def _run(root: Path, run_id: str, project: str, keys: tuple[str, ...], steps: int = 20) -> Path:
    run = runsync.init(dir=root, id=run_id, project=project, name=f"{project}-run")
    for s in range(steps):
        run.log({k: float(s) for k in keys})
    run.finish()
    return Path(run.dir)


def _cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _pulled(run_dir: Path) -> dict[str, str]:
    return tree_hashes(run_dir, skip=lambda rel: rel == MANIFEST)


def _edit_manifest(remote_dir: Path, run_id: str, change: Any) -> None:
    p = remote_dir / run_id / MANIFEST
    d = json.loads(p.read_bytes())
    change(d)
    p.write_text(json.dumps(d))


# --------------------------------------------------------------------------- item 1: two runs, one id


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Run ``r1`` of project alpha pushed to a remote; another run ``r1`` (project beta) in a local dir."""
    remote_dir = tmp_path / "remote"
    a = _run(tmp_path / "a", "r1", "alpha", ("acc",))
    assert push(tmp_path / "a", Remote(str(remote_dir))).failures == []
    b = _run(tmp_path / "b", "r1", "beta", ("other", "more"), steps=35)
    return remote_dir, a, b


def test_pull_refuses_a_different_run_with_the_same_id(two_runs: tuple[Path, Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    remote_dir, a, b = two_runs
    before = tree_hashes(b)
    rc, out, err = _cli(capsys, "pull", remote_dir, b.parent)
    assert rc == 1
    assert "different run with the same id" in err
    assert "'alpha-run'" in err and "project 'alpha'" in err and "'beta-run'" in err and "project 'beta'" in err
    assert err.count("created ") == 2 and "--force" in err and "Traceback" not in err
    assert tree_hashes(b) == before  # nothing changed
    assert sorted(pd.read_parquet(b / "history")["key"].unique()) == ["more", "other"]


def test_pull_force_replaces_the_local_run_whole(two_runs: tuple[Path, Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    remote_dir, a, b = two_runs
    (b / "history" / ".leftover.tmp").write_bytes(b"x")
    rc, out, err = _cli(capsys, "pull", "--force", remote_dir, b.parent)
    assert rc == 0, err
    assert _pulled(b) == source_files(a)  # only the remote run's files: the other run's are gone
    assert sorted(pd.read_parquet(b / "history")["key"].unique()) == ["acc"]
    assert not list((b.parent / ".runsync" / "pull").iterdir())  # no staging left behind
    assert verify(Remote(str(remote_dir))).ok
    rc, out, err = _cli(capsys, "pull", remote_dir, b.parent)  # now the same run: incremental, nothing to fetch
    assert rc == 0 and "0 files" in out, (out, err)


def test_pull_compares_run_json_without_a_huge_read(two_runs: tuple[Path, Path, Path]) -> None:
    """The remote run.json is read into memory to compare identities: a manifest claiming it is huge is
    refused before any read."""
    remote_dir, a, b = two_runs
    _edit_manifest(remote_dir, "r1", lambda d: d["files"]["run.json"].update(size=2**40))
    res = pull(Remote(str(remote_dir)), b.parent)
    assert [r for r, _ in res.failures] == ["r1"] and "is not a document" in res.failures[0][1]


def test_pull_force_is_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["pull", "--help"])
    out = capsys.readouterr().out
    assert "--force" in out and "replace it whole" in out


def test_pull_of_the_same_run_stays_incremental(tmp_path: Path) -> None:
    """Same run.json identity (id and created) → the usual incremental pull, even if run.json's bytes
    differ (e.g. a newer writer added a field)."""
    remote_dir = tmp_path / "remote"
    a = _run(tmp_path / "a", "r1", "alpha", ("acc",))
    assert push(tmp_path / "a", Remote(str(remote_dir))).failures == []
    dest = tmp_path / "dest"
    assert pull(Remote(str(remote_dir)), dest).failures == []
    extra = dest / "r1" / "history" / "mine.txt"  # a file of the local copy: an incremental pull keeps it
    extra.write_text("kept")
    info = json.loads((dest / "r1" / "run.json").read_bytes())
    info["tags"] = ["edited"]
    (dest / "r1" / "run.json").write_text(json.dumps(info))
    res = pull(Remote(str(remote_dir)), dest)
    assert res.failures == [] and res.files == 1  # run.json again; nothing else
    assert extra.read_text() == "kept"
    assert _pulled(dest / "r1") == {**source_files(a), "history/mine.txt": sha(b"kept")}


def test_pull_refuses_a_dir_whose_files_name_no_run(tmp_path: Path) -> None:
    """A directory holding files but no run.json (or an unreadable one) cannot be told to be the same
    run: refused, unchanged; a pull itself writes run.json first, so it never leaves such a dir."""
    remote_dir = tmp_path / "remote"
    _run(tmp_path / "a", "r1", "alpha", ("acc",))
    assert push(tmp_path / "a", Remote(str(remote_dir))).failures == []
    dest = tmp_path / "dest"
    (dest / "r1" / "history").mkdir(parents=True)
    (dest / "r1" / "history" / "x.parquet").write_bytes(b"not ours")
    res = pull(Remote(str(remote_dir)), dest)
    assert [r for r, _ in res.failures] == ["r1"] and "no run.json" in res.failures[0][1]
    assert sorted(p.name for p in (dest / "r1").rglob("*")) == ["history", "x.parquet"]
    (dest / "r1" / "run.json").write_text("{not json")
    res = pull(Remote(str(remote_dir)), dest)
    assert [r for r, _ in res.failures] == ["r1"] and "invalid JSON" in res.failures[0][1]
    assert pull(Remote(str(remote_dir)), dest, force=True).failures == []


def test_pull_writes_run_json_before_any_other_file(tmp_path: Path) -> None:
    """No file of a run lands before its run.json: a pull that cannot bring run.json writes nothing (so a
    directory a pull wrote in always says which run its files belong to)."""
    remote_dir = tmp_path / "remote"
    _run(tmp_path / "a", "r1", "alpha", ("acc",))
    assert push(tmp_path / "a", Remote(str(remote_dir))).failures == []
    (remote_dir / "r1" / "run.json").write_bytes(b"{}")  # damaged: its hash no longer matches
    dest = tmp_path / "dest"
    res = pull(Remote(str(remote_dir)), dest)
    assert [r for r, _ in res.failures] == ["r1"] and "run.json" in res.failures[0][1]
    assert [p for p in (dest / "r1").rglob("*") if p.is_file()] == []


def test_reader_cache_follows_a_run_replaced_on_the_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runsync's remote-read cache mirrors the remote: a run replaced there under the same id replaces
    the cached copy (never a mix)."""
    from runsync.reader.remote import fetch_run

    monkeypatch.setenv("RUNSYNC_CACHE_DIR", str(tmp_path / "cache"))
    # fetch_run reads through the cache only for URLs; a memory:// remote stands in for a server.
    import fsspec

    mem = f"memory://integrity-{os.getpid()}"
    _run(tmp_path / "a", "r1", "alpha", ("acc",))
    assert push(tmp_path / "a", Remote(mem)).failures == []
    first = fetch_run(f"{mem}/r1", storage_options={})
    assert sorted(pd.read_parquet(first / "history")["key"].unique()) == ["acc"]
    fsspec.filesystem("memory").rm(mem.removeprefix("memory://"), recursive=True)
    _run(tmp_path / "b", "r1", "beta", ("other",))
    assert push(tmp_path / "b", Remote(mem)).failures == []
    again = fetch_run(f"{mem}/r1", storage_options={})
    assert sorted(pd.read_parquet(again / "history")["key"].unique()) == ["other"]
    fsspec.filesystem("memory").rm(mem.removeprefix("memory://"), recursive=True)


# --------------------------------------------------------------------------- item 4: sizes, run_id, links


@pytest.mark.parametrize("size", [10**18, -5, True, 1.5, "12", None, 2**50 + 1])
def test_manifest_sizes_are_validated(size: object) -> None:
    raw = json.dumps({"format": "1.1", "run_id": "r1", "created": 1.0,
                      "files": {"run.json": {"size": size, "sha256": "0" * 64}}}).encode()
    with pytest.raises(CorruptFileError, match="size"):
        parse_manifest(raw, "remote/r1/manifest.json")
    ok = json.dumps({"format": "1.1", "run_id": "r1", "created": 1.0,
                     "files": {"run.json": {"size": 2**50, "sha256": "0" * 64}}}).encode()
    assert parse_manifest(ok, "remote/r1/manifest.json").files["run.json"].size == 2**50


@pytest.mark.parametrize("created", ["x", None, True, float("nan")])
def test_manifest_created_must_be_a_number(created: object) -> None:
    raw = json.dumps({"run_id": "r1", "created": created, "files": {}}).encode()
    with pytest.raises(CorruptFileError, match="created"):
        parse_manifest(raw, "remote/r1/manifest.json")


@pytest.fixture
def pushed(tmp_path: Path) -> tuple[Path, Path]:
    remote_dir = tmp_path / "remote"
    a = _run(tmp_path / "a", "r1", "alpha", ("acc",))
    assert push(tmp_path / "a", Remote(str(remote_dir))).failures == []
    return remote_dir, a


def test_pull_and_verify_check_sizes(pushed: tuple[Path, Path], tmp_path: Path) -> None:
    """A manifest whose size disagrees with the (hash-correct) file: pull fails naming it, copies
    nothing false, reports no absurd byte count; verify reports the file corrupt."""
    remote_dir, a = pushed
    part = sorted((remote_dir / "r1" / "history").glob("*.parquet"))[0]
    rel = f"history/{part.name}"
    _edit_manifest(remote_dir, "r1", lambda d: d["files"][rel].update(size=d["files"][rel]["size"] + 1))
    res = pull(Remote(str(remote_dir)), tmp_path / "dest")
    assert [r for r, _ in res.failures] == ["r1"] and rel in res.failures[0][1] and "bytes" in res.failures[0][1]
    assert not (tmp_path / "dest" / "r1" / rel).exists()
    assert res.bytes < 10 * 1024 * 1024
    v = verify(Remote(str(remote_dir)))
    assert not v.ok and v.corrupt == [("r1", rel)]
    _edit_manifest(remote_dir, "r1", lambda d: d["files"][rel].update(size=10**18))
    res = pull(Remote(str(remote_dir)), tmp_path / "dest2")
    assert "2**50" in res.failures[0][1] and res.bytes == 0
    v = verify(Remote(str(remote_dir)))
    assert not v.ok and "2**50" in v.failures[0][1]


def test_manifest_naming_another_run_is_refused(pushed: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    remote_dir, a = pushed
    _edit_manifest(remote_dir, "r1", lambda d: d.update(run_id="r2"))
    res = pull(Remote(str(remote_dir)), tmp_path / "dest")
    assert [r for r, _ in res.failures] == ["r1"] and "names run 'r2'" in res.failures[0][1]
    assert not (tmp_path / "dest" / "r1").exists()
    rc, out, err = _cli(capsys, "verify", remote_dir)
    assert rc == 1 and "names run 'r2'" in out and "PROBLEMS FOUND" in out


def test_symlinks_on_a_local_remote_are_refused(pushed: tuple[Path, Path], tmp_path: Path) -> None:
    """A run file, the run directory or the manifest that is a symbolic link is not followed."""
    remote_dir, a = pushed
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the remote")
    # 1. a run file: the link points at a file outside whose hash the manifest states
    part = sorted((remote_dir / "r1" / "history").glob("*.parquet"))[0]
    rel = f"history/{part.name}"
    outside = tmp_path / "outside.parquet"
    shutil.copy(part, outside)
    part.unlink()
    part.symlink_to(outside)
    res = pull(Remote(str(remote_dir)), tmp_path / "dest")
    assert [r for r, _ in res.failures] == ["r1"] and "symbolic link" in res.failures[0][1] and rel in res.failures[0][1]
    v = verify(Remote(str(remote_dir)))
    assert not v.ok and "symbolic link" in v.failures[0][1]
    part.unlink()
    shutil.copy(outside, part)
    assert verify(Remote(str(remote_dir))).ok
    # 2. the manifest
    m = remote_dir / "r1" / MANIFEST
    shutil.move(m, tmp_path / "m.json")
    m.symlink_to(tmp_path / "m.json")
    for res in (pull(Remote(str(remote_dir)), tmp_path / "dest3"), verify(Remote(str(remote_dir)))):
        assert [r for r, _ in res.failures] == ["r1"] and "symbolic link" in res.failures[0][1]
    m.unlink()
    shutil.move(tmp_path / "m.json", m)
    # 3. the run directory
    shutil.move(remote_dir / "r1", tmp_path / "r1-elsewhere")
    (remote_dir / "r1").symlink_to(tmp_path / "r1-elsewhere")
    for res in (pull(Remote(str(remote_dir)), tmp_path / "dest4"), verify(Remote(str(remote_dir)))):
        assert [r for r, _ in res.failures] == ["r1"] and "symbolic link" in res.failures[0][1]
    assert not (tmp_path / "dest4" / "r1").exists()


# --------------------------------------------------------------------------- item 5: repair hints


def test_verify_prints_the_repair_command(pushed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    remote_dir, a = pushed
    (remote_dir / "r1" / MANIFEST).write_bytes(b'{"run_id": "r1", "files": {"x": ')
    typed = os.path.relpath(remote_dir)
    rc, out, err = _cli(capsys, "verify", typed)
    assert rc == 1 and f"runsync push --verify <runs dir> {typed}" in out
    rc, out, err = _cli(capsys, "verify", "--json", typed)
    assert rc == 1 and json.loads(out)["repair"] == f"runsync push --verify <runs dir> {typed}"
    rc, out, err = _cli(capsys, "push", a.parent, remote_dir)  # a plain push says what repairs it
    assert rc == 0 and "runsync push --verify" not in err  # trusted local state: it reads no manifest
    (a.parent / ".runsync" / "sync").rename(a.parent / ".runsync" / "sync-old")
    rc, out, err = _cli(capsys, "push", a.parent, remote_dir)
    assert rc == 1 and "invalid manifest JSON" in err and "runsync push --verify SRC REMOTE" in err
    rc, out, err = _cli(capsys, "push", "--verify", a.parent, remote_dir)
    assert rc == 0, err
    rc, out, err = _cli(capsys, "verify", typed)
    assert rc == 0 and "repair" not in out
