"""Saved files (spec §13.5): ``run.save(path_or_glob, base_path, policy)``.

What a run stores is checked from the files a reader sees: ``files/sha256/<aa>/<sha256>`` objects
(content-addressed, once per content), ``streams/<s>/files.json`` entries, ``RunView.files()`` and
``file_path()``; then through a push to a local remote (§12.1.1: saved files become blobs) and a pull.
The 200 MB save runs in a child process, so its peak memory is measured on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import env_without_runsync

import runsync
from runsync.syncer import Remote, pull, push, verify

BIG_MB = 200
MEMORY_BOUND = 64 << 20  # save() of BIG_MB must grow the child's peak RSS by far less than the file
LIVE_TIMEOUT = 8.0  # the live poll runs every 2 s (spec §13.5)


# -- helpers ---------------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha_file(path: Path) -> str:
    """SHA-256 of a file read in 1 MiB chunks (the big object is never held whole in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _objects(run_dir: Path) -> list[Path]:
    """Every file under ``files/`` (objects, and any leftover temp file)."""
    return sorted(p for p in (run_dir / "files").rglob("*") if p.is_file())


def _index(run_dir: Path, stream: str = "main") -> list[dict[str, Any]]:
    """The raw ``files`` array of a stream's files.json ([] before the first save is stored)."""
    path = run_dir / "streams" / stream / "files.json"
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["files"]
    return entries


def _wait_entries(run_dir: Path, n: int, timeout: float = LIVE_TIMEOUT) -> list[dict[str, Any]]:
    """Wait until files.json lists at least ``n`` saves (copies run on a background thread)."""
    deadline = time.monotonic() + timeout
    while len(entries := _index(run_dir)) < n:
        assert time.monotonic() < deadline, f"files.json has {len(entries)} entries, not {n}, after {timeout} s"
        time.sleep(0.02)
    return entries


def _stored(view: runsync.RunView, name: str) -> bytes:
    return view.file_path(name).read_bytes()


# -- what is stored, and under which name ------------------------------------------------------------


def test_save_stores_a_content_addressed_object_and_an_index_entry(root: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "work" / "model.bin", b"\x00weights\xff" * 100)
    with runsync.init(dir=root) as run:
        names = run.save("model.bin", base_path=tmp_path / "work")
    assert names == ["model.bin"]
    sha = _sha(src.read_bytes())
    obj = run.dir / "files" / "sha256" / sha[:2] / sha
    assert _objects(run.dir) == [obj], "one object, named by its hash, and no temp file"
    assert _sha_file(obj) == sha  # a person can check it with sha256sum
    [entry] = _index(run.dir)
    assert entry["name"] == "model.bin" and entry["sha256"] == sha and entry["size"] == src.stat().st_size
    assert entry["policy"] == "now"
    assert entry["mtime"] == pytest.approx(src.stat().st_mtime)
    assert isinstance(entry["time"], float)
    view = runsync.open_run(run.dir)
    assert list(view.files()) == ["model.bin"]  # type: ignore[arg-type]
    assert view.file_path("model.bin") == view.path / "files" / "sha256" / sha[:2] / sha
    assert _stored(view, "model.bin") == src.read_bytes()
    with pytest.raises(KeyError, match="never-saved"):
        view.file_path("never-saved")


def test_glob_with_double_star_names_files_relative_to_base_path(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "out"
    files = {"a.pt": b"a", "ckpt/b.pt": b"bb", "ckpt/epoch1/c.pt": b"ccc", "ckpt/epoch1/notes.txt": b"no"}
    for rel, data in files.items():
        _write(base / rel, data)
    with runsync.init(dir=root) as run:
        names = run.save("**/*.pt", base_path=base)
        # an absolute pattern inside the root gets the same relative names
        again = run.save(str(base / "ckpt" / "**" / "*.txt"), base_path=base)
    assert names == ["a.pt", "ckpt/b.pt", "ckpt/epoch1/c.pt"]
    assert again == ["ckpt/epoch1/notes.txt"]
    view = runsync.open_run(run.dir)
    saved = view.files()
    assert sorted(saved) == sorted(files)  # type: ignore[arg-type]
    for rel, data in files.items():
        assert _stored(view, rel) == data
        assert saved[rel].size == len(data)  # type: ignore[index]


def test_names_are_relative_to_the_working_directory_by_default(root: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    _write(work / "configs" / "train.yaml", b"lr: 0.1\n")
    monkeypatch.chdir(work)
    with runsync.init(dir=root) as run:
        assert run.save("configs/train.yaml") == ["configs/train.yaml"]
    assert _stored(runsync.open_run(run.dir), "configs/train.yaml") == b"lr: 0.1\n"


def test_same_content_under_two_names_is_stored_once(root: Path, tmp_path: Path) -> None:
    data = os.urandom(3000)
    _write(tmp_path / "w" / "best.pt", data)
    _write(tmp_path / "w" / "copy" / "last.pt", data)
    _write(tmp_path / "w" / "other.pt", data + b"!")
    with runsync.init(dir=root) as run:
        run.save("**/*.pt", base_path=tmp_path / "w")
        run.save("best.pt", base_path=tmp_path / "w")  # the same name and content again
    sha, other = _sha(data), _sha(data + b"!")
    assert [p.name for p in _objects(run.dir)] == sorted([sha, other])
    view = runsync.open_run(run.dir)
    assert {n: e.sha256 for n, e in view.files().items()} == {  # type: ignore[union-attr]
        "best.pt": sha, "copy/last.pt": sha, "other.pt": other}
    assert view.file_path("best.pt") == view.file_path("copy/last.pt")
    assert len(view.files(versions=True)) == 4  # every save has its entry; the bytes are stored once


# -- policies --------------------------------------------------------------------------------------


def test_policy_end_copies_at_finish_the_content_the_file_has_then(root: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "w" / "final.pt", b"at save() time")
    run = runsync.init(dir=root)
    assert run.save("final.pt", base_path=tmp_path / "w", policy="end") == ["final.pt"]
    time.sleep(0.3)  # the copier thread runs, and must leave an "end" file alone
    assert _index(run.dir) == [] and _objects(run.dir) == []
    src.write_bytes(b"changed before finish: this is what the run keeps")
    run.finish()
    view = runsync.open_run(run.dir)
    [entry] = view.files(versions=True)  # type: ignore[misc]
    assert entry.name == "final.pt" and entry.policy == "end"
    assert _stored(view, "final.pt") == src.read_bytes()
    assert [p.name for p in _objects(run.dir)] == [_sha(src.read_bytes())]


def test_policy_live_resaves_on_change_and_the_latest_wins(root: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "w" / "metrics.csv", b"step,loss\n0,1.0\n")
    v1 = src.read_bytes()
    run = runsync.init(dir=root)
    run.save("metrics.csv", base_path=tmp_path / "w", policy="live")
    _wait_entries(run.dir, 1)  # copied at once
    with open(src, "ab") as f:
        f.write(b"1,0.5\n")
    v2 = src.read_bytes()
    _wait_entries(run.dir, 2)  # the live poll saw the change while the run was going
    with open(src, "ab") as f:
        f.write(b"2,0.25\n")
    v3 = src.read_bytes()
    run.finish()  # ... and a last time at finish()
    view = runsync.open_run(run.dir)
    versions = view.files(versions=True)
    assert [(e.name, e.sha256, e.policy) for e in versions] == [  # type: ignore[union-attr]
        ("metrics.csv", _sha(v), "live") for v in (v1, v2, v3)]
    assert [e.size for e in versions] == [len(v1), len(v2), len(v3)]  # type: ignore[union-attr]
    times = [e.time for e in versions]  # type: ignore[union-attr]
    assert times == sorted(times)
    assert view.files()["metrics.csv"].sha256 == _sha(v3)  # type: ignore[index]
    assert _stored(view, "metrics.csv") == v3
    assert sorted(p.name for p in _objects(run.dir)) == sorted(_sha(v) for v in (v1, v2, v3))


def test_policy_live_without_a_change_is_saved_once(root: Path, tmp_path: Path) -> None:
    _write(tmp_path / "w" / "same.txt", b"unchanged")
    run = runsync.init(dir=root)
    run.save("same.txt", base_path=tmp_path / "w", policy="live")
    _wait_entries(run.dir, 1)
    run.finish()
    assert len(runsync.open_run(run.dir).files(versions=True)) == 1


def test_unknown_policy_is_refused(root: Path, tmp_path: Path) -> None:
    _write(tmp_path / "w" / "x.txt", b"x")
    with runsync.init(dir=root) as run, pytest.raises(ValueError, match="'sometimes'"):
        run.save("x.txt", base_path=tmp_path / "w", policy="sometimes")
    assert _index(run.dir) == []


# -- refusals: they name the path and leave the run as it was ----------------------------------------


@pytest.mark.parametrize("what", ["missing file", "glob matching nothing", "directory"])
def test_a_missing_path_raises_file_not_found_naming_it(root: Path, tmp_path: Path, what: str) -> None:
    base = tmp_path / "w"
    (base / "adir").mkdir(parents=True)
    pattern = {"missing file": "no-such-checkpoint.pt", "glob matching nothing": "ckpt/**/*.nothing",
               "directory": "adir"}[what]
    with runsync.init(dir=root) as run:
        with pytest.raises(FileNotFoundError, match=pattern.replace("*", r"\*")):
            run.save(pattern, base_path=base)
        run.log({"loss": 1.0})
    view = runsync.open_run(run.dir)
    assert view.status == "finished" and view.files() == {}
    assert view.history()["loss"].tolist() == [1.0]


def _outside_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """(base_path, pattern) that reach a file outside base_path, by path and through symlinks."""
    base = tmp_path / "w"
    outside = _write(tmp_path / "secret" / "id_rsa", b"not for the run")
    _write(base / "ok.txt", b"ok")
    (base / "link.txt").symlink_to(outside)
    (base / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    return {"absolute path": (base, str(outside)), "dot-dot": (base, "../secret/id_rsa"),
            "symlink": (base, "link.txt"), "glob through a symlink": (base, "*.txt"),
            "symlinked directory": (base, "linkdir/*")}


@pytest.mark.parametrize("case", ["absolute path", "dot-dot", "symlink", "glob through a symlink",
                                  "symlinked directory"])
def test_a_path_outside_the_root_raises_value_error_and_the_run_goes_on(root: Path, tmp_path: Path,
                                                                         case: str) -> None:
    base, pattern = _outside_cases(tmp_path)[case]
    run = runsync.init(dir=root)
    run.log({"loss": 1.0})
    with pytest.raises(ValueError) as err:
        run.save(pattern, base_path=base)
    msg = str(err.value)
    named = {"absolute path": "id_rsa", "dot-dot": "id_rsa", "symlink": "link.txt",
             "glob through a symlink": "link.txt", "symlinked directory": "linkdir"}[case]
    assert named in msg and str(base.resolve()) in msg, msg
    # the refused call stored nothing (not even ok.txt of the same glob); the run goes on
    time.sleep(0.1)
    assert _index(run.dir) == []
    run.log({"loss": 0.5})
    assert run.save("ok.txt", base_path=base) == ["ok.txt"]
    run.finish()
    view = runsync.open_run(run.dir)
    assert view.status == "finished"
    assert view.history()["loss"].tolist() == [1.0, 0.5]
    assert list(view.files()) == ["ok.txt"]  # type: ignore[arg-type]
    assert [p.name for p in _objects(run.dir)] == [_sha(b"ok")]


def test_a_name_outside_the_path_syntax_is_refused_naming_it(root: Path, tmp_path: Path) -> None:
    _write(tmp_path / "w" / "model epoch 1.pt", b"m")
    with runsync.init(dir=root) as run, pytest.raises(ValueError, match="model epoch 1.pt"):
        run.save("*.pt", base_path=tmp_path / "w")
    assert _index(run.dir) == []


def test_save_after_finish_raises(root: Path, tmp_path: Path) -> None:
    _write(tmp_path / "w" / "late.txt", b"late")
    run = runsync.init(dir=root)
    run.finish()
    with pytest.raises(runsync.RunFinishedError):
        run.save("late.txt", base_path=tmp_path / "w")
    assert _index(run.dir) == [] and not (run.dir / "files").exists()


def test_a_symlink_inside_the_root_keeps_the_name_it_was_saved_under(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "w"
    _write(base / "ck" / "ckpt-1.pt", b"one")
    _write(base / "ck" / "ckpt-2.pt", b"two!")
    (base / "ck" / "latest.pt").symlink_to("ckpt-1.pt")
    run = runsync.init(dir=root)
    try:
        names = run.save("ck/latest.pt", base_path=base, policy="live")
        _wait_entries(run.dir, 1)
        (base / "ck" / "latest.pt").unlink()
        (base / "ck" / "latest.pt").symlink_to("ckpt-2.pt")
    finally:
        run.finish()
    assert names == ["ck/latest.pt"]
    assert _stored(runsync.open_run(run.dir), "ck/latest.pt") == b"two!"


# -- a big file: bounded memory ------------------------------------------------------------------------

_BIG_CHILD = """
import hashlib, json, os, resource, sys
import runsync

def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024

root, base, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
# the file is written 1 MiB at a time: the child never holds it whole
block = bytearray(os.urandom(1 << 20))
h = hashlib.sha256()
with open(os.path.join(base, "big.ckpt"), "wb") as f:
    for i in range(mb):
        block[:8] = i.to_bytes(8, "little")
        f.write(block)
        h.update(block)
run = runsync.init(dir=root)
before_rss, before_peak = rss_now(), peak()
# The peak *during* save() and finish(), sampled: the lifetime high-water mark (ru_maxrss) would also
# count whatever happened before save(), which is not what is measured here.
import threading
samples, done = [before_rss], threading.Event()
def sample():
    while not done.is_set():
        samples.append(rss_now())
        done.wait(0.002)
sampler = threading.Thread(target=sample)
sampler.start()
names = run.save("big.ckpt", base_path=base)
run.finish()
done.set()
sampler.join()
after_peak = max(samples)
print(json.dumps({"sha256": h.hexdigest(), "run_dir": str(run.dir), "names": names, "before_rss": before_rss,
                  "before_peak": before_peak, "after_peak": after_peak}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="measures RSS through /proc")
def test_saving_a_200_mb_file_keeps_memory_bounded(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "big"
    base.mkdir()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_BIG_CHILD), str(root), str(base), str(BIG_MB)],
                          env={**env_without_runsync(), "RUNSYNC_SILENT": "1"}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # Growth of the peak over the memory in use just before save(): conservative (an earlier, higher peak
    # cannot hide growth), and the kernel's high-water mark cannot miss a short spike.
    growth = got["after_peak"] - got["before_rss"]
    assert growth < MEMORY_BOUND, f"save() of {BIG_MB} MB grew the peak RSS by {growth / 2**20:.1f} MiB"
    assert got["names"] == ["big.ckpt"]
    run_dir, sha = Path(got["run_dir"]), got["sha256"]
    obj = run_dir / "files" / "sha256" / sha[:2] / sha
    assert _objects(run_dir) == [obj], "the object exists once, and no temp file is left"
    assert obj.stat().st_size == BIG_MB << 20
    assert _sha_file(obj) == sha
    view = runsync.open_run(run_dir)
    assert view.status == "finished"
    [entry] = view.files(versions=True)  # type: ignore[misc]
    assert (entry.name, entry.sha256, entry.size) == ("big.ckpt", sha, BIG_MB << 20)
    assert view.file_path("big.ckpt") == obj


# -- pushed to a remote, and pulled back -----------------------------------------------------------------


@pytest.fixture
def pushed(root: Path, tmp_path: Path) -> dict[str, Any]:
    """Two finished runs sharing one saved file's content, pushed to a local remote."""
    base = tmp_path / "w"
    shared, own = os.urandom(5000), b"only in run one"
    _write(base / "shared.bin", shared)
    _write(base / "sub" / "own.txt", own)
    with runsync.init(dir=root) as one:
        one.save("**/*", base_path=base)
        one.log({"loss": 1.0})
    with runsync.init(dir=root) as two:
        two.save("shared.bin", base_path=base)
    remote_dir = tmp_path / "remote"
    res = push(root, Remote(str(remote_dir)))
    assert not res.failures and res.runs_pushed == 2
    return {"remote": remote_dir, "ids": (one.id, two.id), "files": {"shared.bin": shared, "sub/own.txt": own}}


def test_pushed_saved_files_are_content_addressed_blobs(pushed: dict[str, Any]) -> None:
    remote_dir: Path = pushed["remote"]
    blobs = remote_dir / ".runsync" / "blobs" / "sha256"
    for data in pushed["files"].values():
        sha = _sha(data)
        assert (blobs / sha[:2] / sha).read_bytes() == data
    shared = _sha(pushed["files"]["shared.bin"])
    assert len(list(blobs.rglob(shared))) == 1, "content shared by two runs is one blob"
    for run_id in pushed["ids"]:
        assert not (remote_dir / run_id / "files").exists(), "a pushed run directory holds no saved file (§12.1.1)"
        manifest = json.loads((remote_dir / run_id / "manifest.json").read_text())
        assert f"files/sha256/{shared[:2]}/{shared}" in manifest["files"]
    res = verify(Remote(str(remote_dir)))
    assert res.ok and res.runs == 2, res.as_dict()
    # the remote copy names the same files (files.json is at its run path after a run's first commit)
    view = runsync.open_run(remote_dir / pushed["ids"][0])
    assert {n: e.sha256 for n, e in view.files().items()} == {  # type: ignore[union-attr]
        n: _sha(d) for n, d in pushed["files"].items()}


def test_pulled_saved_files_are_byte_identical(pushed: dict[str, Any], root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "pulled"
    res = pull(Remote(str(pushed["remote"])), dest)
    assert not res.failures and res.runs == 2
    for run_id in pushed["ids"]:
        src, got = root / run_id, dest / run_id
        assert {p.relative_to(got): p.read_bytes() for p in _objects(got)} == \
            {p.relative_to(src): p.read_bytes() for p in _objects(src)}
    view = runsync.open_run(dest / pushed["ids"][0])
    for name, data in pushed["files"].items():
        assert _stored(view, name) == data


def test_file_path_of_a_pushed_copy_opened_in_place_reads_the_bytes(pushed: dict[str, Any]) -> None:
    view = runsync.open_run(pushed["remote"] / pushed["ids"][0])
    for name, data in pushed["files"].items():
        assert _stored(view, name) == data
