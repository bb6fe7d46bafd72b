"""Format compatibility: committed golden runs must keep reading exactly as their expected JSON says.

spec/testdata/v<MAJOR>.<MINOR>/<name>/ holds run directories written by that format version (see
spec/testdata/make_golden.py for v1.0, make_golden_v12.py for v1.2) and <name>.expected.json their decoded
content. Since 1.2 the expectations may also hold media, saved files, system rows, console logs and the
environment record, each checked by its own test below. The files are never
regenerated once committed; every later runsync, and any second implementation, must pass this test.
The test reads a byte-identical copy, so a reader that writes (recovery) cannot damage the corpus,
and checks that reading changed nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections import Counter
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runsync
from runsync.format.meta import RunInfo
from runsync.reader.code import describe, load_environment

TESTDATA = Path(__file__).resolve().parents[1] / "spec" / "testdata"
NULL, FLOAT, INT, BOOL, STRING, MEDIA = 0, 1, 2, 3, 4, 5

HISTORY_SCHEMA = [
    ("step", pa.int64(), False),
    ("time", pa.timestamp("us", tz="UTC"), False),
    ("key", pa.string(), False),
    ("type", pa.int8(), False),
    ("value", pa.float64(), True),
    ("int", pa.int64(), True),
    ("text", pa.string(), True),
    ("stream", pa.string(), False),
    ("seq", pa.int64(), False),
]


def _corpora() -> list[tuple[Path, Path]]:
    """(expected JSON, root of its run directories) for every format version's corpus."""
    out = []
    for version in sorted(p for p in TESTDATA.iterdir() if p.is_dir() and re.fullmatch(r"v\d+\.\d+", p.name)):
        for exp in sorted(version.glob("*.expected.json")):
            out.append((exp, version / exp.name[: -len(".expected.json")]))
    return out


CORPORA = _corpora()


def _cases(section: str | None = None) -> list[Any]:
    """(root, run id, expected) of every golden run; with ``section``, only runs whose expectations have it
    (media, files, system, console, environment: since format 1.2; per_stream, errors: since 1.3). Without
    ``section``, the runs of one stream (several streams: ``per_stream``)."""
    cases = []
    for exp_path, root in CORPORA:
        doc = json.loads(exp_path.read_text(encoding="utf-8"))
        for run_id, exp in doc["runs"].items():
            if (section is None and "per_stream" not in exp) or (section is not None and section in exp):
                cases.append(pytest.param(root, run_id, decode(exp), id=f"{root.parent.name}/{root.name}/{run_id}"))
    return cases


def decode(v: Any) -> Any:
    """The expected JSON's encoding back to Python: {"$float": "nan"|"inf"|"-inf"} → float."""
    if isinstance(v, dict):
        if set(v) == {"$float"}:
            return float(v["$float"])
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def canon(v: Any) -> Any:
    """Exact, type-aware comparison form: 1 ≠ 1.0 ≠ True, NaN = NaN, -0.0 ≠ 0.0."""
    if isinstance(v, (bool, np.bool_)):
        return ("bool", bool(v))
    if isinstance(v, (int, np.integer)):
        return ("int", int(v))
    if isinstance(v, (float, np.floating)):
        return ("float", repr(float(v)))
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [canon(x) for x in v]
    if v is pd.NA:
        return None
    return v


def typed_value(row: dict[str, Any]) -> Any:
    """The logged value of a long row, from its type code and value columns (spec §4.2)."""
    t = row["type"]
    if t == FLOAT:
        return row["value"]
    if t == INT:
        return row["int"]
    if t == BOOL:
        return bool(row["value"])
    if t in (STRING, MEDIA):  # MEDIA: text is the media kind (spec §5.2)
        return row["text"]
    return None


