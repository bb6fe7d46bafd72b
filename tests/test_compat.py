"""Format compatibility: committed golden runs must keep reading exactly as their expected JSON says.

spec/testdata/v<MAJOR>.<MINOR>/<name>/ holds run directories written by that format version (see
spec/testdata/make_golden.py) and <name>.expected.json their decoded content. The files are never
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runsync

TESTDATA = Path(__file__).resolve().parents[1] / "spec" / "testdata"
NULL, FLOAT, INT, BOOL, STRING = 0, 1, 2, 3, 4

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


def _cases() -> list[Any]:
    cases = []
    for exp_path, root in CORPORA:
        doc = json.loads(exp_path.read_text(encoding="utf-8"))
        for run_id, exp in doc["runs"].items():
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
    if t == STRING:
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
    if t == STRING:
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
    assert info == exp["run"]
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
        assert schema.metadata[b"runsync.format"] == b"1.0"
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
    if t == STRING:
        return v
    if t == INT:
        return str(v)
    if t == BOOL:
        return "true" if v else "false"
    if t == FLOAT:
        return repr(float(v))
    return None
