"""Several ranks in one run keep each rank's series (issue 12; spec §3.3, §4.5, §4.6 since 1.3).

Eight real processes with RANK/WORLD_SIZE set (as torchrun sets them, and as
examples/distributed.py's shared layout does) log ``{"loss": 1/(i+1) + rank,
"rank": rank}`` into one run; every reader surface must keep all eight series.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import runsync
from conftest import env_without_runsync
from runsync.format.history import resolve, to_wide

WORLD = 8
STEPS = 300
RUN_ID = "ranked"

_WORKER = """
import runsync
fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5, segment_size=1 << 20)
run = runsync.init(project="ranks", id={run_id!r}, name={run_id!r}, dir={root!r}, config={{"world": {world}}},
                   settings=fast)
rank = int(__import__("os").environ["RANK"])
for i in range({steps}):
    run.log({{"loss": 1 / (i + 1) + rank, "rank": rank}})
run.finish()
"""


def spawn_ranks(root: Path, run_id: str = RUN_ID, world: int = WORLD, steps: int = STEPS) -> Path:
    """``world`` writer processes at once, RANK=0..world-1, into one run; returns the run directory."""
    code = textwrap.dedent(_WORKER.format(run_id=run_id, root=str(root), world=world, steps=steps))
    procs = []
    for rank in range(world):
        env = env_without_runsync()
        env.update(RANK=str(rank), WORLD_SIZE=str(world), RUNSYNC_SILENT="1")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    return root / run_id


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spawn_ranks(tmp_path_factory.mktemp("ranks") / "runs")


def loss(rank: int, i: int) -> float:
    return 1 / (i + 1) + rank


# -- history() -------------------------------------------------------------------------------------


def test_history_keeps_every_stream(ranked: Path) -> None:
    view = runsync.open_run(ranked)
    df = view.history()
    assert list(df.columns) == ["step", "stream", "time", "loss", "rank"]
    assert len(df) == WORLD * STEPS
    assert df["stream"].tolist() == [f"rank{r}" for r in range(WORLD) for _ in range(STEPS)]
    assert df["step"].tolist() == list(range(STEPS)) * WORLD
    want = [loss(r, i) for r in range(WORLD) for i in range(STEPS)]
    assert df["loss"].tolist() == want  # exact: every (stream, step) value as logged
    assert df["rank"].tolist() == [r for r in range(WORLD) for _ in range(STEPS)]
    assert df["rank"].dtype == pd.Int64Dtype()


def test_history_of_one_stream_is_what_that_rank_logged(ranked: Path) -> None:
    view = runsync.open_run(ranked)
    df = view.history(streams=["rank3"])
    assert list(df.columns) == ["step", "time", "loss", "rank"]  # the single-stream form
    assert df["step"].tolist() == list(range(STEPS))
    assert df["loss"].tolist() == [loss(3, i) for i in range(STEPS)]
    assert set(df["rank"].tolist()) == {3}
    two = view.history(keys=["loss"], streams=["rank1", "rank6"], format="arrow")
    assert two.column_names == ["step", "stream", "time", "loss"]
    assert two.column("stream").to_pylist() == ["rank1"] * STEPS + ["rank6"] * STEPS


def test_long_history_keeps_every_stream(ranked: Path) -> None:
    t = runsync.open_run(ranked).history(wide=False, format="arrow")
    assert t.num_rows == WORLD * STEPS * 2
    got = {(r["stream"], r["step"], r["key"]): (r["value"], r["int"]) for r in t.to_pylist()}
    for r in range(WORLD):
        for i in (0, 1, STEPS - 1):
            assert got[(f"rank{r}", i, "loss")] == (loss(r, i), None)
            assert got[(f"rank{r}", i, "rank")] == (float(r), r)


def test_an_unknown_stream_is_a_clear_error(ranked: Path) -> None:
    with pytest.raises(ValueError, match=r"run ranked has no stream 'rank9'.*rank0, rank1, .*rank7"):
        runsync.open_run(ranked).history(streams=["rank9"])


@pytest.mark.parametrize("how", ["mean", "min", "max"])
def test_reductions_over_ranks(ranked: Path, how: str) -> None:
    df = runsync.open_run(ranked).history(reduce=how)
    assert list(df.columns) == ["step", "time", "loss", "rank"]
    assert df["step"].tolist() == list(range(STEPS))
    fn = {"mean": np.mean, "min": np.min, "max": np.max}[how]
    want = [fn([loss(r, i) for r in range(WORLD)]) for i in range(STEPS)]
    assert df["loss"].to_numpy() == pytest.approx(np.array(want), rel=1e-15)
    want_rank = {"mean": (WORLD - 1) / 2, "min": 0, "max": WORLD - 1}[how]
    assert set(df["rank"].tolist()) == {want_rank}
    assert df["rank"].dtype == (np.float64 if how == "mean" else pd.Int64Dtype())


def test_reduce_needs_the_wide_form_and_a_known_reduction(ranked: Path) -> None:
    view = runsync.open_run(ranked)
    with pytest.raises(ValueError, match="wide form"):
        view.history(wide=False, reduce="mean")
    with pytest.raises(ValueError, match="'mean', 'min', 'max'"):
        view.history(reduce="median")


def test_reduce_skips_missing_values_and_keeps_nan(root: Path) -> None:
    """Missing cells are left out of a reduction; a NaN a rank logged makes the step NaN (not hidden)."""
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    with runsync.init(dir=root, id="gaps", stream="rank0", settings=fast) as run:
        run.log({"x": 1.0, "tag": "a"}, step=0)
        run.log({"x": 2.0}, step=1)
        run.log({"x": 5.0}, step=2)
    with runsync.init(dir=root, id="gaps", stream="rank1", settings=fast) as run:
        run.log({"x": 3.0, "tag": "b"}, step=0)
        run.log({"x": math.nan, "tag": "c"}, step=2)
        run.log({"x": 7.0, "tag": "d"}, step=3)
    view = runsync.open_run(root / "gaps")
    mean = view.history(reduce="mean", format="arrow").to_pydict()
    assert mean["step"] == [0, 1, 2, 3]
    assert mean["x"][:2] == [2.0, 2.0] and math.isnan(mean["x"][2]) and mean["x"][3] == 7.0
    assert mean["tag"] == ["a", None, "c", "d"]  # not reduced: the first stream (reader order) with a value
    mx = view.history(reduce="max", format="arrow").to_pydict()
    assert mx["x"][:2] == [3.0, 2.0] and math.isnan(mx["x"][2]) and mx["x"][3] == 7.0


def test_rank_order_is_numeric_and_main_first(root: Path) -> None:
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    for stream in ("rank10", "eval", "rank2", "main"):
        with runsync.init(dir=root, id="order", stream=stream, settings=fast) as run:
            run.log({"x": 1.0}, step=0)
    df = runsync.open_run(root / "order").history()
    assert df["stream"].tolist() == ["main", "rank2", "rank10", "eval"]


def test_repeats_within_a_stream_still_resolve(root: Path) -> None:
    """§4.5 within a stream is as before: commit=False, explicit earlier steps and resumes — the last call wins."""
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    with runsync.init(dir=root, id="rep", stream="rank0", settings=fast) as run:
        run.log({"x": 1.0}, step=0)
        run.log({"x": 2.0}, step=0)
        run.log({"x": 3.0}, step=1)
    with runsync.init(dir=root, id="rep", stream="rank0", resume=True, settings=fast) as run:
        run.log({"x": 4.0}, step=1)  # a resume rewinds step 1
    with runsync.init(dir=root, id="rep", stream="rank1", settings=fast) as run:
        run.log({"x": 9.0}, step=0)
    df = runsync.open_run(root / "rep").history(format="arrow").to_pydict()
    assert list(zip(df["stream"], df["step"], df["x"])) == [("rank0", 0, 2.0), ("rank0", 1, 4.0), ("rank1", 0, 9.0)]


# -- one stream: exactly as before --------------------------------------------------------------


def _old_wide(run_dir: Path) -> pd.DataFrame:
    """The wide form by the 1.2 rule, independently: resolution per (step, key) across streams in DuckDB
    (the 1.2 normative query of §4.5), then the §4.6 pivot, then the reader's pandas dtypes."""
    rows = runsync.open_run(run_dir).rows()
    con = duckdb.connect()
    con.register("h", rows)
    won = con.sql("SELECT * FROM h QUALIFY row_number() OVER (PARTITION BY step, key "
                  "ORDER BY time DESC, stream DESC, seq DESC) = 1").arrow()
    if isinstance(won, pa.RecordBatchReader):
        won = won.read_all()
    table = to_wide(won)
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    df = table.to_pandas(types_mapper=mapping.get)
    df["step"] = df["step"].astype("int64")
    return df