def columns_of(t: int, v: Any) -> tuple[Any, Any, Any]:
    """(value, int, text) as spec §4.2 fills them for a value of type ``t``."""
    if t == FLOAT:
        return v, None, None
    if t == INT:
        return float(v), v, None
    if t == BOOL:
        return (1.0 if v else 0.0), None, None
    if t in (STRING, MEDIA):
        return None, None, v
    return None, None, None


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Each corpus root → a byte-identical copy to read."""
    out = {}
    for _exp, root in CORPORA:
        dst = tmp_path_factory.mktemp("golden") / root.name
        shutil.copytree(root, dst)
        assert _tree(dst) == _tree(root)
        out[root] = dst
    return out


def test_there_is_a_v1_corpus() -> None:
    assert any(root.parent.name == "v1.0" for _exp, root in CORPORA), "spec/testdata/v1.0 golden corpus missing"


def test_there_is_a_v1_3_corpus_with_every_1_3_addition() -> None:
    assert any(root.parent.name == "v1.3" for _exp, root in CORPORA), "spec/testdata/v1.3 golden corpus missing"
    for section in ("per_stream", "errors"):
        assert _cases(section), f"no v1.3 golden run has {section}"


@pytest.mark.parametrize("root,run_id,exp", _cases("per_stream"))
def test_golden_run_of_several_streams_keeps_each_series(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                                        exp: dict[str, Any]) -> None:
    """§4.5/§4.6 (1.3): repeats resolve within a stream; one key at one step from two streams is two values."""
    run_dir = corpus_copy[root] / run_id
    before = _tree(run_dir)
    view = runsync.open_run(run_dir)
    info = asdict(view.info)
    info.pop("created")
    assert {k: info[k] for k in exp["run"]} == exp["run"]
    assert view.status == exp["status"]
    assert {s["stream"]: s["state"] for s in view.streams()} == exp["streams"]
    assert canon(view.config) == canon(exp["config"]) and canon(view.summary) == canon(exp["summary"])
    rows = view.rows().to_pylist()
    for stream, want in exp["per_stream"].items():
        mine = sorted((r for r in rows if r["stream"] == stream), key=lambda r: (r["seq"], r["key"]))
        assert canon([[r["step"], r["key"], r["type"], typed_value(r)] for r in mine]) == canon(want["rows"])
        got = view.history(streams=[stream], wide=False, format="arrow").to_pylist()
        assert canon([[r["step"], r["key"], r["type"], typed_value(r)] for r in got]) == canon(want["resolved"])
    wide = view.history()
    assert list(wide.columns[:3]) == ["step", "stream", "time"]
    assert sorted(zip(wide["stream"], wide["step"])) == sorted(
        (s, step) for s, w in exp["per_stream"].items() for step in {r[0] for r in w["resolved"]})
    # stock pandas sees every stored row of every stream
    assert len(pd.read_parquet(run_dir / "history")) == sum(len(w["rows"]) for w in exp["per_stream"].values())
    assert _tree(run_dir) == before, "reading a run must not change its files"


@pytest.mark.parametrize("root,run_id,exp", _cases("errors"))
def test_golden_failed_run_names_its_cause(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                          exp: dict[str, Any]) -> None:
    view = runsync.open_run(corpus_copy[root] / run_id)
    assert {s["stream"]: s.get("error") for s in view.streams()} == exp["errors"]


def test_there_is_a_v1_2_corpus_with_every_1_2_addition() -> None:
    assert any(root.parent.name == "v1.2" for _exp, root in CORPORA), "spec/testdata/v1.2 golden corpus missing"
    for section in ("media", "files", "system", "console", "environment"):
        assert _cases(section), f"no v1.2 golden run has {section}"


@pytest.mark.parametrize("exp_path,root", CORPORA, ids=[f"{r.parent.name}/{r.name}" for _e, r in CORPORA])
def test_every_golden_run_has_expectations(exp_path: Path, root: Path) -> None:
    runs = json.loads(exp_path.read_text(encoding="utf-8"))["runs"]
    dirs = sorted(p.name for p in root.iterdir() if (p / "run.json").is_file())
    assert dirs == sorted(runs), "every run directory needs an expected entry, and every entry a directory"
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.tmp"))


@pytest.mark.parametrize("root,run_id,exp", _cases())
def test_golden_run_reads_as_expected(corpus_copy: dict[Path, Path], root: Path, run_id: str, exp: dict[str, Any]) -> None:
    run_dir = corpus_copy[root] / run_id
    before = _tree(run_dir)
    view = runsync.open_run(run_dir)

    # run.json, state, config, summary
    info = asdict(view.info)
    assert isinstance(info.pop("created"), float)
    # run.json fields newer than the corpus (e.g. source, since 1.3) read as their defaults
    defaults = {f.name: f.default for f in fields(RunInfo) if f.default is not MISSING}
    newer = {k: v for k, v in info.items() if k not in exp["run"]}
    assert all(k in defaults and v == defaults[k] for k, v in newer.items()), newer
    assert {k: v for k, v in info.items() if k in exp["run"]} == exp["run"]
    assert view.id == run_id
    assert view.status == exp["status"]
    assert {s["stream"]: s["state"] for s in view.streams()} == exp["streams"]
    assert canon(view.config) == canon(exp["config"])
    assert canon(view.summary) == canon(exp["summary"])

    # every stored row (parts and WAL tails), in seq order; keys sorted within a call
    table = view.rows()
    rows = sorted(table.to_pylist(), key=lambda r: (r["seq"], r["key"]))
    assert canon([[r["step"], r["key"], r["type"], typed_value(r)] for r in rows]) == canon(exp["rows"])
    for r in rows:  # the value columns are filled as spec §4.2 says
        assert canon([r["value"], r["int"], r["text"]]) == canon(list(columns_of(r["type"], typed_value(r))))
    assert {r["stream"] for r in rows} == {"main"}
    seqs = [r["seq"] for r in rows]
    times = [r["time"] for r in rows]
    assert times == [t for _s, t in sorted(zip(seqs, times))] and times == sorted(times)
    if exp["status"] == "crashed":
        # the WAL tail of the dead writer is visible: more rows than its parts hold
        assert len(rows) > len(exp["parquet_rows"])

    # resolved long (exact, Arrow) and pandas
    resolved = view.history(wide=False, format="arrow").to_pylist()
    assert canon([[r["step"], r["key"], r["type"], typed_value(r)] for r in resolved]) == canon(exp["resolved"])
    long_df = view.history(wide=False)
    assert list(zip(long_df["step"], long_df["key"])) == [(s, k) for s, k, _t, _v in exp["resolved"]]

    # wide
    wide = view.history()
    steps = exp["wide"]["steps"]
    assert wide["step"].tolist() == steps
    assert [c for c in wide.columns if c not in ("step", "time")] == sorted(exp["wide"]["types"])
    cells: dict[str, dict[int, tuple[int, Any]]] = {}
    for s, k, t, v in exp["resolved"]:
        cells.setdefault(k, {})[s] = (t, v)
    for key, kind in exp["wide"]["types"].items():
        col = wide[key].tolist()
        c = cells[key]
        if kind == "float64":
            assert wide[key].dtype == np.float64
            want = [float(c[s][1]) if s in c and c[s][0] != NULL else math.nan for s in steps]
        elif kind == "Int64":
            assert wide[key].dtype == pd.Int64Dtype()
            want = [c[s][1] if s in c and c[s][0] != NULL else None for s in steps]
        elif kind == "boolean":
            assert wide[key].dtype == pd.BooleanDtype()
            want = [c[s][1] if s in c and c[s][0] != NULL else None for s in steps]
        else:  # "string", or "text": mixed types rendered as text (spec §4.6)
            assert pd.api.types.is_string_dtype(wide[key].dtype) or wide[key].dtype == object
            want = [_text(*c[s]) if s in c else None for s in steps]
        got = [None if (x is None or x is pd.NA or (kind != "float64" and _isnan(x))) else x for x in col]
        assert canon(got) == canon(want), key

    # plain pandas, no runsync involved: the rows that are in Parquet parts
    hist = run_dir / "history"
    df = pd.read_parquet(hist, dtype_backend="pyarrow")
    got = Counter(tuple(canon([int(r.step), r.key, int(r.type), typed_value(
        {"type": int(r.type), "value": _na(r.value), "int": _na(r.int), "text": _na(r.text)})]))
        for r in df.itertuples(index=False))
    want = Counter(tuple(canon(r)) for r in exp["parquet_rows"])
    assert got == want
    df = pd.read_parquet(hist)  # default arguments
    assert len(df) == len(exp["parquet_rows"])
    assert sorted(df["key"].unique()) == sorted({k for _s, k, _t, _v in exp["parquet_rows"]})

    # every part has the v1 schema and metadata (spec §4.1, §4.2)
    for part in sorted(hist.glob("*.parquet")):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}\.[0-9]{12}-[0-9]{12}\.parquet", part.name)
        schema = pq.read_schema(part)
        assert [(f.name, f.type, f.nullable) for f in schema] == HISTORY_SCHEMA
        assert schema.metadata[b"runsync.format"] == exp["run"]["format"].encode()
        assert schema.metadata[b"runsync.stream"].decode() == part.name.split(".")[0]

    assert _tree(run_dir) == before, "reading a run must not change its files"


def test_runs_table_lists_golden_runs(corpus_copy: dict[Path, Path]) -> None:
    for exp_path, root in CORPORA:
        runs = json.loads(exp_path.read_text(encoding="utf-8"))["runs"]
        df = runsync.runs(corpus_copy[root])
        assert dict(zip(df["id"], df["status"])) == {k: v["status"] for k, v in runs.items()}


def _na(x: Any) -> Any:
    return None if x is None or x is pd.NA else x


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _text(t: int, v: Any) -> str | None:
    if t in (STRING, MEDIA):
        return v
    if t == INT:
        return str(v)
    if t == BOOL:
        return "true" if v else "false"
    if t == FLOAT:
        return repr(float(v))
    return None


# -- format 1.2 additions: media, saved files, system table, console, environment ----------------------------

MEDIA_COLUMNS = ["stream", "seq", "step", "key", "index", "kind", "format", "caption", "meta", "sha256", "size", "data"]


def _check_parts(table_dir: Path, exp: dict[str, Any], columns: list[str]) -> list[Path]:
    """Parts of ``table_dir`` are well named and carry the run's format and their stream (spec §4.1, §4.2)."""
    parts = sorted(table_dir.glob("*.parquet"))
    assert parts, f"no parts in {table_dir}"
    for part in parts:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}\.[0-9]{12}-[0-9]{12}\.parquet", part.name)
        schema = pq.read_schema(part)
        assert schema.names[: len(columns)] == columns
        assert schema.metadata[b"runsync.format"] == exp["run"]["format"].encode()
        assert schema.metadata[b"runsync.stream"].decode() == part.name.split(".")[0]
    return parts


