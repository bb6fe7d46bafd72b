"""A full filesystem: training keeps going, the problem is reported once, and what is on disk is sound.

Uses a real, small tmpfs (needs root / CAP_SYS_ADMIN; skipped otherwise) and a
real writer subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import runsync
from conftest import env_without_runsync

# Small WAL segments (64 KiB): a spare segment then fails to allocate only once the disk is
# fuller than any history part could fit, so the report does not flap (test_full_disk_report_does_not_flap).
SEGMENT = 64 << 10

# The writer: logs 3 keys per step (one an incompressible 200-char string) until the
# filesystem is nearly full, keeps logging AFTER seconds more, optionally waits for the
# test to free space (stdin "freed"), then finishes. Prints its step count as JSON.
CHILD = textwrap.dedent(
    """
    import hashlib, json, os, select, sys, time
    import runsync

    root, after, wait_free = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
    settings = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5,
                                segment_size=%d)

    def note(step):
        return hashlib.shake_256(str(step).encode()).hexdigest(100)

    def free():
        st = os.statvfs(root)
        return st.f_bavail * st.f_frsize

    run = runsync.init(id="diskrun", dir=root, settings=settings)
    step, full_at, freed_at, said_full = 0, None, None, False
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        run.log({"loss": float(step), "n": step, "note": note(step)})
        step += 1
        if step %% 100:
            continue
        time.sleep(0.005)  # ~15k steps/s at most: bounded memory while the disk is full
        now = time.monotonic()
        if full_at is None and free() < 2 * settings.segment_size:
            full_at = now
        if full_at is None or now - full_at < after:
            continue
        if not wait_free:
            break
        if freed_at is None:
            if not said_full:
                print("full", flush=True)
                said_full = True
            if select.select([sys.stdin], [], [], 0)[0]:
                sys.stdin.readline()
                freed_at = now
        elif now - freed_at > 1.0:
            break
    run.finish()
    print(json.dumps({"steps": step, "full": full_at is not None}), flush=True)
    """
    % SEGMENT
)


def note(step: int) -> str:
    return hashlib.shake_256(str(step).encode()).hexdigest(100)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a full disk (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _start(root: Path, after: float, wait_free: bool) -> subprocess.Popen:
    env = env_without_runsync()  # not silent: the warnings are what we check
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(after), "1" if wait_free else "0"],
                            env=env, cwd=root.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _check_files(run_dir: Path) -> None:
    """Every file is a known kind and parses; no temporary leftovers."""
    allowed = [
        r"run\.json",
        r"history/main\.\d{12}-\d{12}\.parquet",
        r"streams/main/(claim\.\d{6}\.json|status\.json|summary\.json|config\.json|wal\.\d{6}\.\d{6})",
    ]
    for p in run_dir.rglob("*"):
        if p.is_dir():
            continue
        rel = str(p.relative_to(run_dir))
        assert any(re.fullmatch(a, rel) for a in allowed), f"unexpected file {rel}"
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".parquet":
            pq.read_table(p)


def _check_rows(run_dir: Path) -> dict[str, list[int]]:
    """Every stored row has the value logged at its step; returns the steps per key."""
    rows = runsync.open_run(run_dir).rows().to_pylist()
    steps: dict[str, list[int]] = {"loss": [], "n": [], "note": []}
    seen = set()
    for r in rows:
        assert (r["key"], r["seq"]) not in seen, f"row stored twice: {r}"
        seen.add((r["key"], r["seq"]))
        s = r["step"]
        if r["key"] == "loss":
            assert r["value"] == float(s)
        elif r["key"] == "n":
            assert r["int"] == s
        elif r["key"] == "note":
            assert r["text"] == note(s)
        else:
            raise AssertionError(f"unexpected key in {r}")
        steps[r["key"]].append(s)
    for k in steps:
        steps[k].sort()
    return steps


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line]


def test_full_disk_keeps_training_alive_and_reports_once(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "3m") as mnt:
        proc = _start(mnt, after=3.0, wait_free=False)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, f"training crashed:\n{err[-3000:]}"
        result = json.loads(out.strip().splitlines()[-1])
        assert result["full"], "the test never filled the filesystem"

        full_lines = [line for line in err.splitlines() if "filesystem is full" in line]
        assert len(full_lines) == 1, err
        assert "No space left" in full_lines[0] or "errno 28" in full_lines[0].lower()
        assert len(_warnings(err)) <= 4, f"too many warnings:\n{err}"
        assert len(err.splitlines()) <= 8, f"stderr is flooded ({len(err.splitlines())} lines)"

        run_dir = mnt / "diskrun"
        _check_files(run_dir)
        steps = _check_rows(run_dir)
        made_it = len(steps["n"])
        assert made_it > 1000, "rows written before the disk filled must be readable"
        # what made it is the same steps for every key of a log() call, without duplicates
        assert steps["loss"] == steps["n"] == steps["note"]
        assert len(set(steps["n"])) == made_it


def test_full_disk_then_freed_space_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "16m") as mnt:
        ballast = mnt / "ballast"
        room = 1 << 20  # leave ~1 MiB for the run: it fills within a second or so
        st = os.statvfs(mnt)
        with open(ballast, "wb") as f:
            f.write(os.urandom(st.f_bavail * st.f_frsize - room))
        proc = _start(mnt, after=1.5, wait_free=True)
        try:
            deadline = time.monotonic() + 45
            line = ""
            while time.monotonic() < deadline:
                ready = select.select([proc.stdout], [], [], 1.0)[0]
                if ready:
                    line = proc.stdout.readline()
                    break
                if proc.poll() is not None:
                    break
            assert line.strip() == "full", f"writer did not report a full disk: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
            ballast.unlink()
            proc.stdin.write("freed\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, f"training crashed:\n{err[-3000:]}"
        result = json.loads(out.strip().splitlines()[-1])
        n = result["steps"]

        full_lines = [line for line in err.splitlines() if "filesystem is full" in line]
        assert len(full_lines) == 1, err
        assert len(_warnings(err)) <= 3, f"too many warnings:\n{err}"
        assert "writing works again" in err, err
        assert "could not write the last history part" not in err, err

        run_dir = mnt / "diskrun"
        _check_files(run_dir)
        view = runsync.open_run(run_dir)
        assert view.status == "finished"
        steps = _check_rows(run_dir)
        for k in ("loss", "n", "note"):
            assert steps[k] == list(range(n)), f"{k}: {len(steps[k])} of {n} steps stored"
        assert not list((run_dir / "streams" / "main").glob("wal.*")), "a finished run keeps no WAL"
        status = json.loads((run_dir / "streams" / "main" / "status.json").read_text())
        assert status["dropped_rows"] == 0


def test_rows_lost_to_a_full_disk_are_accounted_for(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "3m") as mnt:
        proc = _start(mnt, after=3.0, wait_free=False)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        logged_steps = json.loads(out.strip().splitlines()[-1])["steps"]
        run_dir = mnt / "diskrun"
        stored_steps = len(_check_rows(run_dir)["n"])
        lost_rows = 3 * (logged_steps - stored_steps)
        assert lost_rows > 0, "the scenario should lose the rows logged while the disk was full"
        status = json.loads((run_dir / "streams" / "main" / "status.json").read_text())
        stream = runsync.open_run(run_dir).streams()[0]
        assert status["dropped_rows"] == lost_rows == stream["dropped_rows"], (
            f"{lost_rows} rows were logged but are not stored; the run reports dropped_rows={status['dropped_rows']}, "
            f"state={status['state']!r}, stderr:\n{err}")


FLAP_CHILD = textwrap.dedent(
    """
    import os, sys, time, runsync
    root = sys.argv[1]
    settings = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5,
                                segment_size=256 << 10)
    run = runsync.init(id="flap", dir=root, settings=settings)
    time.sleep(0.5)  # the flusher has allocated its spare segment
    st = os.statvfs(root)
    with open(os.path.join(root, "ballast"), "wb") as f:  # leave 160 KiB: < a segment, > a small part
        f.write(b"\\1" * (st.f_bavail * st.f_frsize - (160 << 10)))
    for s in range(7000):  # ~330 KiB of WAL: the writer moves to its spare, a new spare cannot be made
        run.log({"x": float(s)})
    time.sleep(1.0)  # ... while the small part of these rows is written fine
    for s in range(1500):  # ~1.5 MiB of incompressible text: its part cannot be written
        run.log({"blob": os.urandom(1000).hex()})
    time.sleep(1.0)
    os.unlink(os.path.join(root, "ballast"))
    run.finish()
    """
)


def test_full_disk_report_does_not_flap(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "8m") as mnt:
        r = subprocess.run([sys.executable, "-c", FLAP_CHILD, str(mnt)], env=env_without_runsync(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        full_lines = [line for line in r.stderr.splitlines() if "filesystem is full" in line]
        assert len(full_lines) >= 1, r.stderr
        assert len(full_lines) == 1, f"the full disk was reported {len(full_lines)} times:\n{r.stderr}"


RESERVE_CHILD = textwrap.dedent(
    """
    import json, os, sys, time, runsync
    root = sys.argv[1]
    settings = runsync.Settings(flush_interval=0.05, part_interval=60, heartbeat_interval=0.5,
                                segment_size=256 << 10)
    run = runsync.init(id="reserved", dir=root, settings=settings, system=False)
    reserve = os.path.join(root, "reserved", "streams", "main", ".reserve")
    deadline = time.monotonic() + 10
    while not (os.path.exists(reserve) and os.path.getsize(reserve) == 65536) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("reserve", os.path.getsize(reserve), flush=True)
    fd = os.open(os.path.join(root, "ballast"), os.O_WRONLY | os.O_CREAT)
    try:  # every last byte
        while True:
            os.write(fd, b"\\1" * 4096)
    except OSError:
        os.close(fd)
    n = 0
    for n in range(1, 60001):  # through the current segment and the spare (no new spare fits), into memory
        run.log({"x": float(n)})
        if n % 1000 == 0:
            time.sleep(0.01)
    run.finish()
    print("exists", os.path.exists(reserve), flush=True)
    print(json.dumps({"steps": n}), flush=True)
    """
)


def test_final_status_is_written_on_a_disk_that_stays_full(tmp_path: Path) -> None:
    """With no spare segment left to delete and the last part unwritable, the writer's reserve (spec §9.4)
    still makes room for the last status.json: it says how the run ended and how many rows were dropped."""
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        r = subprocess.run([sys.executable, "-c", RESERVE_CHILD, str(mnt)], env=env_without_runsync(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "reserve 65536" in r.stdout, r.stdout
        assert "exists False" in r.stdout, r.stdout
        steps = json.loads(r.stdout.strip().splitlines()[-1])["steps"]
        status = json.loads((mnt / "reserved" / "streams" / "main" / "status.json").read_text())
        assert status["state"] == "finished", (status, r.stderr)
        (mnt / "ballast").unlink()
        stored = runsync.open_run(mnt / "reserved").history()["x"].tolist()
        assert stored == [float(s) for s in range(1, len(stored) + 1)], "the rows kept are the first ones, in order"
        assert 0 < status["dropped_rows"] == steps - len(stored), (status, len(stored), r.stderr)
