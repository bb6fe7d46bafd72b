"""Conformance tests of the syncer, run against every remote backend (zarr/fsspec style).

``RemoteTests`` is not collected by itself (no ``Test`` prefix). A backend's test module
subclasses it as ``Test<Backend>`` and provides:

* the fixture ``remote_url``: the URL of a fresh, empty remote for each test;
* optionally the fixture ``storage_options`` (default None), passed to ``Remote`` and to pandas;
* optionally the fixture ``cli_env`` (default: nothing), which must make a plain
  ``Remote(remote_url)`` — what the CLI builds — reach the same remote (e.g. S3 endpoint env vars);
* optionally ``read_history_stock`` when stock pandas cannot read the URL by itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sync_util import (
    MB,
    assert_remote_mirrors,
    blob_objects,
    commit_problems,
    make_run,
    remote_files,
    resume_run,
    sha,
    source_files,
    tree_hashes,
    wrap,
)

import runsync
from runsync.cli import main as cli_main
from runsync.format.manifest import is_replaced, is_tabular, staging_path, stored_at
from runsync.format.manifest import MANIFEST, blob_path
from runsync.syncer import PushOptions, Remote, RetryPolicy, pull, push, remote_runs, verify

__all__ = ["RemoteTests"]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["stream", "seq"]).reset_index(drop=True)


def _pulled(run_dir: Path) -> dict[str, str]:
    return tree_hashes(run_dir, skip=lambda rel: rel == MANIFEST)


class RemoteTests:
    # ------------------------------------------------------------------ backend hooks

    @pytest.fixture
    def remote_url(self) -> str:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    @pytest.fixture
    def storage_options(self) -> dict[str, Any] | None:
        return None

    @pytest.fixture
    def cli_env(self) -> None:
        return None

    def make_remote(self, url: str, storage_options: dict[str, Any] | None, **policy: Any) -> Remote:
        """A Remote for this backend with a fast retry policy (tests must not sleep)."""
        kw: dict[str, Any] = {"retries": 2, "base": 0.001, "cap": 0.01, "say": lambda msg: None}
        kw.update(policy)
        return Remote(url, storage_options=storage_options, policy=RetryPolicy(**kw))

    @pytest.fixture
    def remote(self, remote_url: str, storage_options: dict[str, Any] | None) -> Remote:
        return self.make_remote(remote_url, storage_options)

    def read_history_stock(self, url: str, storage_options: dict[str, Any] | None, run_id: str) -> pd.DataFrame:
        """``<remote>/<id>/history`` read by stock pandas through fsspec (no runsync code)."""
        if storage_options:
            return pd.read_parquet(f"{url}/{run_id}/history", storage_options=storage_options)
        return pd.read_parquet(f"{url}/{run_id}/history")

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli_main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    @staticmethod
    def rel_written(remote: Remote, paths: list[str]) -> set[str]:
        root = remote.root.rstrip("/") + "/"
        return {p.removeprefix(root) for p in paths}

    # ------------------------------------------------------------------ tests

    def test_push_verify_and_stock_read(self, root: Path, remote: Remote, remote_url: str,
                                        storage_options: dict[str, Any] | None) -> None:
        ids = ["run-a", "run-b"]
        for i, run_id in enumerate(ids):
            make_run(root, run_id, steps=60, offset=i)
        res = push(root, remote)
        assert res.failures == []
        assert (res.runs, res.runs_pushed, res.skipped) == (2, 2, 0)
        assert res.files_sent == sum(len(source_files(root / r)) for r in ids)
        assert res.bytes_sent == sum((root / r / rel).stat().st_size for r in ids for rel in source_files(root / r))
        assert sorted(remote_runs(remote)) == ids
        v = verify(remote)
        assert v.ok and v.runs == 2 and v.files == res.files_sent, v
        assert commit_problems(remote) == []
        assert_remote_mirrors(remote, root, ids)
        for run_id in ids:
            got = self.read_history_stock(remote_url, storage_options, run_id)
            want = pd.read_parquet(root / run_id / "history")
            assert len(got) == 60 * 3
            pd.testing.assert_frame_equal(_sorted(got), _sorted(want))

    def test_second_push_of_unchanged_tree_sends_nothing(self, root: Path, remote: Remote) -> None:
        for run_id in ("run-a", "run-b", "run-c"):
            make_run(root, run_id, files={"files/w.bin": run_id.encode() * 100})
        first = push(root, remote)
        assert first.failures == [] and first.files_sent > 0
        manifests = {k: v for k, v in remote_files(remote).items() if k.endswith(MANIFEST)}
        proxy = wrap(remote)
        second = push(root, remote)
        assert second.failures == []
        assert (second.files_sent, second.bytes_sent, second.skipped, second.runs_pushed) == (0, 0, 3, 0)
        assert proxy.written() == []
        # an unchanged tree costs local stat() calls and one listing of the remote root (spec §12.5)
        assert proxy.count() == proxy.count("ls") == 1, proxy.calls
        # without the local state (a cache): re-hash + one manifest read per run, still nothing sent
        for p in (root / ".runsync" / "sync").iterdir():
            p.unlink()
        third = push(root, remote)
        assert third.failures == []
        assert (third.files_sent, third.runs_pushed) == (0, 0)
        assert proxy.written() == []
        assert {k: v for k, v in remote_files(remote).items() if k.endswith(MANIFEST)} == manifests

    def test_push_after_resume_sends_only_new_and_changed(self, root: Path, remote: Remote, remote_url: str,
                                                         storage_options: dict[str, Any] | None) -> None:
        run_dir = make_run(root, "run-r", steps=100)
        make_run(root, "run-other", steps=5)
        assert push(root, remote).failures == []
        m1 = json.loads(remote.read(f"run-r/{MANIFEST}") or b"")["files"]
        old_parts = [p for p in m1 if p.startswith("history/")]
        assert old_parts
        resume_run(root, "run-r", steps=10)
        now = source_files(run_dir)
        changed = {rel for rel, d in now.items() if m1.get(rel, {}).get("sha256") != d}
        new_parts = {rel for rel in changed if rel.startswith("history/")}
        assert new_parts and not (set(old_parts) & changed)
        assert "streams/main/status.json" in changed
        proxy = wrap(remote)
        res = push(root, remote)
        assert res.failures == []
        assert (res.runs_pushed, res.skipped) == (1, 1)
        assert res.files_sent == len(changed)
        assert res.bytes_sent == sum((run_dir / rel).stat().st_size for rel in changed)
        written = self.rel_written(remote, proxy.written())
        # Committed bytes where they live (replaced documents: the blob store; parts: staged by hash,
        # then moved to their run paths, spec §12.3), the manifest, then the run-path copies of
        # replaced documents (spec §12.1.2).
        assert written == ({stored_at("run-r", rel, now[rel]) for rel in changed} | {f"run-r/{MANIFEST}"}
                           | {staging_path("run-r", now[rel]) for rel in changed if is_tabular(rel)}
                           | {f"run-r/{rel}" for rel in changed if is_replaced(rel)})
        assert verify(remote).ok
        got = self.read_history_stock(remote_url, storage_options, "run-r")
        assert len(got) == 100 * 3 + 10 * 2
        pd.testing.assert_frame_equal(_sorted(got), _sorted(pd.read_parquet(run_dir / "history")))

    def test_blob_dedup_and_byte_identical_pull(self, root: Path, remote: Remote, tmp_path: Path) -> None:
        big = os.urandom(5 * MB)
        extras = {"run-a": {"files/img.png": b"\x89PNG" + b"a" * 300},
                  "run-b": {"files/sub/notes.txt": b"hello"}}
        for run_id in ("run-a", "run-b"):
            make_run(root, run_id, files={"files/ckpt.bin": big, **extras[run_id]})
        first = push(root, remote, PushOptions(include=["run-a"]))
        assert first.failures == [] and first.runs == 1
        assert first.bytes_deduplicated == 0 and first.bytes_sent >= 5 * MB
        proxy = wrap(remote)
        second = push(root, remote)
        assert second.failures == []
        assert second.skipped == 1 and second.runs_pushed == 1
        assert second.bytes_deduplicated >= 5 * MB
        assert second.bytes_sent < MB
        assert blob_path(sha(big)) not in self.rel_written(remote, proxy.written())

        files = remote_files(remote)
        # Saved files and media are blobs (replaced stream documents are too, spec §12.1.2).
        assert set(blob_objects(files)) >= {
            blob_path(sha(d)) for d in (big, extras["run-a"]["files/img.png"], extras["run-b"]["files/sub/notes.txt"])}
        assert sum(1 for data in files.values() if data == big) == 1  # stored once
        assert not [rel for rel in files if rel.split("/")[1:2] in (["files"], ["media"])]  # not in run dirs
        assert verify(remote).ok

        dest = tmp_path / "pulled"
        res = pull(remote, dest)
        assert res.failures == [] and res.runs == 2
        for run_id in ("run-a", "run-b"):
            assert _pulled(dest / run_id) == source_files(root / run_id)
        again = pull(remote, dest)  # idempotent: everything already there
        assert again.failures == [] and again.files == 0 and again.skipped == res.files

    def test_pull_then_open_run_history_equals_original(self, root: Path, remote: Remote, tmp_path: Path) -> None:
        make_run(root, "run-p", steps=120)
        resume_run(root, "run-p", steps=7)
        make_run(root, "run-q", steps=3)
        assert push(root, remote).failures == []
        dest = tmp_path / "pulled"
        res = pull(remote, dest, run_ids=["run-p"])
        assert res.failures == [] and res.runs == 1
        assert sorted(p.name for p in dest.iterdir()) == ["run-p"]
        orig, back = runsync.open_run(root / "run-p"), runsync.open_run(dest / "run-p")
        pd.testing.assert_frame_equal(back.history(), orig.history())
        assert back.summary == orig.summary and back.config == orig.config and back.status == orig.status

    def test_dry_run_sends_nothing(self, root: Path, remote: Remote, capsys: pytest.CaptureFixture[str],
                                   remote_url: str, cli_env: None) -> None:
        make_run(root, "run-a", files={"files/x.bin": b"x" * 5000})
        make_run(root, "run-b", files={"files/x.bin": b"x" * 5000})
        proxy = wrap(remote)
        res = push(root, remote, PushOptions(dry_run=True, jobs=1))
        assert res.failures == []
        assert res.files_sent > 0 and res.runs_pushed == 0  # what would be sent
        assert res.bytes_deduplicated == 5000  # the shared blob would be sent once
        assert proxy.written() == []
        assert not [n for n, _ in proxy.calls if n in ("pipe_file", "put_file", "mv", "rm_file", "makedirs")]
        assert remote_files(remote) == {}
        assert not (root / ".runsync" / "sync").exists() or not list((root / ".runsync" / "sync").iterdir())
        rc, out, err = self.cli(capsys, "push", root, remote_url, "--dry-run")
        assert rc == 0 and "would send" in out, (out, err)
        assert remote_files(remote) == {}
        real = push(root, remote, PushOptions(jobs=1))  # nothing was recorded as pushed
        assert real.files_sent == res.files_sent and real.runs_pushed == 2

    def test_include_exclude_and_ignore_globs(self, root: Path, remote: Remote,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        for run_id in ("exp-a1", "exp-a2", "exp-b1", "tmp-x1"):
            make_run(root, run_id, steps=3)
        res = push(root, remote, PushOptions(include=["exp-*"], exclude=["*-b*"]))
        assert res.failures == [] and res.runs == 2
        assert sorted(remote_runs(remote)) == ["exp-a1", "exp-a2"]
        monkeypatch.setenv("RUNSYNC_IGNORE_GLOBS", "tmp-*, exp-a2")
        res = push(root, remote)
        assert res.failures == [] and res.runs == 2 and res.skipped == 1 and res.runs_pushed == 1
        assert sorted(remote_runs(remote)) == ["exp-a1", "exp-a2", "exp-b1"]
        res = push(root, remote, PushOptions(include=["tmp-*", "exp-b1"]))  # the env still excludes tmp-*
        assert res.runs == 1 and res.skipped == 1
        monkeypatch.delenv("RUNSYNC_IGNORE_GLOBS")
        res = push(root, remote, PushOptions(exclude=["exp-*"]))
        assert res.runs == 1 and res.runs_pushed == 1
        assert sorted(remote_runs(remote)) == ["exp-a1", "exp-a2", "exp-b1", "tmp-x1"]
        assert verify(remote).ok

    def test_verify_detects_corrupt_and_missing(self, root: Path, remote: Remote, remote_url: str,
                                                capsys: pytest.CaptureFixture[str], cli_env: None) -> None:
        make_run(root, "run-v", steps=40, files={"files/w.bin": b"w" * 4000})
        resume_run(root, "run-v", steps=5)
        make_run(root, "run-ok", steps=5)
        assert push(root, remote).failures == []
        m = json.loads(remote.read(f"run-v/{MANIFEST}") or b"")["files"]
        part = min(p for p in m if p.startswith("history/"))
        data = remote.fs.cat_file(remote.path("run-v", part))
        remote.fs.pipe_file(remote.path("run-v", part), bytes(b ^ 0x5A for b in data[:64]) + data[64:])
        remote.fs.rm_file(remote.path("run-v", "streams/main/summary.json"))
        remote.fs.rm_file(remote.path(blob_path(m["files/w.bin"]["sha256"])))
        remote.fs.invalidate_cache()

        v = verify(remote)
        assert not v.ok
        assert v.corrupt == [("run-v", part)]
        assert sorted(v.missing) == [("run-v", "files/w.bin"), ("run-v", "streams/main/summary.json")]
        assert v.failures == []
        assert verify(remote, run_ids=["run-ok"]).ok

        rc, out, err = self.cli(capsys, "verify", remote_url)
        assert rc == 1, (out, err)
        assert f"CORRUPT  run-v/{part}" in out and "MISSING  run-v/streams/main/summary.json" in out
        assert "MISSING  run-v/files/w.bin" in out and "PROBLEMS FOUND" in out
        rc, out, err = self.cli(capsys, "verify", remote_url, "--json")
        doc = json.loads(out)
        assert rc == 1 and doc["ok"] is False and doc["corrupt"] == [f"run-v/{part}"]


    def test_push_verify_resends_missing_files(self, root: Path, remote: Remote) -> None:
        make_run(root, "run-v", steps=20, files={"files/w.bin": b"w" * 4000})
        assert push(root, remote).failures == []
        m = json.loads(remote.read(f"run-v/{MANIFEST}") or b"")["files"]
        remote.fs.rm_file(remote.path("run-v", "streams/main/summary.json"))
        remote.fs.rm_file(remote.path(blob_path(m["files/w.bin"]["sha256"])))
        remote.fs.invalidate_cache()
        assert push(root, remote).files_sent == 0  # a plain push trusts its local state...
        repaired = push(root, remote, PushOptions(verify=True))  # ...--verify re-checks the remote
        assert repaired.failures == [] and repaired.files_sent >= 2  # (+ the blob a first push skipped, §12.1.2)
        assert verify(remote).ok

    def test_push_verify_resends_corrupt_file(self, root: Path, remote: Remote) -> None:
        make_run(root, "run-v", steps=20)
        assert push(root, remote).failures == []
        m = json.loads(remote.read(f"run-v/{MANIFEST}") or b"")["files"]
        part = min(p for p in m if p.startswith("history/"))
        data = remote.fs.cat_file(remote.path("run-v", part))
        remote.fs.pipe_file(remote.path("run-v", part), bytes(b ^ 0x5A for b in data[:64]) + data[64:])
        remote.fs.invalidate_cache()
        assert verify(remote).corrupt == [("run-v", part)]
        repaired = push(root, remote, PushOptions(verify=True))
        assert repaired.failures == []
        assert verify(remote).ok, "push --verify left a corrupt file on the remote"

    def test_pushed_copy_pushes_on(self, root: Path, remote: Remote, tmp_path: Path) -> None:
        shared = os.urandom(2 * MB)
        for i, run_id in enumerate(("run-a", "run-b")):
            make_run(root, run_id, files={"files/ckpt.bin": shared, f"files/m{i}.bin": bytes([i]) * 999})
        resume_run(root, "run-b", steps=4)
        hop = tmp_path / "usb"
        res = push(root, Remote(str(hop)))
        assert res.failures == []
        assert not (hop / "run-a" / "files").exists()  # blobs live in the copy's blob store
        res = push(hop, remote, PushOptions(jobs=1))
        assert res.failures == [] and res.runs == 2 and res.runs_pushed == 2
        assert res.bytes_deduplicated >= 2 * MB  # the shared blob once
        v = verify(remote)
        assert v.ok and v.files == sum(len(source_files(root / r)) for r in ("run-a", "run-b"))
        assert_remote_mirrors(remote, root, ["run-a", "run-b"])
        again = push(hop, remote)
        assert again.files_sent == 0 and again.skipped == 2
        dest = tmp_path / "back"
        got = pull(remote, dest)
        assert got.failures == []
        for run_id in ("run-a", "run-b"):
            assert _pulled(dest / run_id) == source_files(root / run_id)

    def test_runsync_reads_the_remote(self, root: Path, remote: Remote, remote_url: str, tmp_path: Path,
                                      storage_options: dict[str, Any] | None, capsys: pytest.CaptureFixture[str],
                                      cli_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
        """`runsync ls/runs/show REMOTE`, runsync.runs(REMOTE) and open_run(REMOTE/<id>) read a pushed copy as the
        original (through the verified local cache), and follow later pushes."""
        monkeypatch.setenv("RUNSYNC_CACHE_DIR", str(tmp_path / "cache"))
        if storage_options:
            monkeypatch.setenv("RUNSYNC_STORAGE_OPTIONS", json.dumps(storage_options))
        make_run(root, "run-r1", steps=30)
        make_run(root, "run-r2", steps=10)
        assert push(root, remote).failures == []
        url = remote_url.rstrip("/")
        view = runsync.open_run(f"{url}/run-r1")
        local = runsync.open_run(root / "run-r1")
        assert view.status == local.status == "finished"
        assert _sorted(view.history(wide=False)).equals(_sorted(local.history(wide=False)))
        assert view.documents() == local.documents()
        table = runsync.runs(url)
        assert sorted(table["id"]) == ["run-r1", "run-r2"]
        rc, out, err = self.cli(capsys, "ls", url)
        assert rc == 0 and "run-r1" in out and "run-r2" in out, err
        rc, out, err = self.cli(capsys, "show", "run-r2", "--dir", url)
        assert rc == 0 and "run-r2" in out, err
        rc, out, err = self.cli(capsys, "runs", url, "--where", "steps > 20", "--json")
        assert rc == 0 and [r["id"] for r in json.loads(out)["runs"]] == ["run-r1"], (out, err)
        resume_run(root, "run-r2", steps=5)  # the run grows; a new push; the reader follows
        assert push(root, remote).failures == []
        assert runsync.open_run(f"{url}/run-r2").history()["step"].max() == 14

    def test_cli_push_verify_pull_status(self, root: Path, remote_url: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], cli_env: None) -> None:
        make_run(root, "run-c1", files={"files/f.bin": b"f" * 1000})
        make_run(root, "run-c2")
        rc, out, err = self.cli(capsys, "status", root, remote_url)
        assert rc == 0 and out.count("never pushed") == 2, out
        rc, out, err = self.cli(capsys, "push", root, remote_url, "--json")
        assert rc == 0, err
        doc = json.loads(out)
        assert {"runs", "files_sent", "bytes_sent", "bytes_deduplicated", "skipped"} <= set(doc)
        assert doc["runs"] == 2 and doc["files_sent"] > 0 and doc["failures"] == []
        rc, out, err = self.cli(capsys, "status", root, remote_url, "--json")
        assert [r["status"] for r in json.loads(out)["runs"]] == ["up to date", "up to date"]
        rc, out, err = self.cli(capsys, "verify", remote_url)
        assert rc == 0 and "2 runs" in out and "OK" in out, out
        rc, out, err = self.cli(capsys, "pull", remote_url, tmp_path / "dest", "--run", "run-c1")
        assert rc == 0, err
        assert _pulled(tmp_path / "dest" / "run-c1") == source_files(root / "run-c1")
        assert not (tmp_path / "dest" / "run-c2").exists()

    # ------------------------------------------------------------------ a damaged remote (issue 10 item 5)

    def test_plain_push_restores_runs_gone_from_the_remote(self, root: Path, remote: Remote) -> None:
        """The local sync state says 'pushed'; the remote lost the run (data wiped). The push's one listing
        of the remote shows it gone: pushed again, no --verify needed (spec §12.5)."""
        ids = ["run-a", "run-b", "run-c"]
        for run_id in ids:
            make_run(root, run_id, steps=5, files={"files/w.bin": run_id.encode() * 50})
        assert push(root, remote).failures == []
        remote.fs.rm(remote.path("run-b"), recursive=True)
        assert sorted(remote_runs(remote)) == ["run-a", "run-c"]
        res = push(root, remote)
        assert res.failures == [] and (res.runs_pushed, res.skipped) == (1, 2)
        assert sorted(remote_runs(remote)) == ids and verify(remote).ok
        assert_remote_mirrors(remote, root, ids)
        remote.fs.rm(remote.root, recursive=True)  # everything gone, blobs too
        res = push(root, remote)
        assert res.failures == [] and (res.runs_pushed, res.skipped) == (3, 0)
        assert sorted(remote_runs(remote)) == ids and verify(remote).ok
        assert_remote_mirrors(remote, root, ids)

    def test_push_verify_rewrites_a_damaged_manifest(self, root: Path, remote: Remote, tmp_path: Path) -> None:
        """Five damage modes of a remote manifest.json: verify and pull name each; `push --verify` rewrites
        each from the intact source, without sending again the files that are intact."""
        damage = {
            "run-trunc": lambda raw: raw[: len(raw) // 2],
            "run-notjson": lambda raw: b"\x00\xff garbage",
            "run-shape": lambda raw: b'["run-shape", {"files": {}}]',
            "run-otherid": lambda raw: raw.replace(b'"run-otherid"', b'"run-else"'),
            "run-badpath": lambda raw: raw.replace(b'"run.json"', b'"../../run.json"'),
        }
        for run_id in damage:
            make_run(root, run_id, steps=5)
        assert push(root, remote).failures == []
        for run_id, spoil in damage.items():
            raw = remote.read(f"{run_id}/{MANIFEST}") or b""
            remote.write(f"{run_id}/{MANIFEST}", spoil(raw))
        v = verify(remote)
        assert sorted(r for r, _ in v.failures) == sorted(damage), v
        assert all(MANIFEST in e for _, e in v.failures)
        got = pull(remote, tmp_path / "dest")
        assert sorted(r for r, _ in got.failures) == sorted(damage)
        res = push(root, remote, PushOptions(verify=True))
        assert res.failures == [] and res.runs_pushed == len(damage)
        # every file was intact: none is sent again but the blobs of replaced documents (a first commit wrote
        # them at their run paths only; the rewritten manifest is no first commit, spec §12.1.2)
        assert res.files_sent == sum(is_replaced(rel) for run_id in damage for rel in source_files(root / run_id))
        v = verify(remote)
        assert v.ok and v.runs == len(damage), v
        assert commit_problems(remote) == []
        got = pull(remote, tmp_path / "dest")
        assert got.failures == []
        for run_id in damage:
            assert _pulled(tmp_path / "dest" / run_id) == source_files(root / run_id)