def _media_value(item: Any) -> Any:
    """A decoded media item in the expected JSON's terms (spec §13.1)."""
    v = item.value
    if item.kind == "image":
        assert isinstance(v, np.ndarray) and v.dtype == np.uint8
        return {"shape": list(v.shape), "pixels": v.tolist()}
    if item.kind == "histogram":
        assert v.counts.dtype == np.int64 and v.edges.dtype == np.float64
        return {"counts": v.counts.tolist(), "edges": v.edges.tolist()}
    if item.kind == "table":  # the DataFrame a reader gets, and the Parquet file as stored
        stored = pq.read_table(pa.BufferReader(item.data))
        assert isinstance(v, pd.DataFrame) and list(v.columns) == stored.column_names
        assert v.astype(object).values.tolist() == [list(r.values()) for r in stored.to_pylist()]
        return {"columns": stored.column_names, "types": [str(f.type) for f in stored.schema],
                "rows": [list(r.values()) for r in stored.to_pylist()]}
    assert isinstance(v, str)
    return v


@pytest.mark.parametrize("root,run_id,exp", _cases("media"))
def test_golden_media_decode_as_expected(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                         exp: dict[str, Any]) -> None:
    run_dir = corpus_copy[root] / run_id
    before = _tree(run_dir)
    view = runsync.open_run(run_dir)
    assert view.media_keys() == sorted(exp["media"])
    stored_items = 0
    for key, items in exp["media"].items():
        got = view.media(key)
        assert [(m.step, m.index, m.kind, m.caption, m.meta, m.missing) for m in got] == \
            [(e["step"], e["index"], e["kind"], e["caption"], e["meta"], False) for e in items], key
        for m, e in zip(got, items):
            assert m.sha256 == hashlib.sha256(m.data).hexdigest()
            assert canon(_media_value(m)) == canon(e["value"]), (key, m.step, m.index)
        stored_items += len(items)

    # stock readers: every item is a row of media/, and each distinct content's bytes are stored once (§13.3)
    parts = _check_parts(run_dir / "media", exp, MEDIA_COLUMNS)
    df = pd.read_parquet(run_dir / "media")
    assert len(df) == stored_items
    data_cells = Counter(sha for p in parts for sha, data in zip(*pq.read_table(p, columns=["sha256", "data"])
                                                                 .to_pydict().values()) if data is not None)
    assert set(data_cells) == set(df["sha256"]) and set(data_cells.values()) == {1}
    assert (df.groupby("sha256").size() > 1).any(), "the corpus logs one image more than once"
    # the join of spec §13.2: history rows of type MEDIA ↔ media items on (stream, seq, key)
    hist = pd.read_parquet(run_dir / "history")
    joined = hist[hist["type"] == MEDIA].merge(df, on=["stream", "seq", "key"], suffixes=("", "_m"))
    assert len(joined) == stored_items and (joined["text"] == joined["kind"]).all()
    assert _tree(run_dir) == before, "reading a run must not change its files"


