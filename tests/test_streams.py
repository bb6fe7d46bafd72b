"""Several writers, one run: streams, claims, resume, and forked children (spec §6)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

import runsync
from conftest import FAST, env_without_runsync

STEPS = 5000


# -- helpers ------------------------------------------------------------------------


def _rank_worker(root: str, run_id: str, rank: int, barrier: mp.synchronize.Barrier, settings: runsync.Settings) -> None:
    """One 'rank' of a distributed job (runs in a spawned process)."""
    os.environ["RUNSYNC_SILENT"] = "1"
    run = runsync.init(id=run_id, dir=root, stream=f"rank{rank}", settings=settings)
    barrier.wait(timeout=60)  # both ranks log at the same time
    for s in range(STEPS):
        run.log({f"rank{rank}/loss": rank + s / STEPS, "shared": float(rank)}, step=s)
        if s % 1000 == 999:
            time.sleep(0.05)  # let the flusher write parts while the other rank writes too
    run.finish()


def _run_py(code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    e = env_without_runsync()
    e["RUNSYNC_SILENT"] = "1"
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under the run dir: (size, mtime_ns, sha256 of the content)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(run_dir))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    """Exit code of a forked child; kill it (and fail) if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} hung for {timeout} s")


def _all_files_parse(run_dir: Path) -> None:
    for p in run_dir.rglob("*"):
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".parquet":
            pq.read_table(p)


# -- tests --------------------------------------------------------------------------