def test_a_single_stream_run_gives_exactly_the_old_frame(root: Path) -> None:
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    with runsync.init(dir=root, id="one", settings=fast) as run:
        for i in range(50):
            run.log({"loss": 1 / (i + 1), "n": i, "ok": i % 2 == 0, "tag": f"t{i}"}, commit=i % 3 != 0)
        run.log({"loss": 7.0}, step=3)
    df = runsync.open_run(root / "one").history()
    pd.testing.assert_frame_equal(df, _old_wide(root / "one"), check_exact=True)
    assert list(df.columns) == ["step", "time", "loss", "n", "ok", "tag"]


def test_golden_runs_give_exactly_the_old_frame(tmp_path: Path) -> None:
    import shutil

    corpora = Path(__file__).resolve().parent.parent / "spec" / "testdata"
    runs = [d for d in sorted(corpora.glob("v*/golden-run/*")) if (d / "run.json").is_file()]
    assert runs
    for d in runs:
        if len([s for s in (d / "streams").iterdir() if s.is_dir()]) > 1:
            continue  # several streams sharing keys (v1.3's golden13b): the per-stream form, by design
        copy = tmp_path / d.parent.parent.name / d.name
        shutil.copytree(d, copy)
        pd.testing.assert_frame_equal(runsync.open_run(copy).history(), _old_wide(copy), check_exact=True)