@pytest.mark.parametrize("root,run_id,exp", _cases("files"))
def test_golden_saved_files_read_as_expected(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                             exp: dict[str, Any]) -> None:
    run_dir = corpus_copy[root] / run_id
    before = _tree(run_dir)
    view = runsync.open_run(run_dir)
    versions = view.files(versions=True)
    assert [[f.name, f.sha256, f.size, f.mtime, f.policy] for f in versions] == \
        [[f["name"], f["sha256"], f["size"], f["mtime"], f["policy"]] for f in exp["files"]]  # type: ignore[union-attr]
    assert sorted(view.files()) == sorted({f["name"] for f in exp["files"]})  # type: ignore[arg-type]
    for f in exp["files"]:
        data = f["text"].encode("utf-8") if "text" in f else bytes.fromhex(f["hex"])
        path = view.file_path(f["name"])
        assert path == run_dir / "files" / "sha256" / f["sha256"][:2] / f["sha256"]
        assert path.read_bytes() == data and hashlib.sha256(data).hexdigest() == f["sha256"]
    objects = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "files").rglob("*") if p.is_file())
    assert objects == sorted({f"files/sha256/{f['sha256'][:2]}/{f['sha256']}" for f in exp["files"]})
    assert _tree(run_dir) == before, "reading a run must not change its files"


