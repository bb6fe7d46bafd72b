"""The runs table: records (and their stat-validated index), runsync.runs(where=, sort=), `runsync runs`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

import runsync
from runsync import cli
from runsync.cli import runs as runs_cli
from runsync.format.liveness import host_identity
from runsync.format.meta import dump_json
from runsync.reader import index
from runsync.reader.query import QueryError
from runsync.reader.run import RunView
from runsync.reader.runs import COLUMNS, run_records, select_records, sort_records

GOLDEN = Path(__file__).resolve().parent.parent / "spec" / "testdata" / "v1.0" / "golden-run"
NOW = time.time()
DEAD_PID = (1 << 22) + 12345  # above Linux's largest pid_max: never a live process


# -- synthetic runs: the JSON documents of spec §3 and §7, written directly --------------------------


def write_run(root: Path, rid: str, *, state: str = "finished", config: dict[str, Any] | None = None,
              summary: dict[str, Any] | None = None, name: str | None = None, tags: list[str] | None = None,
              group: str | None = None, created: float | None = None, streams: tuple[str, ...] = ("main",),
              last_step: int = 9, incarnations: int = 1, status: bool = True, summary_time: float | None = None,
              ) -> Path:
    """``state``: finished | failed | running (this process) | crashed-here (dead pid) | crashed-other
    (another host, old heartbeat) | live-other (another host, fresh heartbeat)."""
    d = root / rid
    (d / "history").mkdir(parents=True)
    created = NOW - 3600 if created is None else created
    (d / "run.json").write_bytes(dump_json({
        "id": rid, "name": name or f"run-{rid}", "project": "proj", "created": created, "group": group,
        "job_type": None, "tags": tags or [], "notes": None, "format": "1.1"}))
    host, boot = host_identity()
    me = psutil.Process()
    for i, s in enumerate(streams):
        sd = d / "streams" / s
        sd.mkdir(parents=True)
        if state == "running":
            c_host, c_boot, pid, pid_start, beat = host, boot, me.pid, me.create_time(), NOW
        elif state == "crashed-here":
            c_host, c_boot, pid, pid_start, beat = host, boot, DEAD_PID, created, created + 50
        elif state == "live-other":
            c_host, c_boot, pid, pid_start, beat = "elsewhere", "boot-x", 1234, created, time.time()
        else:
            c_host, c_boot, pid, pid_start, beat = "elsewhere", "boot-x", 1234, created, created + 100 + i
        for inc in range(incarnations):
            (sd / f"claim.{inc:06d}.json").write_bytes(dump_json({
                "stream": s, "incarnation": inc, "host": c_host, "boot_id": c_boot, "pid": pid,
                "pid_start": pid_start, "time": created + 1 + i + inc, "first_seq": 0, "heartbeat_interval": 5.0,
                "time_floor": -math.inf, "format": "1.1"}))
        final = state in ("finished", "failed")
        if status:
            (sd / "status.json").write_bytes(dump_json({
                "stream": s, "incarnation": incarnations - 1, "state": state if final else "running",
                "host": c_host, "boot_id": c_boot, "pid": pid, "pid_start": pid_start, "started": created + 1 + i,
                "heartbeat": beat, "heartbeat_interval": 5.0, "ended": beat if final else None,
                "exit_code": (0 if state == "finished" else 1) if final else None, "last_seq": last_step + 1,
                "last_step": last_step + i, "dropped_rows": 0, "error": None, "format": "1.1"}))
        if config is not None:
            (sd / "config.json").write_bytes(dump_json({"config": config, "applied_seq": 0, "format": "1.1"}))
        if summary is not None:
            t = summary_time if summary_time is not None else created + 10 + i
            (sd / "summary.json").write_bytes(dump_json({
                "values": summary, "manual": [], "time": {k: t for k in summary}, "applied_seq": last_step + 1,
                "format": "1.1"}))
    return d


def reference_record(d: Path) -> dict[str, Any]:
    """A run's record computed through RunView, as run_records() did before the index."""
    view = RunView(d)
    meta = view.meta
    streams = meta["streams"]
    rec: dict[str, Any] = {
        "id": view.info.id, "name": view.info.name, "project": view.info.project, "group": view.info.group,
        "job_type": view.info.job_type, "tags": list(view.info.tags), "status": meta["status"],
        "created": view.info.created, "start": meta["started"], "duration": meta["duration"],
        "steps": max([s.get("last_step", -1) for s in streams] + [-1]) + 1, "streams": len(streams),
        "error": next((s["error"] for s in streams if s["state"] == "failed" and s.get("error")), None),
        "path": str(d),
    }
    config, summary = view.documents()
    rec.update(index.flatten_dict(config, "config."))
    rec.update(index.flatten_dict(summary, "summary."))
    return rec


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@pytest.fixture
def no_racy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test are trusted to the index at once (the racy window is for real clocks)."""
    monkeypatch.setattr(index, "RACY_SECONDS", -1.0)


@pytest.fixture
def variety(root: Path, fast: runsync.Settings) -> Path:
    """Runs in every state the record builder distinguishes, golden runs and real writer runs."""
    write_run(root, "fin", config={"lr": 0.1, "opt": {"name": "adam", "beta": [0.9, 0.99]}, "empty": {}},
              summary={"loss": 0.5, "acc": math.nan, "note": "ok"}, tags=["a", "b"], group="g1")
    write_run(root, "fail", state="failed", config={"lr": 0.2}, summary={"loss": 0.9})
    write_run(root, "run", state="running", config={"lr": 0.3}, summary={"loss": 1.5})
    write_run(root, "crhere", state="crashed-here", summary={"loss": 2.0})
    write_run(root, "crother", state="crashed-other")
    write_run(root, "liveother", state="live-other")
    write_run(root, "two", streams=("main", "rank1"), config={"lr": 0.4, "opt": {"name": "sgd"}},
              summary={"loss": 0.25, "extra": 1})
    write_run(root, "incs", incarnations=3, summary={"loss": 3.0})
    write_run(root, "nostatus", status=False, summary={"x": 1})
    write_run(root, "nostream", streams=())
    shutil.copytree(GOLDEN / "golden01", root / "golden01")
    shutil.copytree(GOLDEN / "golden02", root / "golden02")  # crashed: config and summary still in its WAL
    with runsync.init(dir=root, id="real1", config={"lr": 1e-3}, settings=fast) as run:
        for i in range(20):
            run.log({"loss": 1 / (i + 1)})
        run.summary["best"] = 7
    (root / "notarun").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    return root


# -- records --------------------------------------------------------------------------------------


def test_records_equal_the_runview_records(variety: Path) -> None:
    for cache in (False, True, True):
        records, errors = run_records(variety, cache=cache)
        assert [p.name for p, _e in errors] == ["broken"]
        by_id = {r["id"]: r for r in records}
        assert sorted(by_id) == sorted(["fin", "fail", "run", "crhere", "crother", "liveother", "two", "incs",
                                        "nostatus", "nostream", "golden01", "golden02", "real1"])
        for rid, rec in by_id.items():
            assert same(rec, reference_record(variety / rid)), rid
    status = {r["id"]: r["status"] for r in records}
    assert status == {"fin": "finished", "fail": "failed", "run": "running", "crhere": "crashed",
                      "crother": "crashed", "liveother": "running", "two": "finished", "incs": "finished",
                      "nostatus": "crashed", "nostream": "crashed", "golden01": "finished", "golden02": "crashed",
                      "real1": "finished"}
    g2 = by_id["golden02"]
    assert any(k.startswith("summary.") for k in g2) and any(k.startswith("config.") for k in g2)


def test_a_malformed_document_skips_only_its_run(root: Path) -> None:
    write_run(root, "good", summary={"loss": 1.0})
    bad = write_run(root, "bad", summary={"loss": 1.0})
    (bad / "streams" / "main" / "summary.json").write_text('{"values": [1, 2], "format": "1.1"}')
    recs, errs = run_records(root, cache=False)
    assert [r["id"] for r in recs] == ["good"]
    assert [p.name for p, _e in errs] == ["bad"] and "malformed document" in errs[0][1]


def test_two_streams_merge_as_the_spec_says(root: Path) -> None:
    write_run(root, "two", streams=("main", "rank1"), config={"lr": 0.4, "opt": {"name": "sgd", "m": 0.9}},
              summary={"loss": 0.25})
    (rec,), _ = run_records(root)
    assert rec["streams"] == 2 and rec["steps"] == 11  # rank1's last_step is 10
    assert rec["config.opt.name"] == "sgd" and rec["summary.loss"] == 0.25


# -- runsync.runs() -------------------------------------------------------------------------------


@pytest.fixture
def table(root: Path) -> Path:
    for i, (opt, loss, state) in enumerate([("adam", 0.3, "finished"), ("sgd", 0.1, "finished"),
                                            ("adam", None, "failed"), ("sgd", 0.05, "crashed-other"),
                                            ("adam", 0.2, "finished")]):
        write_run(root, f"r{i}", state=state, created=NOW - 1000 + i, config={"opt": {"name": opt}, "bs": 32 * i},
                  summary={} if loss is None else {"loss": loss, "val/acc": 1 - loss}, tags=["t"] if i % 2 else [],
                  group="even" if i % 2 == 0 else None, name=f"name-{4 - i}")
    return root


def test_runs_dataframe(table: Path) -> None:
    df = runsync.runs(table)
    assert list(df["id"]) == ["r4", "r3", "r2", "r1", "r0"]  # newest first
    assert str(df["created"].dtype) == "datetime64[ns, UTC]" or "datetime64" in str(df["created"].dtype)
    df = runsync.runs(table, where="status = finished and summary.loss < 0.25", sort="summary.loss")
    assert list(df["id"]) == ["r1", "r4"]
    df = runsync.runs(table, where="config.opt.name = adam", sort=["-summary.loss"])
    assert list(df["id"]) == ["r0", "r4", "r2"]  # no loss: last
    df = runsync.runs(table, sort=["config.opt.name", "-created"])
    assert list(df["id"]) == ["r4", "r2", "r0", "r3", "r1"]
    assert runsync.runs(table, where="name ~ nothing-matches").empty
    with pytest.raises(QueryError, match="did you mean 'summary.loss'"):
        runsync.runs(table, where="sumary.loss < 1")
    with pytest.raises(QueryError, match="unknown sort column 'sumary.loss'; did you mean 'summary.loss'"):
        runsync.runs(table, sort="-sumary.loss")


def test_runs_of_an_empty_or_missing_dir(tmp_path: Path) -> None:
    assert runsync.runs(tmp_path).empty
    assert runsync.runs(tmp_path, where="config.anything = 1").empty  # no runs: no columns to check against
    assert runsync.runs(tmp_path / "nope").empty


def test_sort_puts_nulls_last_both_ways() -> None:
    recs = [{"id": "a", "x": 2}, {"id": "b"}, {"id": "c", "x": math.nan}, {"id": "d", "x": 1}, {"id": "e", "x": "s"},
            {"id": "f", "x": None}, {"id": "g", "x": 1}]
    assert [r["id"] for r in sort_records(recs, "x")] == ["d", "g", "a", "e", "b", "c", "f"]
    assert [r["id"] for r in sort_records(recs, "-x")] == ["e", "a", "d", "g", "b", "c", "f"]
    assert [r["id"] for r in sort_records(recs, ["-x", "-id"])] == ["e", "a", "g", "d", "f", "c", "b"]


# -- the index ------------------------------------------------------------------------------------


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []
    real = index.build_record

    def counting(run_dir: Path, *a: Any, **kw: Any) -> Any:
        built.append(run_dir.name)
        return real(run_dir, *a, **kw)

    monkeypatch.setattr(index, "build_record", counting)
    return built


def test_index_is_reused_and_revalidated(table: Path, no_racy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_builds(monkeypatch)
    first, _ = run_records(table)
    assert (table / index.INDEX_PATH).is_file()
    assert len(built) == 5
    built.clear()
    again, _ = run_records(table)
    assert built == [] and same(again, first)

    # a document replaced (as writers do: temp file + rename)
    d = table / "r1" / "streams" / "main"
    doc = json.loads((d / "summary.json").read_text())
    doc["values"]["loss"] = 0.01
    (d / ".tmp").write_bytes(dump_json(doc))
    os.replace(d / ".tmp", d / "summary.json")
    recs, _ = run_records(table)
    assert built == ["r1"] and {r["id"]: r.get("summary.loss") for r in recs}["r1"] == 0.01
    built.clear()

    # a document rewritten in place, same size
    cfg = (d / "config.json").read_text()
    (d / "config.json").write_text(cfg.replace('"sgd"', '"SGD"'))
    os.utime(d / "config.json", ns=(1, 1))
    recs, _ = run_records(table)
    assert built == ["r1"] and {r["id"]: r.get("config.opt.name") for r in recs}["r1"] == "SGD"
    built.clear()

    # a new stream, a new run, a removed run
    write_run(table, "tmp", summary={"loss": 9.0})
    shutil.move(str(table / "tmp" / "streams" / "main"), str(table / "r2" / "streams" / "rank7"))
    shutil.rmtree(table / "tmp")
    write_run(table, "r9", summary={"loss": 0.5})
    shutil.rmtree(table / "r0")
    recs, _ = run_records(table)
    assert sorted(built) == ["r2", "r9"]
    ids = {r["id"]: r for r in recs}
    assert sorted(ids) == ["r1", "r2", "r3", "r4", "r9"] and ids["r2"]["streams"] == 2
    assert same(recs, run_records(table, cache=False)[0])
    stored = json.loads((table / index.INDEX_PATH).read_text())
    assert sorted(stored["runs"]) == ["r1", "r2", "r3", "r4", "r9"]


def test_recent_files_are_not_trusted_to_the_index(table: Path) -> None:
    run_records(table)  # default racy window: everything was just written
    stored = json.loads((table / index.INDEX_PATH).read_text()) if (table / index.INDEX_PATH).exists() else {}
    assert stored.get("runs", {}) == {}


def test_running_runs_are_never_stored(root: Path, no_racy: None) -> None:
    write_run(root, "live", state="running")
    write_run(root, "done")
    recs, _ = run_records(root)
    assert {r["id"]: r["status"] for r in recs} == {"live": "running", "done": "finished"}
    assert sorted(json.loads((root / index.INDEX_PATH).read_text())["runs"]) == ["done"]


def test_liveness_is_recomputed_from_a_stored_record(root: Path, no_racy: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An index built on one host is read on the writer's host: the stored 'crashed' must not stick."""
    write_run(root, "x", state="crashed-other", summary={"loss": 1.0})
    d = root / "x" / "streams" / "main"
    claim = json.loads((d / "claim.000000.json").read_text())
    me = psutil.Process()
    for f in ("claim.000000.json", "status.json"):
        doc = json.loads((d / f).read_text())
        doc.update(pid=me.pid, pid_start=me.create_time())
        (d / f).write_bytes(dump_json(doc))
    recs, _ = run_records(root)
    assert recs[0]["status"] == "crashed"  # another host, old heartbeat
    assert json.loads((root / index.INDEX_PATH).read_text())["runs"]["x"]["liveness"] is True
    # now read "on the writer's host": same host and boot as the claim, and its pid is alive
    from runsync.format import liveness

    monkeypatch.setattr(liveness, "host_identity", lambda: (claim["host"], claim["boot_id"]))
    recs, _ = run_records(root)
    assert recs[0]["status"] == "running" and recs[0]["summary.loss"] == 1.0