def test_resolve_is_per_stream() -> None:
    from runsync.format.history import SCHEMA

    def row(stream: str, step: int, t: int, v: float, seq: int) -> dict[str, Any]:
        return {"step": step, "time": t, "key": "k", "type": 1, "value": v, "int": None, "text": None,
                "stream": stream, "seq": seq}

    rows = pa.Table.from_pylist([row("b", 0, 5, 1.0, 0), row("a", 0, 9, 2.0, 0), row("a", 0, 9, 3.0, 1),
                                 row("b", 0, 1, 4.0, 1)], schema=SCHEMA)
    got = resolve(rows).to_pydict()
    assert list(zip(got["stream"], got["value"])) == [("a", 3.0), ("b", 1.0)]  # b: the later time wins


def test_streams_that_share_no_key_keep_one_row_per_step(root: Path) -> None:
    """A main and an eval stream logging different keys: nothing collides, so the wide form is as before."""
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    with runsync.init(dir=root, id="ev", settings=fast) as run:
        for i in range(4):
            run.log({"loss": float(i)})
    with runsync.init(dir=root, id="ev", stream="eval", settings=fast) as run:
        run.log({"val/acc": 0.5}, step=1)
        run.log({"val/acc": 0.7}, step=3)
    df = runsync.open_run(root / "ev").history()
    assert list(df.columns) == ["step", "time", "loss", "val/acc"]
    assert df["step"].tolist() == [0, 1, 2, 3]
    assert df["val/acc"].tolist()[1::2] == [0.5, 0.7]
    pd.testing.assert_frame_equal(df, _old_wide(root / "ev"), check_exact=True)


def test_a_key_named_stream_is_not_overwritten_by_the_stream_column(root: Path) -> None:
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    for r in range(2):
        with runsync.init(dir=root, id="sk", stream=f"rank{r}", settings=fast) as run:
            run.log({"stream": 10.0 + r}, step=0)
    t = runsync.open_run(root / "sk").history(format="arrow")
    assert t.column_names == ["step", "stream", "time", "stream"]
    assert t.column(1).to_pylist() == ["rank0", "rank1"] and t.column(3).to_pylist() == [10.0, 11.0]


# -- summary (spec §3.3) ----------------------------------------------------------------------------


def test_summary_is_rank0s_and_each_stream_keeps_its_own(ranked: Path) -> None:
    view = runsync.open_run(ranked)
    assert view.summary == {"loss": loss(0, STEPS - 1), "rank": 0}
    per = view.stream_summaries()
    assert list(per) == [f"rank{r}" for r in range(WORLD)]
    assert all(per[f"rank{r}"] == {"loss": loss(r, STEPS - 1), "rank": r} for r in range(WORLD))
    assert view.last_values() == {"loss": loss(0, STEPS - 1), "rank": 0}


