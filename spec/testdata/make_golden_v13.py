#!/usr/bin/env python3
"""Generate the format v1.3 golden corpus used by tests/test_compat.py.

    python spec/testdata/make_golden_v13.py

writes

    spec/testdata/v1.3/golden-run/golden13a/   a finished run written by a 1.3 writer: every value type, a rewind,
                                               manual summary and a config update; its parts carry what 1.3 parts
                                               carry (the `runsync.format` 1.3 key-value metadata and, where the
                                               writer writes them, Parquet page checksums, §4.1)
    spec/testdata/v1.3/golden-run/golden13b/   one run written by two ranks (streams rank0 and rank1) that log the
                                               same keys at the same steps: 1.3 readers keep both series (§4.5,
                                               §4.6) and take the summary from the first stream in stream order (§3.3)
    spec/testdata/v1.3/golden-run/golden13c/   a failed run whose status.json names the cause (§7.2, since 1.3)
    spec/testdata/v1.3/golden-run.expected.json

Like make_golden_v12.py, a separate script reusing the v1.0 generator's model of log() (Recorder, coerce,
JSON helpers) by import; the v1.0 and v1.2 scripts are frozen with their corpora. The expected content is
computed from what this script logs, and the script refuses to write a corpus that this runsync does not
read as expected. Code capture, system metrics, console capture and the environment record are off: the
v1.2 corpus covers them, and they would describe this machine. Every document's host, boot id and pid
are set to golden values afterwards. Times are real: compare content, not bytes. Once committed, these
files are never regenerated; a later format version gets its own directory and corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from make_golden import INT64_MAX, INT64_MIN, Recorder, dumps, enc, self_check, wait_for_parts  # noqa: E402

for _var in [v for v in os.environ if v.startswith("RUNSYNC_")]:
    if _var != "RUNSYNC_SILENT":
        del os.environ[_var]
os.environ.update(RUNSYNC_SYSTEM="0", RUNSYNC_CONSOLE="0", RUNSYNC_ENVIRONMENT="0", RUNSYNC_DISABLE_CODE="1")
for _var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
    os.environ.pop(_var, None)

import runsync  # noqa: E402
from runsync.format.version import FORMAT_VERSION  # noqa: E402

HERE = Path(__file__).resolve().parent
# --out DIR writes a trial corpus elsewhere (to look at it before committing one)
OUT = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else HERE / "v1.3"
ROOT = OUT / "golden-run"
EXPECTED = OUT / "golden-run.expected.json"
SEGMENT_SIZE = 64 << 10
GOLDEN_HOST, GOLDEN_BOOT, GOLDEN_PID, GOLDEN_PID_START = "golden-host", "golden-boot", 999999, 1700000000.0


def _settings(part_rows: int) -> runsync.Settings:
    return runsync.Settings(segment_size=SEGMENT_SIZE, flush_interval=0.02, part_rows=part_rows, part_interval=3600.0)


def make_golden13a(root: Path) -> dict[str, Any]:
    config = {"lr": 0.002, "optimizer": {"name": "sgd", "momentum": 0.9}, "note": "ünïcode ✓"}
    info = {"id": "golden13a", "name": "golden-thirteen-a", "project": "golden", "group": None, "job_type": "train",
            "tags": ["golden", "v1.3"], "notes": "format v1.3 golden run a: a finished run of a 1.3 writer"}
    run = runsync.init(**info, config=config, dir=root, settings=_settings(20))
    r = Recorder(run, config)
    for step in range(5):  # 20 rows: one part
        r.log({"loss": 1.0 / (step + 1), "acc": step / 8, "epoch": step // 2, "warm": step < 2})
    wait_for_parts(run.dir, 1)
    r.log({"loss": float("nan"), "text": "héllo 🙂", "none": None, "big": INT64_MAX, "small": INT64_MIN})
    r.log({"loss": 0.25}, step=2)  # a rewind: this value wins at step 2 (§4.5, within the stream)
    r.update_config("late", {"param": 7})
    r.set_summary("best", 0.875)
    r.log({"loss": 0.125})
    run.finish()
    return _expected(info, {"main": r}, status="finished")


def make_golden13b(root: Path) -> dict[str, Any]:
    info = {"id": "golden13b", "name": "golden-thirteen-b", "project": "golden", "group": "ddp", "job_type": "train",
            "tags": ["golden", "v1.3", "ranks"], "notes": "format v1.3 golden run b: two ranks, one run"}
    recs: dict[str, Recorder] = {}
    for rank in range(2):
        config = {"world_size": 2, "lr": 0.01}
        run = runsync.init(**info, config=config, dir=root, stream=f"rank{rank}", settings=_settings(1000))
        r = Recorder(run, config)
        for step in range(6):  # the same key at the same steps: different measurements, both kept
            r.log({"loss": 1.0 / (step + 1) + rank, "rank": rank})
        if rank == 1:
            r.log({"loss": 9.0}, step=3)  # a rewind within rank1 only
            r.log({"only1": "rank one"})
        run.finish()
        recs[f"rank{rank}"] = r
    return _expected(info, recs, status="finished")


def make_golden13c(root: Path) -> dict[str, Any]:
    info = {"id": "golden13c", "name": "golden-thirteen-c", "project": "golden", "group": None, "job_type": None,
            "tags": [], "notes": None}
    config = {"lr": 0.1}
    r: Recorder | None = None
    try:
        with runsync.init(**info, config=config, dir=root, settings=_settings(1000)) as run:
            r = Recorder(run, config)
            r.log({"loss": 2.0})
            r.log({"loss": float("inf")})
            raise FloatingPointError("loss diverged at step 1")
    except FloatingPointError:
        pass
    assert r is not None
    exp = _expected(info, {"main": r}, status="failed")
    exp["errors"] = {"main": "FloatingPointError: loss diverged at step 1"}
    return exp


def _expected(info: dict[str, Any], recs: dict[str, Recorder], status: str) -> dict[str, Any]:
    """As make_golden.expected, per stream where there are several (the wide form then has a stream column)."""
    order = sorted(recs, key=lambda s: (0, 0) if s == "main" else (1, int(s[4:])) if s.startswith("rank") else (2, 0))
    first = recs[order[0]]
    summary: dict[str, Any] = {}
    for s in reversed(order):  # §3.3 (1.3): a key's value comes from the first stream in stream order
        summary.update(recs[s].summary)
    config: dict[str, Any] = {}
    for s in order:  # §3.2 (1.3): streams merged in the order they started
        config.update(recs[s].config)
    out: dict[str, Any] = {
        "run": {**info, "format": FORMAT_VERSION},
        "status": status,
        "streams": {s: status for s in order},
        "config": config,
        "summary": dict(sorted(summary.items())),
    }
    if len(recs) == 1:
        out.update(rows=first.rows(), resolved=first.resolved(), parquet_rows=first.rows(),
                   wide={"steps": sorted({s for s, _k, _t, _v in first.resolved()}), "types": first.wide_types()})
    else:
        out["per_stream"] = {s: {"rows": recs[s].rows(), "resolved": recs[s].resolved(),
                                 "types": recs[s].wide_types()} for s in order}
    return out


def _golden_identity(run_dir: Path) -> None:
    """Host, boot and pid of every claim and status: golden values (the corpus must not describe this machine)."""
    for p in sorted(run_dir.glob("streams/*/*.json")):
        doc = json.loads(p.read_text())
        if not isinstance(doc, dict) or "pid" not in doc and "host" not in doc:
            continue
        for k, v in (("host", GOLDEN_HOST), ("boot_id", GOLDEN_BOOT), ("pid", GOLDEN_PID),
                     ("pid_start", GOLDEN_PID_START)):
            if k in doc:
                doc[k] = v
        p.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=True) + "\n")


def _check(root: Path, run_id: str, exp: dict[str, Any]) -> None:
    view = runsync.open_run(root / run_id)
    assert view.status == exp["status"], (run_id, view.status)
    assert view.config == exp["config"], (run_id, view.config, exp["config"])
    assert json.dumps(enc(view.summary), sort_keys=True) == json.dumps(enc(exp["summary"]), sort_keys=True), run_id
    for s in view.streams():
        if "errors" in exp:
            assert s.get("error") == exp["errors"][s["stream"]], (run_id, s)
    if "per_stream" in exp:
        for stream, want in exp["per_stream"].items():
            got = view.history(streams=[stream], wide=False, format="arrow").to_pylist()
            got_rows = [[g["step"], g["key"], g["type"], g["value"] if g["type"] == 1 else g["int"] if g["type"] == 2
                         else g["text"]] for g in got]
            assert json.dumps(enc(got_rows)) == json.dumps(enc(want["resolved"])), (run_id, stream, got_rows)
        wide = view.history()
        assert "stream" in wide.columns and len(wide) == sum(len({r[0] for r in w["resolved"]})
                                                             for w in exp["per_stream"].values())
    else:
        self_check(root / run_id, exp)


def main() -> int:
    if ROOT.exists():
        print(f"{ROOT} exists: the v1.3 corpus is frozen once committed; a later format version gets its own "
              "script and directory", file=sys.stderr)
        return 2
    ROOT.mkdir(parents=True)
    runs = {"golden13a": make_golden13a(ROOT), "golden13b": make_golden13b(ROOT), "golden13c": make_golden13c(ROOT)}
    for run_id in runs:
        _golden_identity(ROOT / run_id)
        shutil.rmtree(ROOT / run_id / ".tmp", ignore_errors=True)
    for run_id, exp in runs.items():
        _check(ROOT, run_id, exp)
    leftovers = [p for p in ROOT.rglob("*") if p.name.endswith(".tmp") or p.name == "__pycache__"]
    assert not leftovers, leftovers
    doc = {
        "format": FORMAT_VERSION,
        "about": "Expected decoded content of golden-run/*; non-finite floats are {\"$float\": \"nan\"|\"inf\"|\"-inf\"}. "
                 "Rows are [step, key, type, value] with value the typed value. Runs with several streams give "
                 "rows per stream under per_stream. Generated by make_golden_v13.py.",
        "runs": enc(runs),
    }
    EXPECTED.write_text(dumps(doc), encoding="utf-8")
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) + EXPECTED.stat().st_size
    print(f"wrote {ROOT} and {EXPECTED.name} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