@pytest.mark.parametrize("root,run_id,exp", _cases("system"))
def test_golden_system_table_reads_as_expected(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                               exp: dict[str, Any]) -> None:
    run_dir = corpus_copy[root] / run_id
    before = _tree(run_dir)
    view = runsync.open_run(run_dir)
    want = exp["system"]["streams"]
    rows = view.system(wide=False, format="arrow").to_pylist()
    got: dict[str, list[Any]] = {}
    for r in rows:
        got.setdefault(r["stream"], []).append([r["step"], r["key"], r["type"], typed_value(r)])
    assert canon(got) == canon(want)
    for r in rows:
        assert canon([r["value"], r["int"], r["text"]]) == canon(list(columns_of(r["type"], typed_value(r))))
    # wide: one row per (stream, sample), a column per key
    wide = view.system()
    assert list(zip(wide["stream"], wide["step"])) == sorted({(s, r[0]) for s, rs in want.items() for r in rs})
    keys = sorted({r[1] for rs in want.values() for r in rs})
    assert [c for c in wide.columns if c not in ("step", "time", "stream")] == keys
    # plain pandas reads system/ as it reads history/ (same schema, spec §14)
    for part in _check_parts(run_dir / "system", exp, [n for n, _t, _null in HISTORY_SCHEMA]):
        assert [(f.name, f.type, f.nullable) for f in pq.read_schema(part)] == HISTORY_SCHEMA
    df = pd.read_parquet(run_dir / "system")
    assert len(df) == sum(len(rs) for rs in want.values())
    assert {s: st["state"] for s, st in _substreams(run_dir).items()} == {s: exp["status"] for s in want}
    assert _tree(run_dir) == before, "reading a run must not change its files"


def _substreams(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The system sub-streams' status documents (spec §14: streams/<s>/system/status.json)."""
    return {p.parent.parent.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(run_dir.glob("streams/*/system/status.json"))}


@pytest.mark.parametrize("root,run_id,exp", _cases("console"))
def test_golden_console_logs_read_as_expected(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                              exp: dict[str, Any]) -> None:
    run_dir = corpus_copy[root] / run_id
    logs = sorted((run_dir / "console").iterdir())
    assert [p.name for p in logs] == sorted(exp["console"])
    for p in logs:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}\.[0-9]{6}\.[0-9]{6}\.log", p.name)
        data = p.read_bytes()
        assert data == exp["console"][p.name].encode("utf-8")
        assert data.endswith(b"\n") and b"\r" not in data.replace(b"\r\n", b"")  # whole lines, bars collapsed


@pytest.mark.parametrize("root,run_id,exp", _cases("environment"))
def test_golden_environment_reads_as_expected(corpus_copy: dict[Path, Path], root: Path, run_id: str,
                                              exp: dict[str, Any]) -> None:
    run_dir = corpus_copy[root] / run_id
    doc, patch = load_environment(run_dir)
    assert patch is None  # code capture was disabled: no diff.<inc>.patch
    assert isinstance(doc.pop("time"), float)
    assert doc == exp["environment"]
    assert describe({**doc, "time": 0.0})  # the summary `runsync show` prints does not fail on it