def test_summary_rule_ignores_time_and_ties(root: Path) -> None:
    """The stream that finished last used to win (or, on equal times, the reader and spec disagreed, issue 10
    item 9); now the first stream in reader order wins, whatever the times — with and without WAL tails."""
    from runsync.format.meta import SummaryDoc, load_doc, save_doc
    from runsync.reader.index import build_record

    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5)
    for stream, v in (("rank1", 1.0), ("rank0", 0.0), ("zeta", 9.0), ("rank10", 10.0)):
        with runsync.init(dir=root, id="tie", stream=stream, settings=fast) as run:
            run.log({"x": v})
            if stream != "rank0":
                run.summary["only_" + ("zeta" if stream == "zeta" else "ranks")] = v
    for st in (root / "tie" / "streams").iterdir():  # equal times everywhere: the old tie rule would matter
        doc = load_doc(SummaryDoc, st / "summary.json")
        doc.time = {k: 1.0 for k in doc.time}
        save_doc(doc, st / "summary.json")
    view = runsync.open_run(root / "tie")
    assert view.summary == {"only_ranks": 1.0, "only_zeta": 9.0, "x": 0.0}
    rec, _ = build_record(root / "tie")
    assert rec["summary.x"] == 0.0 and rec["summary.only_ranks"] == 1.0
    assert rec["summary_from"] == {"only_ranks": "rank1", "x": "rank0"}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from runsync.cli import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out


