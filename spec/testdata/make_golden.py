#!/usr/bin/env python3
"""Generate the format v1.0 golden corpus used by tests/test_compat.py.

    python spec/testdata/make_golden.py

writes

    spec/testdata/v1.0/golden-run/golden01/   a finished run: every value type, keys that appear late,
                                             a repeated step, a config update, a manual summary value
    spec/testdata/v1.0/golden-run/golden02/   a crashed writer: one history part, and newer rows, a config
                                             update and a summary value still only in its WAL segment
    spec/testdata/v1.0/golden-run.expected.json

The expected content is computed here from what the script logs (a small model of the documented
semantics), not by reading the files back; the script then checks that runsync reads the files as
expected and refuses to write a corpus it disagrees with. Nothing is post-processed except the crash
image golden02 (see make_golden02). The files are not byte-for-byte reproducible (times, hostname,
pid) — compare content, not bytes.

Once committed, these files are never regenerated for v1.0: every later runsync must keep reading
them as the expected JSON says. A new format version gets its own directory and corpus.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["RUNSYNC_SILENT"] = "1"
for _var in ("RUNSYNC_MODE", "RUNSYNC_DIR", "RUNSYNC_PROJECT", "RUNSYNC_STREAM", "RANK", "WORLD_SIZE"):
    os.environ.pop(_var, None)

import numpy as np  # noqa: E402

import runsync  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "v1.0"
ROOT = OUT / "golden-run"
EXPECTED = OUT / "golden-run.expected.json"

SEGMENT_SIZE = 64 << 10  # small WAL segments keep the crashed run small
CRASH_TIME = 1700000000.0  # 2023-11-14: the crashed writer's last heartbeat, long ago on any machine
CRASH_HOST = "golden-host"
CRASH_BOOT = "golden-boot"
CRASH_PID = 999999

NULL, FLOAT, INT, BOOL, STRING = 0, 1, 2, 3, 4
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# -- a tiny model of log() ------------------------------------------------------------------------


def coerce(v: Any) -> tuple[int, Any]:
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    if isinstance(v, (bool, np.bool_)):
        return BOOL, bool(v)
    if isinstance(v, (int, np.integer)):
        return INT, int(v)
    if isinstance(v, (float, np.floating)):
        return FLOAT, float(v)
    if isinstance(v, str):
        return STRING, v
    assert v is None, v
    return NULL, None


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out.extend(flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else [(f"{prefix}{k}", v)])
    return out


class Recorder:
    """Logs to a run and records what the format must then hold."""

    def __init__(self, run: runsync.Run, config: dict[str, Any]) -> None:
        self.run = run
        self.step = 0
        self.calls: list[list[list[Any]]] = []  # per call that logged something: [[step, key, type, value], ...]
        self.summary: dict[str, Any] = {}
        self.manual: set[str] = set()
        self.config = json.loads(json.dumps(config))

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool = True) -> None:
        self.run.log(data, step=step, commit=commit)
        s = self.step if step is None else step
        rows = [[s, k, *coerce(v)] for k, v in flatten(data)]
        if rows:
            self.calls.append(sorted(rows, key=lambda r: r[1]))
            for _s, k, _t, v in rows:
                if k not in self.manual:
                    self.summary[k] = v
        if commit:
            self.step = s + 1

    def set_summary(self, key: str, value: Any) -> None:
        self.run.summary[key] = value
        self.summary[key] = value
        self.manual.add(key)

    def update_config(self, key: str, value: Any) -> None:
        self.run.config[key] = value
        self.config[key] = value

    def rows(self, upto_call: int | None = None) -> list[list[Any]]:
        return [r for call in self.calls[:upto_call] for r in call]

    def resolved(self) -> list[list[Any]]:
        win: dict[tuple[int, str], list[Any]] = {}
        for r in self.rows():
            win[(r[0], r[1])] = r
        return [win[k] for k in sorted(win)]

    def wide_types(self) -> dict[str, str]:
        types: dict[str, set[int]] = {}
        for _s, k, t, _v in self.resolved():
            types.setdefault(k, set()).add(t)
        out = {}
        for k, ts in sorted(types.items()):
            ts = ts - {NULL}
            if not ts or (ts <= {FLOAT, INT} and ts != {INT}):
                out[k] = "float64"
            elif ts == {INT}:
                out[k] = "Int64"
            elif ts == {BOOL}:
                out[k] = "boolean"
            elif ts == {STRING}:
                out[k] = "string"
            else:
                out[k] = "text"  # mixed types, rendered as text
        return out


# -- JSON encoding: strict JSON, non-finite floats as {"$float": "nan" | "inf" | "-inf"} ---------------


def enc(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(v, dict):
        return {k: enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    return v


def wait_for_parts(run_dir: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list((run_dir / "history").glob("*.parquet"))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"no history part appeared in {run_dir} within {timeout} s")
        time.sleep(0.01)


# -- golden01: a finished run -----------------------------------------------------------------------


def make_golden01(root: Path) -> dict[str, Any]:
    config = {"lr": 0.001, "batch": 128, "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
              "note": "ünïcode ✓", "flag": True, "nothing": None}
    settings = runsync.Settings(segment_size=SEGMENT_SIZE, flush_interval=0.02, part_rows=25, part_interval=3600.0)
    info = {"id": "golden01", "name": "golden-one", "project": "golden", "group": "golden-group", "job_type": "train",
            "tags": ["golden", "v1.0"], "notes": "format v1.0 golden run 1"}
    run = runsync.init(**info, config=config, dir=root, settings=settings)
    r = Recorder(run, config)
    # first part: exactly part_rows (25) rows of the early keys, nested dicts included
    for step in range(5):
        r.log({"train": {"loss": 1.0 / (step + 1), "acc": step / 8}, "epoch": step // 2, "warmup": step < 2,
               "lr": 0.1 / (step + 1)})
    wait_for_parts(run.dir, 1)
    # second part (written by finish): late keys, every value type, repeated steps
    r.log({"train/loss": float("nan"), "note": "héllo 🙂\nline two", "val/acc": None, "mixed": 1, "intfloat": 1})
    r.log({"extreme": {"min": INT64_MIN, "max": INT64_MAX}, "train/loss": float("inf"), "neg": -0.0,
           "mixed": "two", "intfloat": 2.5}, commit=False)
    r.log({"ninf": float("-inf"), "mixed": 3.5}, commit=True)  # same step as the previous call
    r.log({"np": {"f32": np.float32(0.5), "i64": np.int64(-7), "bool": np.bool_(False), "zero_d": np.array(2.25)},
           "mixed": True})
    r.log({"train/loss": 0.125}, step=3)  # a repeated, older step: this value wins at step 3
    r.log({"train/loss": 0.0625, "val/acc": 0.75}, step=3)  # ... and now this one
    r.log({"empty": {}})  # logs nothing, commits a step
    r.log({"late": "after an empty call"})
    r.update_config("late_param", 42)
    r.set_summary("best_acc", 0.875)
    r.set_summary("train/loss", "manual wins")
    r.log({"train/loss": 0.03125})  # a manual summary value sticks
    assert len(r.rows()) - 25 < 25, "the second batch must stay below part_rows"
    run.finish()
    return expected(info, r, status="finished", parquet_rows=r.rows())


# -- golden02: a crashed writer ----------------------------------------------------------------------


def make_golden02(root: Path, tmp: Path) -> dict[str, Any]:
    config = {"seed": 7, "model": {"depth": 3}}
    settings = runsync.Settings(segment_size=SEGMENT_SIZE, flush_interval=0.02, part_rows=10, part_interval=1e9)
    info = {"id": "golden02", "name": "golden-two", "project": "golden", "group": None, "job_type": None,
            "tags": ["golden", "crashed"], "notes": "format v1.0 golden run 2: the writer died before its last flush"}
    run = runsync.init(**info, config=config, dir=tmp, settings=settings)
    r = Recorder(run, config)
    for step in range(5):  # exactly part_rows (10) rows → one history part
        r.log({"loss": 2.0 - step / 4, "count": step * 3})
    wait_for_parts(run.dir, 1)
    parted_calls = len(r.calls)
    # from here on nothing reaches a part: the rows stay in the WAL segment only
    r.log({"loss": 0.5, "tail": {"note": "only in the WAL", "flag": True, "none": None}})
    r.log({"loss": 9.5, "count": -1}, step=2)  # overrides a step that is in the part
    r.update_config("model", {"depth": 4, "width": 64})
    r.set_summary("manual", "set before the crash")
    r.log({"tail/big": INT64_MAX, "tail/nan": float("nan")}, commit=False)
    r.log({"tail/late": 1.5})
    assert len(r.rows(None)) - 10 < 10, "the tail must stay below part_rows"
    time.sleep(0.5)  # the flusher drains and msyncs the tail (synced_off covers it)
    dst = root / "golden02"
    shutil.copytree(run.dir, dst)  # the writer is still running: the copy is a crash image
    run.finish()  # the original in the temporary directory ends normally; it is discarded
    # Make the image read as crashed on any machine, at any time: a writer on another host
    # ("golden-host", another boot id) whose heartbeat is years old (spec §7.3). The other boot id also
    # makes every reader trust the segment only below synced_off (spec §8.5), the same everywhere.
    stream = dst / "streams" / "main"
    for name in ("claim.000000.json", "status.json"):
        p = stream / name
        doc = json.loads(p.read_text())
        doc.update(host=CRASH_HOST, boot_id=CRASH_BOOT, pid=CRASH_PID, pid_start=CRASH_TIME)
        for field in ("time", "started", "heartbeat"):
            if field in doc:
                doc[field] = CRASH_TIME
        p.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=True) + "\n")
    assert list(stream.glob("wal.*")), "the crash image must hold a WAL segment"
    assert len(list((dst / "history").glob("*.parquet"))) == 1, "the crash image must hold exactly one part"
    return expected(info, r, status="crashed", parquet_rows=r.rows(parted_calls))


# -- expected content --------------------------------------------------------------------------------


def expected(info: dict[str, Any], r: Recorder, status: str, parquet_rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "run": {**info, "format": "1.0"},  # run.json without "created"
        "status": status,
        "streams": {"main": status},
        "config": r.config,
        "summary": dict(sorted(r.summary.items())),
        "rows": r.rows(),  # unresolved, in log order (calls by seq; keys sorted within a call)
        "resolved": r.resolved(),  # per (step, key) the latest value; sorted by step, key
        "parquet_rows": parquet_rows,  # what plain Parquet readers see (a crashed run's tail is not in parts)
        "wide": {"steps": sorted({s for s, _k, _t, _v in r.resolved()}), "types": r.wide_types()},
    }


def self_check(path: Path, exp: dict[str, Any]) -> None:
    """Refuse to write a corpus that this runsync does not read as expected."""
    view = runsync.open_run(path)
    assert view.status == exp["status"], (view.status, exp["status"])
    got = [[r["step"], r["key"], r["type"], _value(r)] for r in view.history(wide=False, format="arrow").to_pylist()]
    assert json.dumps(enc(got)) == json.dumps(enc(exp["resolved"])), (got, exp["resolved"])
    assert json.dumps(enc(view.summary), sort_keys=True) == json.dumps(enc(exp["summary"]), sort_keys=True)
    assert view.config == exp["config"], (view.config, exp["config"])


def _value(r: dict[str, Any]) -> Any:
    t = r["type"]
    return {NULL: None, FLOAT: r["value"], INT: r["int"], BOOL: None if r["value"] is None else bool(r["value"]),
            STRING: r["text"]}[t]


def dumps(doc: Any) -> str:
    """Strict JSON, indented, with each row (a list of scalars) on one line."""
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False)
    text = re.sub(r'\{\s*\n\s*("\$float": "[a-z-]+")\s*\n\s*\}', r"{\1}", text)
    text = re.sub(r"\[\s*\n([^\[\]\n]*(?:\n[^\[\]\n]*)*?)\n\s*\]",
                  lambda m: "[" + " ".join(x.strip() for x in m.group(1).split("\n")) + "]", text)
    assert json.loads(text) == json.loads(json.dumps(doc)), "formatting changed the content"
    return text + "\n"


def main() -> int:
    if ROOT.exists() and "--overwrite-frozen-corpus" not in sys.argv:
        print(f"{ROOT} exists: the v1.0 corpus is frozen (a newer runsync would write a newer format into it); "
              "a new format version gets its own script and directory (make_golden_v12.py)", file=sys.stderr)
        return 2
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"golden01": make_golden01(ROOT), "golden02": make_golden02(ROOT, Path(tmp))}
    for run_id, exp in runs.items():
        self_check(ROOT / run_id, exp)
    doc = {
        "format": "1.0",
        "about": "Expected decoded content of golden-run/*; non-finite floats are {\"$float\": \"nan\"|\"inf\"|\"-inf\"}. "
                 "Rows are [step, key, type, value] with value the typed value (type 0 null, 1 float, 2 int, "
                 "3 bool, 4 string). Generated by make_golden.py.",
        "runs": enc(runs),
    }
    EXPECTED.write_text(dumps(doc), encoding="utf-8")
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) + EXPECTED.stat().st_size
    print(f"wrote {ROOT} and {EXPECTED.name} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