def test_two_ranks_write_one_run_concurrently(root: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    run_id = "ddp-run"
    settings = FAST.with_(segment_size=256 << 10)
    procs = [ctx.Process(target=_rank_worker, args=(str(root), run_id, r, barrier, settings)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0]

    run_dir = root / run_id
    view = runsync.open_run(run_dir)
    assert view.status == "finished"
    streams = view.streams()
    assert [s["stream"] for s in streams] == ["rank0", "rank1"]
    assert all(s["state"] == "finished" for s in streams)

    wide = view.history()  # "shared" is logged by both streams: one row per (stream, step) (spec §4.6)
    assert wide.stream.tolist() == ["rank0"] * STEPS + ["rank1"] * STEPS
    assert wide.step.tolist() == list(range(STEPS)) * 2
    for r in range(2):
        mine = wide[wide.stream == f"rank{r}"]
        assert mine[f"rank{r}/loss"].tolist() == [r + s / STEPS for s in range(STEPS)]
        assert mine[f"rank{1 - r}/loss"].isna().all()
        assert mine["shared"].tolist() == [float(r)] * STEPS
    summary = view.summary
    assert summary["rank0/loss"] == (STEPS - 1) / STEPS
    assert summary["rank1/loss"] == 1 + (STEPS - 1) / STEPS
    assert summary["shared"] == 0.0  # rank0's: the first stream in reader order (spec §3.3)

    # each stream owns its parts; nothing else in history/
    names = [p.name for p in (run_dir / "history").iterdir() if not p.name.startswith(".")]
    assert any(n.startswith("rank0.") for n in names)
    assert any(n.startswith("rank1.") for n in names)
    assert all(n.startswith(("rank0.", "rank1.")) and n.endswith(".parquet") for n in names), names
    for r in range(2):
        for part in (run_dir / "history").glob(f"rank{r}.*.parquet"):
            assert set(pq.read_table(part).column("stream").to_pylist()) == {f"rank{r}"}
    assert not list((run_dir / "streams").glob("*/wal.*")), "finished streams leave no WAL segments"

    df = pd.read_parquet(run_dir / "history")
    assert len(df) == 2 * STEPS * 2
    counts = df.groupby(["stream", "key"]).size().to_dict()
    assert counts == {
        ("rank0", "rank0/loss"): STEPS, ("rank0", "shared"): STEPS,
        ("rank1", "rank1/loss"): STEPS, ("rank1", "shared"): STEPS,
    }
    for r in range(2):
        mine = df[df.stream == f"rank{r}"]
        assert not mine.duplicated(["key", "seq"]).any()  # one seq per log() call, shared by its keys
        assert sorted(mine[mine.key == "shared"].step) == list(range(STEPS))


@pytest.mark.parametrize("rank,world,expected", [("3", "4", "rank3"), ("0", "1", "main")])
def test_rank_env_selects_stream(root: Path, rank: str, world: str, expected: str) -> None:
    r = _run_py(
        f"""
        import runsync
        run = runsync.init(id="envrank", dir={str(root)!r})
        run.log({{"a": 1.0}})
        print(run.stream)
        run.finish()
        """,
        cwd=root,
        env={"RANK": rank, "WORLD_SIZE": world},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected
    run_dir = root / "envrank"
    assert [p.name for p in (run_dir / "streams").iterdir()] == [expected]
    assert list((run_dir / "history").glob(f"{expected}.*.parquet"))
    assert [s["stream"] for s in runsync.open_run(run_dir).streams()] == [expected]


def test_runsync_stream_env_overrides_rank(root: Path) -> None:
    r = _run_py(
        f"""
        import runsync
        with runsync.init(id="envstream", dir={str(root)!r}) as run:
            run.log({{"a": 1.0}})
            print(run.stream)
        """,
        cwd=root,
        env={"RANK": "2", "WORLD_SIZE": "4", "RUNSYNC_STREAM": "evaluator"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "evaluator"
    assert [s["stream"] for s in runsync.open_run(root / "envstream").streams()] == ["evaluator"]


def test_second_live_claim_is_refused_then_resume_succeeds(root: Path) -> None:
    code = f"""
        import sys, runsync
        run = runsync.init(id="claimed", dir={str(root)!r})
        for s in range(100):
            run.log({{"x": float(s)}})
        print("ready", flush=True)
        sys.stdin.readline()
        run.finish()
        print("done", flush=True)
    """
    env = env_without_runsync()
    env["RUNSYNC_SILENT"] = "1"
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "ready", first.stderr.read()
        for resume in (True, False):
            with pytest.raises(runsync.StreamClaimedError) as info:
                runsync.init(id="claimed", dir=root, resume=resume)
            msg = str(info.value)
            assert f"pid {first.pid}" in msg
            assert "another stream" in msg
        assert runsync.open_run(root / "claimed").status == "running"
        # the refused claims left no trace: still one incarnation
        assert sorted(p.name for p in (root / "claimed" / "streams" / "main").glob("claim.*")) == ["claim.000000.json"]

        first.stdin.write("\n")
        first.stdin.flush()
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert out.strip() == "done"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    run = runsync.init(id="claimed", dir=root, resume=True)
    try:
        assert run.step == 100
        run.log({"x": 100.0})
    finally:
        run.finish()
    view = runsync.open_run(root / "claimed")
    assert view.status == "finished"
    assert view.history()["x"].tolist() == [float(s) for s in range(101)]


def test_existing_stream_needs_resume_new_stream_joins(root: Path) -> None:
    with runsync.init(id="joinme", dir=root, project="p") as run:
        run.log({"a": 1.0})
    with pytest.raises(runsync.StreamClaimedError, match=r"resume=True"):
        runsync.init(id="joinme", dir=root)
    with pytest.raises(runsync.StreamClaimedError, match=r"resume=True"):
        runsync.init(id="joinme", dir=root, stream="main")
    with runsync.init(id="joinme", dir=root, stream="eval") as run2:
        assert run2.step == 0
        assert run2.project == "p"
        run2.log({"b": 2.0})
    view = runsync.open_run(root / "joinme")
    assert view.status == "finished"
    assert [s["stream"] for s in view.streams()] == ["eval", "main"]
    wide = view.history()
    assert wide.set_index("step")[["a", "b"]].to_dict("list") == {"a": [1.0], "b": [2.0]}
    assert view.rows().num_rows == 2


def test_resume_with_rewind_later_write_wins(root: Path) -> None:
    with runsync.init(id="rewind", dir=root, config={"lr": 0.1}) as run:
        for s in range(100):
            run.log({"x": s})
        run.summary["best"] = 7
    run = runsync.init(id="rewind", dir=root, resume=True)
    try:
        assert run.step == 100
        assert run.config["lr"] == 0.1  # config and summary carry over
        assert run.summary["best"] == 7 and run.summary["x"] == 99
        for s in range(50, 80):
            run.log({"x": 1000 + s}, step=s)
        assert run.step == 80
        for s in range(100, 110):
            run.log({"x": 2000 + s}, step=s)
        run.log({"x": 2110})  # default step continues after the last explicit one
        assert run.step == 111
    finally:
        run.finish()

    expected = {s: s for s in range(100)}
    expected.update({s: 1000 + s for s in range(50, 80)})
    expected.update({s: 2000 + s for s in range(100, 111)})

    view = runsync.open_run(run.dir)
    assert view.status == "finished"
    assert view.config == {"lr": 0.1}
    assert view.summary == {"best": 7, "x": 2110}
    assert [s["incarnation"] for s in view.streams()] == [1]
    wide = view.history()
    assert dict(zip(wide.step.tolist(), wide["x"].tolist())) == expected
    assert view.rows().num_rows == 100 + 30 + 11  # every value is stored

    got = duckdb.sql(
        f"""
        select step, int from '{run.dir}/history/*.parquet'
        where key = 'x'
        qualify row_number() over (partition by step, key order by time desc, stream desc, seq desc) = 1
        order by step
        """
    ).fetchall()
    assert dict(got) == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_cannot_log_to_parent_run(root: Path) -> None:
    # Long intervals: the parent's flusher stays idle, so any change to the files is the child's.
    quiet = runsync.Settings(flush_interval=600, part_interval=600, heartbeat_interval=600, segment_size=1 << 20)
    run = runsync.init(id="forked", dir=root, settings=quiet)
    for s in range(50):
        run.log({"x": float(s)})  # the (x: float) fast path is cached
    # The allocator's first round ends with the full-disk reserve (spec §9.4); after it, it sleeps for
    # flush_interval. Snapshot only then, or the parent's own allocation looks like the child's write.
    reserve = run.dir / "streams" / "main" / ".reserve"
    deadline = time.monotonic() + 30
    while not (reserve.exists() and reserve.stat().st_size == 64 << 10) and time.monotonic() < deadline:
        time.sleep(0.01)
    before = _snapshot(run.dir)

    pid = os.fork()
    if pid == 0:  # child: report through the exit code only
        code = 10
        try:
            try:
                run.log({"x": 1.0})  # cached fast path
                code = 11
            except runsync.ForkedRunError:
                try:
                    run.log({"new key": "text"})  # slow path
                    code = 12
                except runsync.ForkedRunError:
                    try:
                        runsync.log({"x": 2.0})  # module-level log, current run
                        code = 13
                    except runsync.ForkedRunError:
                        run.finish()  # a no-op in the child
                        code = 0
        except BaseException:
            code = 14
        os._exit(code)

    assert _wait_child(pid) == 0, "child: 11/12/13 = log did not raise ForkedRunError, 14 = other error"
    assert _snapshot(run.dir) == before, "the forked child changed the run's files"

    for s in range(50, 100):
        run.log({"x": float(s)})
    run.finish()
    _all_files_parse(run.dir)
    view = runsync.open_run(run.dir)
    assert view.status == "finished"
    assert [s["stream"] for s in view.streams()] == ["main"]
    assert view.rows().num_rows == 100
    assert view.history()["x"].tolist() == [float(s) for s in range(100)]
    assert [p.name.split(".")[0] for p in (run.dir / "history").glob("*.parquet")] == ["main"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_can_init_its_own_run(root: Path, fast: runsync.Settings) -> None:
    parent = runsync.init(id="parent", dir=root, settings=fast)
    parent.log({"x": 0.0})

    pid = os.fork()
    if pid == 0:
        code = 10
        try:
            child = runsync.init(id="child", dir=root, settings=fast)
            for s in range(100):
                child.log({"y": float(s)})
            child.summary["who"] = "child"
            child.finish()
            joined = runsync.init(id="parent", dir=root, stream="child", settings=fast)
            joined.log({"z": 1.0}, step=0)
            joined.finish()
            code = 0
        except BaseException:
            code = 11
        os._exit(code)

    assert _wait_child(pid, timeout=60) == 0
    for s in range(1, 10):
        parent.log({"x": float(s)})
    parent.finish()

    child = runsync.open_run(root / "child")
    assert child.status == "finished"
    assert child.history()["y"].tolist() == [float(s) for s in range(100)]
    assert child.summary["who"] == "child"
    assert [s["pid"] for s in child.streams()] == [pid]

    view = runsync.open_run(root / "parent")
    assert view.status == "finished"
    assert [s["stream"] for s in view.streams()] == ["child", "main"]
    wide = view.history()
    assert wide["x"].tolist() == [float(s) for s in range(10)]
    assert wide.set_index("step").loc[0, "z"] == 1.0


def _racer(root: str, barrier: mp.synchronize.Barrier, results: mp.Queue, hold: mp.synchronize.Event) -> None:
    os.environ["RUNSYNC_SILENT"] = "1"
    barrier.wait(timeout=60)
    try:
        run = runsync.init(id="race", dir=root, resume=True)
    except runsync.StreamClaimedError:
        results.put("refused")
        return
    results.put("claimed")
    run.log({"pid": os.getpid()})
    hold.wait(60)  # stay alive until every racer has tried
    run.finish()


def test_simultaneous_claims_exactly_one_wins(root: Path) -> None:
    n = 4
    ctx = mp.get_context("spawn")
    barrier, results, hold = ctx.Barrier(n), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_racer, args=(str(root), barrier, results, hold)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        got = sorted(results.get(timeout=60) for _ in range(n))
    finally:
        hold.set()
        for p in procs:
            p.join(60)
    assert got == ["claimed"] + ["refused"] * (n - 1)
    assert [p.exitcode for p in procs] == [0] * n
    stream = root / "race" / "streams" / "main"
    assert [p.name for p in stream.glob("claim.*")] == ["claim.000000.json"]
    view = runsync.open_run(root / "race")
    assert view.status == "finished"
    assert view.rows().num_rows == 1


def test_claim_published_between_check_and_scan_is_not_skipped(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec §6.1 step 4: a rival's claim that lands after our liveness check must be checked, not jumped over.

    Deterministic form of the race test_simultaneous_claims_exactly_one_wins hits now and then: our
    check finds no claim, a live rival claims incarnation 0, then we scan. Numbering from the scan's
    listing would claim incarnation 1 beside a live writer.
    """
    from runsync.format.layout import RunLayout
    from runsync.format.meta import Claim, publish_doc
    from runsync.writer import claim as claim_mod

    run = RunLayout(root / "race")
    stream = run.stream("main")
    real_scan = claim_mod.scan_stream

    def rival_claims_first(run_: RunLayout, stream_: object) -> claim_mod.StreamHistory:
        if not stream.incarnations():
            me = claim_mod.psutil.Process()
            host, boot = claim_mod.host_identity()
            rival = Claim(stream="main", incarnation=0, host=host, boot_id=boot, pid=me.pid,
                          pid_start=me.create_time(), time=time.time(), first_seq=0, heartbeat_interval=5.0)
            assert publish_doc(rival, stream.claim(0))
        return real_scan(run_, stream_)

    monkeypatch.setattr(claim_mod, "scan_stream", rival_claims_first)
    with pytest.raises(runsync.StreamClaimedError, match="being written by pid"):
        claim_mod.claim_stream(run, stream, "race", resume=True, heartbeat_interval=5.0)
    assert stream.incarnations() == [0]


def test_forked_child_exiting_normally_leaves_parent_run_alone(root: Path) -> None:
    """A plain os.fork() child that returns through atexit (like a worker process) must not finish the run."""
    code = f"""
        import os, sys, time, runsync
        quiet = runsync.Settings(flush_interval=600, part_interval=600, heartbeat_interval=600)
        run = runsync.init(id="forkexit", dir={str(root)!r}, settings=quiet)
        for s in range(10):
            run.log({{"x": float(s)}})
        pid = os.fork()
        if pid == 0:
            try:
                run.log({{"x": -1.0}})
                sys.exit(3)
            except runsync.ForkedRunError:
                pass
            sys.exit(0)  # runs atexit handlers in the child
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        print(runsync.open_run(run.dir).status, flush=True)
        for s in range(10, 20):
            run.log({{"x": float(s)}})
        run.finish()
    """
    r = _run_py(code, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.split() == ["0", "running"], "child must raise ForkedRunError and not end the parent's run"
    view = runsync.open_run(root / "forkexit")
    assert view.status == "finished"
    assert view.history()["x"].tolist() == [float(s) for s in range(20)]
    _all_files_parse(root / "forkexit")