def test_ls_and_runs_say_which_stream_a_summary_value_is_from(ranked: Path, root: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with runsync.init(dir=root, id="single") as run:
        run.log({"loss": 0.25})
    code, out = _cli(["ls", str(ranked.parent)], capsys)
    assert code == 0
    row = next(ln for ln in out.splitlines() if f" {RUN_ID} " in ln)
    assert f"{loss(0, STEPS - 1):.4g} (rank0)" in row and "0 (rank0)" in row
    assert "(rankN) after a summary value" in out
    code, out = _cli(["ls", str(root)], capsys)  # one stream: nothing to mark
    assert code == 0 and "(main)" not in out and "(rankN)" not in out
    code, out = _cli(["runs", str(ranked.parent), "--columns", "id,summary.loss", "--width", "0"], capsys)
    assert code == 0
    assert f"{loss(0, STEPS - 1):.4g} (rank0)" in out and "(rankN) after a summary value" in out
    code, out = _cli(["runs", str(ranked.parent), "--columns", "id,summary.loss", "--json"], capsys)
    assert code == 0 and '"summary.loss": 0.00333' in out  # machine output keeps the plain value
    df = runsync.runs(ranked.parent)
    assert df["summary.loss"].tolist() == [loss(0, STEPS - 1)] and "summary_from" not in df.columns


# -- show and watch ----------------------------------------------------------------------------------


def test_show_draws_one_sparkline_per_stream(ranked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(["show", str(ranked), "--keys", "loss"], capsys)
    assert code == 0
    sparks = [ln.strip() for ln in out.split("\nmetrics")[1].splitlines() if ln.startswith("  loss")]
    assert [s.split("]")[0] + "]" for s in sparks] == [f"loss [rank{r}]" for r in range(WORLD)]
    for r, line in enumerate(sparks):
        assert f"{loss(r, 0):.4g} → {loss(r, STEPS - 1):.4g}" in line and f"({STEPS} points" in line
    assert "--reduce mean" in out
    summary = out.split("\nsummary\n")[1].split("\n\n")[0]
    assert f"loss = {loss(0, STEPS - 1):.4g}   (rank0; 8 streams differ: min" in summary

    code, out = _cli(["show", str(ranked), "--keys", "loss", "--reduce", "mean"], capsys)
    assert code == 0
    sparks = [ln.strip() for ln in out.split("\nmetrics")[1].splitlines() if ln.startswith("  loss")]
    mean0 = np.mean([loss(r, 0) for r in range(WORLD)])
    assert len(sparks) == 1 and sparks[0].startswith("loss (mean of 8 streams)")
    assert f"{mean0:.4g} → " in sparks[0]


def test_watch_shows_one_line_per_stream(ranked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runsync.cli.watch import Follower, _frame

    code, out = _cli(["watch", str(ranked), "--keys", "loss", "--interval", "0.1"], capsys)
    assert code == 0
    step_line = next(ln for ln in out.splitlines() if ln.startswith("step "))
    assert step_line.startswith(f"step {STEPS - 1}  ")
    assert [c.split("=")[0] for c in step_line.split("  ")[1:]] == [f"loss[rank{r}]" for r in range(WORLD)]
    assert f"loss[rank5]={loss(5, STEPS - 1):.4g}" in step_line
    frame = _frame(Follower(ranked).poll(), ["loss", "rank"], 2.0, 200, 20)
    assert sum(1 for ln in frame if ln.startswith("  loss [rank")) == WORLD
    assert sum(1 for ln in frame if ln.startswith("  rank [rank")) == WORLD
    code, out = _cli(["watch", str(ranked), "--keys", "loss", "--reduce", "max"], capsys)
    step_line = next(ln for ln in out.splitlines() if ln.startswith("step "))
    assert step_line == f"step {STEPS - 1}  loss(max)={loss(WORLD - 1, STEPS - 1):.4g}"
    frame = _frame(Follower(ranked, reduce="mean").poll(), ["loss"], 2.0, 200, 20)
    assert [ln.split("  ")[1] for ln in frame if ln.startswith("  loss")] == ["loss (mean of 8 streams)"]


# -- the report -----------------------------------------------------------------------------------


def test_report_data_has_each_stream_and_their_mean(ranked: Path) -> None:
    from runsync.report.build import collect

    data = collect(ranked.parent)
    (run,) = data["runs"]
    assert run["summary_from"] == {"loss": "rank0", "rank": "rank0"}
    s = run["history"]["series"]["loss"]
    steps = np.cumsum(run["history"]["steps"])
    assert s["agg"] == "mean" and [st["s"] for st in s["streams"]] == [f"rank{r}" for r in range(WORLD)]
    for r, st in enumerate(s["streams"]):
        at = steps[np.cumsum(st["i"])]
        assert st["n"] == STEPS and list(at) == list(range(STEPS))
        assert st["y"] == pytest.approx([loss(r, i) for i in range(STEPS)], rel=1e-15)
    assert s["y"] == pytest.approx([np.mean([loss(r, i) for r in range(WORLD)]) for i in range(STEPS)], rel=1e-15)


@pytest.fixture(scope="module")
def chromium() -> str:
    import os

    from cdp import find_chromium

    if os.environ.get("RUNSYNC_SKIP_BROWSER") == "1":
        pytest.skip("RUNSYNC_SKIP_BROWSER=1")
    path = find_chromium()
    if path is None:
        pytest.fail("the browser tests need Chromium (see tests/test_report_browser.py)", pytrace=False)
    return path


_CHART = """
(() => {
  const ch = window.runsyncReport.charts.find(c => c.key === 'loss' && c.kind === 'history');
  if (!ch || !ch.plot) return null;
  return {series: ch.plot.series.length, lines: ch.list.map(l => l.label),
          legend: Array.from(ch.legend.querySelectorAll('.item')).map(e => e.textContent),
          legendStreams: Array.from(ch.legend.querySelectorAll('.item')).map(e => e.dataset.stream),
          colors: ch.plot.series.slice(1).map(s => s.stroke()), note: ch.note.textContent,
          first: ch.list.map(l => l.ys[0]), last: ch.list.map(l => l.ys[l.ys.length - 1])};
})()
"""


@pytest.mark.timeout(180)
def test_report_draws_one_line_per_rank_and_the_mean_toggle(ranked: Path, chromium: str, tmp_path: Path) -> None:
    from cdp import Browser

    from runsync.report import build_report

    out = tmp_path / "report.html"
    build_report(ranked.parent, out)
    with Browser(chromium, timeout=30) as browser:
        page = browser.new_page()
        page.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1000, "deviceScaleFactor": 1,
                                                         "mobile": False})
        page.navigate(out.as_uri())
        page.wait_for("window.runsyncReport && window.runsyncReport.ready", timeout=30)
        page.wait_for(_CHART.strip() + " !== null", timeout=10)
        got = page.evaluate(_CHART)
        assert page.console_errors() == []
        assert got["series"] == 1 + 2 * WORLD  # x, then (raw, smoothed) per rank at the default smoothing
        assert got["lines"] == [f"{RUN_ID} · rank{r}" for r in range(WORLD)]
        assert got["legendStreams"] == [f"rank{r}" for r in range(WORLD)]
        assert [t.split(" · ")[1] for t in got["legend"]] == [f"rank{r}" for r in range(WORLD)]
        assert len(set(got["colors"][1::2])) == WORLD  # each rank its own colour
        assert got["first"] == pytest.approx([loss(r, 0) for r in range(WORLD)])
        assert got["last"] == pytest.approx([loss(r, STEPS - 1) for r in range(WORLD)])
        assert "8 lines" in got["note"]
        cells = page.evaluate("Array.from(document.querySelectorAll('table.runs tbody td')).map(td => td.textContent)")
        assert f"{loss(0, STEPS - 1):.4g} (rank0)" in cells  # the summary value says whose it is

        before = page.evaluate("window.runsyncReport.redraws")
        page.evaluate("document.getElementById('streammean').click()")
        page.wait_for(f"window.runsyncReport.redraws > {before}", timeout=10)
        got = page.evaluate(_CHART)
        assert got["series"] == 1 + 2
        assert got["lines"] == [f"{RUN_ID} · mean of 8 streams"] and got["legendStreams"] == ["mean"]
        assert got["first"] == pytest.approx([np.mean([loss(r, 0) for r in range(WORLD)])])
        assert got["last"] == pytest.approx([np.mean([loss(r, STEPS - 1) for r in range(WORLD)])])


# -- stock readers and runsync sql -------------------------------------------------------------------


def _reader_cells(run_dir: Path) -> dict[tuple[str, int, str], tuple[Any, Any]]:
    t = runsync.open_run(run_dir).history(wide=False, format="arrow")
    return {(r["stream"], r["step"], r["key"]): (r["value"], r["int"]) for r in t.to_pylist()}


def test_documented_stock_recipes_read_every_rank(ranked: Path) -> None:
    """docs/queries.md and spec/notes.md: resolve per (stream, step, key), then filter or group by step."""
    want = _reader_cells(ranked)
    assert len(want) == WORLD * STEPS * 2
    got = duckdb.sql(f"""
        SELECT stream, step, key, value, int FROM read_parquet('{ranked}/history/*.parquet')
        QUALIFY row_number() OVER (PARTITION BY stream, step, key ORDER BY time DESC, seq DESC) = 1""").fetchall()
    assert {(s, st, k): (v, i) for s, st, k, v, i in got} == want
    df = pd.read_parquet(ranked / "history")
    latest = (df.sort_values(["stream", "step", "key", "time", "seq"])
                .drop_duplicates(["stream", "step", "key"], keep="last"))
    assert len(latest) == len(want)
    for r in latest.itertuples(index=False):
        assert want[(r.stream, r.step, r.key)][0] == r.value
    mean = latest[latest.key == "loss"].groupby("step")["value"].mean()
    ours = runsync.open_run(ranked).history(keys=["loss"], reduce="mean")
    assert mean.tolist() == pytest.approx(ours["loss"].tolist(), rel=1e-15)
    red = duckdb.sql(f"""
        WITH h AS (SELECT * FROM read_parquet('{ranked}/history/*.parquet')
          QUALIFY row_number() OVER (PARTITION BY stream, step, key ORDER BY time DESC, seq DESC) = 1)
        SELECT step, avg(value), count(*) FROM h WHERE key = 'loss' GROUP BY step ORDER BY step""").fetchall()
    assert [c for _s, _m, c in red] == [WORLD] * STEPS
    assert [m for _s, m, _c in red] == pytest.approx(ours["loss"].tolist(), rel=1e-15)


def test_sql_history_view_is_per_stream(ranked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out = _cli(["sql", "SELECT stream, count(*) AS n, min(value) AS lo FROM history WHERE key = 'loss' "
                      "GROUP BY stream ORDER BY stream", "--dir", str(ranked.parent), "--json"], capsys)
    assert code == 0
    assert json.loads(out) == [{"stream": f"rank{r}", "n": STEPS, "lo": pytest.approx(loss(r, STEPS - 1))}
                               for r in range(WORLD)]
    code, out = _cli(["sql", "SELECT stream, step, key, value, int FROM history", "--dir", str(ranked.parent),
                      "--json"], capsys)
    assert code == 0
    assert {(r["stream"], r["step"], r["key"]): (r["value"], r["int"]) for r in json.loads(out)} == \
        _reader_cells(ranked)