def test_index_is_never_required(table: Path, no_racy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    expected, _ = run_records(table, cache=False)
    assert not (table / ".runsync").exists()  # cache=False writes nothing
    (table / ".runsync").write_text("a file where the index directory would go")
    assert same(run_records(table)[0], expected)
    (table / ".runsync").unlink()
    (table / index.INDEX_PATH).parent.mkdir(parents=True)
    (table / index.INDEX_PATH).write_text("{corrupt")
    assert same(run_records(table)[0], expected)
    assert json.loads((table / index.INDEX_PATH).read_text())["version"] == index.INDEX_VERSION

    def refuse(*a: Any, **kw: Any) -> None:
        raise PermissionError(13, "read-only file system")

    shutil.rmtree(table / ".runsync")
    monkeypatch.setattr(index, "write_atomic", refuse)
    assert same(run_records(table)[0], expected)
    assert not (table / index.INDEX_PATH).exists()


def test_index_from_another_version_is_ignored(table: Path, no_racy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    run_records(table)
    data = json.loads((table / index.INDEX_PATH).read_text())
    data["version"] = index.INDEX_VERSION + 100
    for e in data["runs"].values():
        e["record"]["status"] = "bogus"
    (table / index.INDEX_PATH).write_text(json.dumps(data))
    built = _count_builds(monkeypatch)
    recs, _ = run_records(table)
    assert len(built) == 5 and all(r["status"] != "bogus" for r in recs)


def test_many_runs_build_in_parallel(root: Path, no_racy: None) -> None:
    for i in range(index._PARALLEL_MIN + 5):
        write_run(root, f"p{i:03d}", summary={"i": i})
    recs, errs = run_records(root)
    assert not errs and [r["summary.i"] for r in recs] == list(range(index._PARALLEL_MIN + 5))
    assert same(recs, run_records(root, cache=False)[0])


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> Any:
    from runsync.cli import watch

    mods = tuple(m for m in cli._MODULES if m not in (runs_cli, watch)) + (runs_cli, watch)
    monkeypatch.setattr(cli, "_MODULES", mods)
    return cli.main


def run_cli(main: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_table(table: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(main, capsys, "runs", str(table), "--where", "status != failed", "--sort",
                             "-summary.loss", "--width", "0")
    assert code == 0 and err == ""
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:6] == ["name", "id", "status", "created", "duration", "steps"]
    assert "summary.loss" in header and "config.opt.name" in header and "tags" in header
    assert [ln.split()[1] for ln in lines[1:]] == ["r0", "r4", "r1", "r3"]
    # numbers are right-aligned under their header
    col = lines[0].index("summary.loss") + len("summary.loss")
    assert all(ln[col - 1] != " " for ln in lines[1:])


def test_cli_where_on_a_column_no_selected_run_has(table: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(main, capsys, "runs", str(table), "--where", "summary.loss is null", "--width", "0")
    assert code == 0, err
    assert [ln.split()[1] for ln in out.splitlines()[1:]] == ["r2"]


def test_cli_width_and_truncation(root: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(root, "w1", name="a-very-long-run-name-" * 4, config={"path": "/x" * 50, "k": 1},
              summary={"some/long/metric/name": 1.5})
    write_run(root, "w2", config={"path": "/y", "k": 2}, summary={"some/long/metric/name": 2.5})
    code, out, _ = run_cli(main, capsys, "runs", str(root), "--width", "72")
    assert code == 0
    assert all(len(ln) <= 72 for ln in out.splitlines()), out
    assert "…" in out and "w1" in out and "w2" in out
    code, out, _ = run_cli(main, capsys, "runs", str(root), "--width", "0", "--max-width", "0")
    assert "a-very-long-run-name-" * 4 in out


def test_cli_group(table: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(main, capsys, "runs", str(table), "--group", "config.opt.name", "--sort", "summary.loss",
                           "--limit", "2", "--width", "0")
    assert code == 0
    lines = out.splitlines()
    titles = [ln for ln in lines if ln.startswith("──")]
    assert titles == ["── config.opt.name = adam  (3 runs, showing 2)", "── config.opt.name = sgd  (2 runs)"]
    body = [ln.split()[1] for ln in lines[1:] if ln and not ln.startswith("──")]
    assert body == ["r4", "r0", "r3", "r1"]
    assert "config.opt.name" not in lines[0]
    code, out, _ = run_cli(main, capsys, "runs", str(table), "--group", "group", "--json")
    data = json.loads(out)
    assert data["groups"] == [{"value": "even", "count": 3, "shown": 3}, {"value": None, "count": 2, "shown": 2}]


def test_cli_csv(table: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(main, capsys, "runs", str(table), "--csv", "--sort=-summary.loss")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ["r0", "r4", "r1", "r3", "r2"]
    assert rows[0]["summary.loss"] == "0.3" and rows[-1]["summary.loss"] == ""
    assert rows[0]["created"].endswith("+00:00") and "T" in rows[0]["created"]
    assert rows[1]["tags"] == "[]" and rows[3]["tags"] == '["t"]'
    assert pd.read_csv(io.StringIO(out)).shape == (5, len(rows[0]))
    code, out, _ = run_cli(main, capsys, "runs", str(table), "--csv", "--columns", "id,config.*")
    assert out.splitlines()[0] == "id,config.bs,config.opt.name"


def test_cli_json(table: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(main, capsys, "runs", str(table), "--json", "--where", "tags contains t",
                           "--columns", "id,tags,summary.val/acc")
    assert code == 0
    data = json.loads(out)
    assert data["columns"] == ["id", "tags", "summary.val/acc"]
    assert data["runs"] == [{"id": "r3", "tags": ["t"], "summary.val/acc": 0.95},
                            {"id": "r1", "tags": ["t"], "summary.val/acc": 0.9}]
    assert data["errors"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "sumary.loss < 0.1"], ("unknown column 'sumary.loss'; did you mean 'summary.loss'?\n"
                                           "  sumary.loss < 0.1\n  ^")),
        (["--where", "summary.loss < "], "expected a value"),
        (["--sort", "-sumary.loss"], "unknown sort column 'sumary.loss'; did you mean 'summary.loss'?"),
        (["--group", "config.opt.nme"], "unknown --group column 'config.opt.nme'; did you mean 'config.opt.name'?"),
        (["--columns", "id,stauts"], "unknown column in --columns 'stauts'; did you mean 'status'?"),
        (["--columns", "nothing.*"], "no column matches 'nothing.*'"),
    ],
)
def test_cli_errors(table: Path, main: Any, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = run_cli(main, capsys, "runs", str(table), *args)
    assert code == 1 and out == ""
    assert err.startswith("runsync: error: ") and message in err, err


def test_cli_missing_dir_and_unreadable_runs(root: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(main, capsys, "runs", str(root / "nope"))
    assert code == 1 and "no runs directory" in err
    code, out, _ = run_cli(main, capsys, "runs", str(root))
    assert code == 0 and "(no runs in" in out
    write_run(root, "ok")
    (root / "bad").mkdir()
    (root / "bad" / "run.json").write_text("[]")
    code, out, err = run_cli(main, capsys, "runs", str(root), "--width", "0")
    assert code == 1 and "ok" in out and "runsync: skipped" in err and "bad" in err


def test_cli_help_has_examples(main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["runs", "--help"])
    out = capsys.readouterr().out
    assert '--where "status = finished and summary.loss < 0.1"' in out and "--sort -summary.val/acc" in out
    with pytest.raises(SystemExit):
        main(["sql", "--help"])
    assert "history_raw" in capsys.readouterr().out


def test_register_on_a_fresh_parser() -> None:
    p = argparse.ArgumentParser(prog="runsync")
    sub = p.add_subparsers(dest="command")
    runs_cli.register(sub)
    args = p.parse_args(["runs", "d", "--sort", "-summary.loss", "--sort", "name", "--limit", "3"])
    assert args.sort == ["-summary.loss", "name"] and args.limit == 3 and args.dir == "d"


def test_select_records_returns_known_columns(table: Path) -> None:
    recs, errs, known = select_records(table, where="summary.loss > 0.1")
    assert [r["id"] for r in recs] == ["r4", "r0"] and errs == []
    assert known[:13] == list(COLUMNS) and "config.opt.name" in known
