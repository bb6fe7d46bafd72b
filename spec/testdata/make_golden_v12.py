#!/usr/bin/env python3
"""Generate the format v1.2 golden corpus used by tests/test_compat.py.

    python spec/testdata/make_golden_v12.py

writes

    spec/testdata/v1.2/golden-run/golden12a/   a finished run with everything format 1.2 added: every value
                                               type including MEDIA (§5.2), a call with bad values stored
                                               partially (§5.4), media of all four kinds with one image logged
                                               again in a later media part (§13.1-§13.3), saved files (§13.5),
                                               system rows (§14), a console log (§15) and an environment
                                               record (§16)
    spec/testdata/v1.2/golden-run.expected.json

A separate script rather than more of make_golden.py: that one is frozen with the v1.0 corpus (it
writes into v1.0/ and expects format "1.0"; run today, it would overwrite the v1.0 corpus with files of
the current format). This one reuses its model of log() (Recorder, coerce, JSON helpers) by import
and adds what 1.2 added. As there, the expected content is computed from what the script logs, and
the script refuses to write a corpus that this runsync does not read as expected.

Determinism and privacy (the corpus is public and must read the same on every machine):

- **System rows** go through the writer's real system sub-stream (``streams/main/system/``: claim,
  status, WAL, parts in ``system/``), but the sampler is replaced by a scripted one that emits fixed
  rows: real samples of this machine could not be predicted, and would describe it. Writing a part
  directly with ``write_part`` would leave a ``system/`` table without the sub-stream documents every
  1.2 writer produces.
- **Console** output is what this script prints while the run is active (stdout and stderr, one
  progress bar); the model below applies the §15 rules to it.
- **Environment**: code capture is disabled (no git data, no patch); the scheduler section comes from
  variables set here (everything else of the allowlist is unset first). The machine's own fields —
  host, interpreter paths, command line, working directory, installed packages — are replaced by
  fixed values after the run, and every document's host, boot id and pid are set to golden values.
  The script then checks that no file names this machine (its hostname, paths, kernel, CPU model).

Times (``created``, ``time``, ``heartbeat``, the history ``time`` column) are real, so files are not
byte-for-byte reproducible: compare content, not bytes. Once committed, these files are never
regenerated; a later format version gets its own directory and corpus.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# the v1.0 generator's model of log(); importing it sets RUNSYNC_SILENT and clears runsync variables
from make_golden import (
    BOOL,
    FLOAT,
    INT,
    INT64_MAX,
    INT64_MIN,
    NULL,
    STRING,
    Recorder,
    coerce,
    enc,
    flatten,
    wait_for_parts,
)

for _var in [v for v in os.environ if v.startswith("RUNSYNC_")]:
    if _var != "RUNSYNC_SILENT":
        del os.environ[_var]
_SCHEDULER_PREFIXES = ("SLURM_", "PBS_", "LSB_", "OMPI_", "PMI_", "PMIX_")
_SCHEDULER_NAMES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
                    "TORCHELASTIC_RESTART_COUNT", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES",
                    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
for _var in [v for v in os.environ if v.startswith(_SCHEDULER_PREFIXES) or v in _SCHEDULER_NAMES]:
    del os.environ[_var]

import numpy as np
import pyarrow.parquet as pq

import runsync
import runsync.writer.system
from runsync.writer.media import Media

HERE = Path(__file__).resolve().parent
OUT = HERE / "v1.2"
ROOT = OUT / "golden-run"
EXPECTED = OUT / "golden-run.expected.json"

MEDIA = 5
SEGMENT_SIZE = 64 << 10
GOLDEN_HOST, GOLDEN_BOOT, GOLDEN_PID, GOLDEN_PID_START = "golden-host", "golden-boot", 999999, 1700000000.0
SAVED_MTIME = 1700000000.5  # the saved files' modification time, set before saving

# The job context the writer records (§16 scheduler allowlist); RANK 0 of WORLD_SIZE 1 keeps stream "main".
SCHEDULER_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "golden", "SLURM_PROCID": "0", "SLURM_NTASKS": "1",
                 "RANK": "0", "WORLD_SIZE": "1", "CUDA_VISIBLE_DEVICES": "0"}
EXPECTED_SCHEDULER = {"slurm": {"job_id": "4242", "job_name": "golden", "procid": "0", "ntasks": "1"},
                      "torch": {"rank": 0, "world_size": 1}, "devices": {"cuda_visible_devices": "0"}}

# What replaces the machine's own fields of the environment record (§16).
GOLDEN_ENV_HOST = {"hostname": GOLDEN_HOST, "os": "Linux", "distribution": "Golden Linux 1", "kernel": "6.0.0-golden",
                   "platform": "Linux-6.0.0-golden-x86_64-with-glibc2.36", "machine": "x86_64",
                   "cpu_model": "Golden CPU @ 1.00GHz", "cpu_count": 8, "cpu_count_physical": 4,
                   "memory_bytes": 17179869184,
                   "gpus": [{"index": 0, "name": "Golden GPU", "memory_bytes": 8589934592,
                             "uuid": "GPU-00000000-0000-0000-0000-000000000000", "driver": "550.0"}]}
GOLDEN_ENV_PYTHON = {"version": "3.11.7", "implementation": "CPython", "executable": "/opt/golden/venv/bin/python",
                     "prefix": "/opt/golden/venv", "virtualenv": True, "conda_env": None,
                     "packages": {"numpy": "1.26.4", "pyarrow": "15.0.0", "runsync": "0.1.0"}}
GOLDEN_ENV_COMMAND = {"argv": ["train.py", "--lr", "0.001"], "orig_argv": ["python", "train.py", "--lr", "0.001"],
                      "entry_script": "/opt/golden/work/train.py", "module": None, "cwd": "/opt/golden/work"}

# Scripted system windows (§14: K the window mean, K.max the maximum): two emitted while the run goes,
# the last (partial) one at stop, as the real sampler does.
SYSTEM_ROWS: list[dict[str, Any]] = [
    {"cpu.percent": 12.5, "cpu.percent.max": 25.0, "memory.used_bytes": 1.5e9, "memory.used_bytes.max": 1610612736,
     "proc.threads": 4.0, "proc.threads.max": 5},
    {"cpu.percent": 50.25, "cpu.percent.max": 100.0, "memory.used_bytes": 2.0e9, "memory.used_bytes.max": 2147483648,
     "proc.threads": 6.5, "proc.threads.max": 8, "gpu.0.util_percent": 87.5, "gpu.0.util_percent.max": 99.0},
    {"cpu.percent": 3.0, "cpu.percent.max": 3.0, "memory.used_bytes": 1.0e9, "memory.used_bytes.max": 1000000000,
     "proc.threads": 2.0, "proc.threads.max": 2},
]

# Saved files (§13.5): name → (bytes, policy). Two names share one content (one object).
SAVED: dict[str, tuple[bytes, str]] = {
    "configs/train.yaml": (b"lr: 0.001\nbatch: 128\noptimizer: adam\n", "now"),
    "configs/copy-of-train.yaml": (b"lr: 0.001\nbatch: 128\noptimizer: adam\n", "now"),
    "weights/tiny.bin": (bytes(range(0, 256, 4)), "now"),  # not UTF-8: stored in the expected JSON as hex
    "notes.txt": ("written at the end ✓\n".encode(), "end"),
}


# -- media: the values logged, and what a reader must decode ----------------------------------------

IMAGE = (np.arange(36, dtype=np.uint8).reshape(3, 4, 3) * 7)  # a 4x3 RGB image (height 3, width 4)
GREY = np.array([[0, 255], [128, 64]], dtype=np.uint8)  # a 2x2 greyscale image
HIST_VALUES = [0.5, 1.5, 1.5, 2.5, float("nan"), float("inf")]  # 2 bins over [0.5, 2.5]; NaN and inf dropped
TABLE_COLUMNS, TABLE_ROWS = ["id", "label", "score"], [[1, "cat", 0.5], [2, "dög", -1.25]]
TEXT = "héllo\nwörld 🙂"


def image_value(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "pixels": a.tolist()}


def media_item(step: int, index: int, kind: str, caption: str | None, meta: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"step": step, "index": index, "kind": kind, "caption": caption, "meta": meta, "value": value}


class Recorder12(Recorder):
    """Recorder of make_golden.py plus media values (type MEDIA, text = kind) and bad values (§5.4)."""

    def __init__(self, run: runsync.Run, config: dict[str, Any]) -> None:
        super().__init__(run, config)
        self.media: dict[str, list[dict[str, Any]]] = {}

    def log12(self, data: dict[str, Any], step: int | None = None, commit: bool = True,
              bad: frozenset[str] = frozenset(), media: dict[str, list[dict[str, Any]]] | None = None) -> None:
        """Log ``data``; keys in ``bad`` must be rejected (the others stored, §5.4); ``media`` are the items
        a reader must decode for this call's media keys (without their step, which is filled in here)."""
        try:
            self.run.log(data, step=step, commit=commit)
        except runsync.LogValueError as e:
            assert bad and all(repr(k) in str(e) for k in bad), (bad, e)
        else:
            assert not bad, f"log() accepted {sorted(bad)}"
        s = self.step if step is None else step
        rows = [[s, k, *self._coerce(v)] for k, v in flatten(data) if k not in bad]
        if rows:
            self.calls.append(sorted(rows, key=lambda r: r[1]))
            for _s, k, _t, v in rows:
                if k not in self.manual:
                    self.summary[k] = v
            for key, items in (media or {}).items():
                self.media.setdefault(key, []).extend({**it, "step": s} for it in items)
            if commit:
                self.step = s + 1

    @staticmethod
    def _coerce(v: Any) -> tuple[int, Any]:
        if isinstance(v, Media):
            return MEDIA, v.kind
        if isinstance(v, list) and v and isinstance(v[0], Media):
            return MEDIA, v[0].kind
        return coerce(v)


class ScriptedMonitor:
    """Stands in for SystemMonitor (same constructor): emits SYSTEM_ROWS[:-1] at start, the last at stop."""

    def __init__(self, emit: Any, **_kw: Any) -> None:
        self.emit = emit
        self.rows = [dict(r) for r in SYSTEM_ROWS]

    def start(self) -> None:
        for row in self.rows[:-1]:
            self.emit(time.time(), row)
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        if self.rows:
            self.emit(time.time(), self.rows[-1])
            self.rows = []


# -- console model (§15) ------------------------------------------------------------------------------


def console_stored(written: list[bytes]) -> bytes:
    """What a console log holds for whole lines written in this order: a ``\\r`` followed by anything but
    ``\\n`` discards itself and what came before it on the line."""
    out = []
    for chunk in written:
        lines = re.findall(rb"[^\n]*\n", chunk)
        assert b"".join(lines) == chunk, "the script prints whole lines only"
        for line in lines:
            body, end = (line[:-2], b"\r\n") if line.endswith(b"\r\n") else (line[:-1], b"\n")
            out.append(body.rsplit(b"\r", 1)[-1] + end)
    return b"".join(out)


def say(fd: int, data: bytes, written: list[bytes]) -> None:
    """Write whole lines to descriptor 1 or 2 (the captured terminal) and remember them."""
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    os.write(fd, data)
    written.append(data)
    time.sleep(0.15)  # the capture thread stores this line before the next descriptor speaks


# -- golden12a ---------------------------------------------------------------------------------------------


def make_golden12a(root: Path, tmp: Path) -> dict[str, Any]:
    config = {"lr": 0.001, "batch": 128, "model": {"name": "tiny", "layers": [8, 4]}, "note": "ünïcode ✓",
              "flag": False, "nothing": None}
    settings = runsync.Settings(segment_size=SEGMENT_SIZE, flush_interval=0.02, part_rows=12, part_interval=3600.0,
                                system_interval=3600.0, system_window=3600.0)
    info = {"id": "golden12a", "name": "golden-twelve", "project": "golden", "group": "golden-group",
            "job_type": "train", "tags": ["golden", "v1.2"], "notes": "format v1.2 golden run: media, saved files, "
            "system table, console, environment"}
    work = tmp / "work"
    for name, (data, _policy) in SAVED.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, (SAVED_MTIME, SAVED_MTIME))
    os.environ.update(SCHEDULER_ENV)
    real_monitor = runsync.writer.system.SystemMonitor
    runsync.writer.system.SystemMonitor = ScriptedMonitor  # type: ignore[misc,assignment]
    try:
        run = runsync.init(**info, config=config, dir=root, settings=settings, system=True, console=True,
                           save_code=False)
    finally:
        runsync.writer.system.SystemMonitor = real_monitor  # type: ignore[misc]
        for var in SCHEDULER_ENV:
            del os.environ[var]
    r = Recorder12(run, config)
    written: list[bytes] = []

    # first history part (part_rows = 12) and first media part: scalars, and an image at step 2
    for step in range(2):
        r.log12({"train": {"loss": 1.0 / (step + 1), "acc": step / 4}, "epoch": 0, "lr": 0.1 / (step + 1)})
    img_meta = {"height": 3, "mode": "RGB", "width": 4}
    r.log12({"train": {"loss": 0.25, "acc": 0.75}, "epoch": 1, "image": runsync.Image(IMAGE, caption="val 0")},
            media={"image": [media_item(0, 0, "image", "val 0", img_meta, image_value(IMAGE))]})
    wait_for_parts(run.dir, 1)
    _wait_for(run.dir / "media", 1)
    say(1, b"epoch 0: loss 1.0\n", written)
    say(1, b"\r 10%\r 50%\r100%\n", written)  # a progress bar, stored as its final state
    say(2, "warning: ünïcode on stderr\n".encode(), written)

    # second part (written by finish): media of every kind, the image again, every scalar type
    r.log12({"image": runsync.Image(IMAGE, caption="val 0 again"),  # same bytes: stored once (§13.3)
             "samples": [runsync.Image(IMAGE), runsync.Image(GREY, caption="grey")],
             "weights": runsync.Histogram(HIST_VALUES, bins=2),
             "counts": runsync.Histogram(([3, 0, 5], [-1.0, 0.0, 0.25, 1.0]), caption="ready-made"),
             "preds": runsync.Table(columns=TABLE_COLUMNS, rows=TABLE_ROWS, caption="two rows"),
             "generated": runsync.Text(TEXT)},
            media={"image": [media_item(0, 0, "image", "val 0 again", img_meta, image_value(IMAGE))],
                   "samples": [media_item(0, 0, "image", None, img_meta, image_value(IMAGE)),
                               media_item(0, 1, "image", "grey", {"height": 2, "mode": "L", "width": 2},
                                          image_value(GREY))],
                   "weights": [media_item(0, 0, "histogram", None,
                                          {"bins": 2, "max": 2.5, "min": 0.5, "nonfinite": 2, "values": 4},
                                          {"counts": [1, 3], "edges": [0.5, 1.5, 2.5]})],
                   "counts": [media_item(0, 0, "histogram", "ready-made", {"bins": 3},
                                         {"counts": [3, 0, 5], "edges": [-1.0, 0.0, 0.25, 1.0]})],
                   "preds": [media_item(0, 0, "table", "two rows", {"columns": TABLE_COLUMNS, "rows": 2},
                                        {"columns": TABLE_COLUMNS, "types": ["int64", "string", "double"],
                                         "rows": TABLE_ROWS})],
                   "generated": [media_item(0, 0, "text", None, {"chars": len(TEXT)}, TEXT)]})
    r.log12({"train/loss": float("nan"), "note": "héllo 🙂\nline two", "val/acc": None, "mixed": 1,
             "extreme": {"min": INT64_MIN, "max": INT64_MAX}, "neg": -0.0, "inf": float("inf"),
             "ninf": float("-inf"), "flag": True})
    r.log12({"np": {"f32": np.float32(0.5), "i64": np.int64(-7), "bool": np.bool_(False), "zero_d": np.array(2.25)},
             "mixed": "two"}, commit=False)
    r.log12({"mixed": 3.5})  # same step as the previous call
    say(1, b"epoch 1: loss 0.25\r\n", written)  # \r\n is kept as is
    # a call with bad values: the valid ones are stored as one record, then LogValueError (§5.4)
    r.log12({"partial": {"ok": 7, "list": [1, 2]}, "_reserved": 1.0, "partial_note": "kept"},
            bad=frozenset({"partial/list", "_reserved"}))
    r.log12({"train/loss": 0.125}, step=1)  # a repeated, older step (in the first part): this value wins
    r.log12({"image": runsync.Image(IMAGE)}, step=7,  # the image a third time, at a later step
            media={"image": [media_item(0, 0, "image", None, img_meta, image_value(IMAGE))]})
    r.update_config("late_param", 42)
    r.set_summary("best_acc", 0.875)
    r.log12({"train/loss": 0.0625})

    names = [n for n, (_d, policy) in SAVED.items() if policy == "now"]
    assert run.save("**/*.yaml", base_path=work) == sorted(n for n in names if n.endswith(".yaml"))
    assert run.save("weights/tiny.bin", base_path=work) == ["weights/tiny.bin"]
    assert run.save("notes.txt", base_path=work, policy="end") == ["notes.txt"]
    say(2, b"done\n", written)
    run.finish()
    order = sorted(n for n in names if n.endswith(".yaml")) + ["weights/tiny.bin", "notes.txt"]

    out = expected12(info, r, status="finished")
    out["media"] = r.media
    out["files"] = [{"name": n, "sha256": hashlib.sha256(SAVED[n][0]).hexdigest(), "size": len(SAVED[n][0]),
                     "mtime": SAVED_MTIME, "policy": SAVED[n][1], **content(SAVED[n][0])} for n in order]
    out["system"] = system_expected()
    out["console"] = {"main.000000.000000.log": console_stored(written).decode("utf-8")}
    out["environment"] = {"format": "1.2", "stream": "main", "incarnation": 0, "code": "disabled",
                          "code_reason": "disabled", "git": None, "host": GOLDEN_ENV_HOST,
                          "python": GOLDEN_ENV_PYTHON, "command": GOLDEN_ENV_COMMAND,
                          "scheduler": EXPECTED_SCHEDULER, "errors": []}
    scrub(run.dir, out["environment"])
    return out


def content(data: bytes) -> dict[str, str]:
    """A saved file's bytes in the expected JSON: ``text`` if they are UTF-8, else ``hex``."""
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"hex": data.hex()}


def content_bytes(f: dict[str, Any]) -> bytes:
    return f["text"].encode("utf-8") if "text" in f else bytes.fromhex(f["hex"])


def _wait_for(d: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(d.glob("*.parquet"))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"no part appeared in {d} within {timeout} s")
        time.sleep(0.01)


def system_expected() -> dict[str, Any]:
    """The system table (§14): sample n is step n of stream main; keys sorted within a row."""
    rows = [[n, k, *coerce(v)] for n, row in enumerate(SYSTEM_ROWS) for k, v in sorted(row.items())]
    return {"streams": {"main": rows}}


def expected12(info: dict[str, Any], r: Recorder12, status: str) -> dict[str, Any]:
    """As make_golden.expected(): every row is in a part once the run finished."""
    return {
        "run": {**info, "format": "1.2"},  # run.json without "created"
        "status": status,
        "streams": {"main": status},
        "config": r.config,
        "summary": dict(sorted(r.summary.items())),
        "rows": r.rows(),
        "resolved": r.resolved(),
        "parquet_rows": r.rows(),
        "wide": {"steps": sorted({s for s, _k, _t, _v in r.resolved()}), "types": r.wide_types()},
    }


# -- making the run machine-neutral ---------------------------------------------------------------------


def scrub(run_dir: Path, environment: dict[str, Any]) -> None:
    """Golden host, boot id and pid in every claim and status (main stream and system sub-stream); the
    environment record's machine fields replaced by ``environment``'s (its time kept)."""
    for p in sorted(run_dir.glob("streams/**/*.json")):
        if not re.fullmatch(r"claim\.[0-9]{6}\.json|status\.json", p.name):
            continue
        doc = json.loads(p.read_text(encoding="utf-8"))
        doc.update(host=GOLDEN_HOST, boot_id=GOLDEN_BOOT, pid=GOLDEN_PID, pid_start=GOLDEN_PID_START)
        _write_json(p, doc)
    env_path = run_dir / "streams" / "main" / "environment.000000.json"
    doc = json.loads(env_path.read_text(encoding="utf-8"))
    missing = {k: doc.get(k) for k in ("code", "code_reason", "git", "scheduler", "errors", "stream", "incarnation")
               if doc.get(k) != environment[k]}
    assert not missing, f"the writer recorded {missing}, not what the script set up"
    assert set(doc) == set(environment) | {"time"}, sorted(set(doc) ^ (set(environment) | {"time"}))
    for section in ("host", "python", "command"):
        assert set(doc[section]) == set(environment[section]), (section, sorted(doc[section]))
    _write_json(env_path, {**environment, "time": doc["time"]})


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=True) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def machine_strings(tmp: Path) -> list[str]:
    """Strings that name this machine or its paths; none may appear in the corpus."""
    found = {socket.gethostname(), platform.release(), os.getcwd(), str(Path.home()), sys.prefix, sys.executable,
             str(HERE), str(tmp), tempfile.gettempdir() + "/"}
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            found.add(line.split(":", 1)[1].strip())
    return sorted(s for s in found if s and len(s) >= 2)


def check_machine_neutral(root: Path, tmp: Path) -> None:
    """Refuse a corpus that names this machine: JSON and log files by string value, every file by path bytes."""
    strings = machine_strings(tmp)
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        for s in strings:
            if len(s) >= 6 and s.encode() in data:
                raise SystemExit(f"{p} names this machine ({s!r})")
        if p.suffix in (".json", ".log"):
            text = data.decode("utf-8")
            for s in strings:
                if json.dumps(s, ensure_ascii=False) in text or re.search(rf"(?<![\w.-]){re.escape(s)}(?![\w.-])", text):
                    raise SystemExit(f"{p} names this machine ({s!r})")


# -- self check -----------------------------------------------------------------------------------------------


def self_check(path: Path, exp: dict[str, Any]) -> None:
    """Refuse to write a corpus that this runsync does not read as expected."""
    view = runsync.open_run(path)
    assert view.status == exp["status"], (view.status, exp["status"])
    got = [[r["step"], r["key"], r["type"], _typed(r)] for r in view.history(wide=False, format="arrow").to_pylist()]
    assert json.dumps(enc(got)) == json.dumps(enc(exp["resolved"])), (got, exp["resolved"])
    assert json.dumps(enc(view.summary), sort_keys=True) == json.dumps(enc(exp["summary"]), sort_keys=True)
    assert view.config == exp["config"], (view.config, exp["config"])
    assert {s["stream"]: s["state"] for s in view.streams()} == exp["streams"]
    for key, items in exp["media"].items():
        got = view.media(key)
        assert [(m.step, m.index, m.kind, m.caption, m.meta) for m in got] == \
            [(e["step"], e["index"], e["kind"], e["caption"], e["meta"]) for e in items], key
        for m, e in zip(got, items):
            assert not m.missing and json.dumps(enc(decoded(m))) == json.dumps(enc(e["value"])), (key, m)
    versions = view.files(versions=True)
    assert [[f.name, f.sha256, f.size, f.mtime, f.policy] for f in versions] == \
        [[f["name"], f["sha256"], f["size"], f["mtime"], f["policy"]] for f in exp["files"]]  # type: ignore[union-attr]
    for f in exp["files"]:
        assert view.file_path(f["name"]).read_bytes() == content_bytes(f)
    got_sys = view.system(wide=False, format="arrow").to_pylist()
    assert [[r["step"], r["key"], r["type"], _typed(r)] for r in got_sys] == exp["system"]["streams"]["main"]
    for name, text in exp["console"].items():
        assert (path / "console" / name).read_bytes() == text.encode("utf-8"), (path / "console" / name).read_bytes()
    assert sorted(p.name for p in (path / "console").iterdir()) == sorted(exp["console"])
    env = json.loads((path / "streams" / "main" / "environment.000000.json").read_text(encoding="utf-8"))
    assert isinstance(env.pop("time"), float) and env == exp["environment"]
    leftovers = [p for p in path.rglob("*") if p.name.startswith("wal.") or p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def _typed(r: dict[str, Any]) -> Any:
    t = r["type"]
    return {NULL: None, FLOAT: r["value"], INT: r["int"], BOOL: None if r["value"] is None else bool(r["value"]),
            STRING: r["text"], MEDIA: r["text"]}[t]


def decoded(m: Any) -> Any:
    """A media item's value in the expected JSON's terms."""
    if m.kind == "image":
        return image_value(m.value)
    if m.kind == "histogram":
        return {"counts": m.value.counts.tolist(), "edges": m.value.edges.tolist()}
    if m.kind == "table":
        t = pq.read_table(io.BytesIO(m.data))
        return {"columns": t.column_names, "types": [str(f.type) for f in t.schema],
                "rows": [list(r.values()) for r in t.to_pylist()]}
    return m.value


def dumps(doc: Any) -> str:
    """Strict JSON, indented, with each list of scalars (a row, a pixel) on one line (make_golden.dumps
    puts lists of objects on one line too)."""
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False)
    text = re.sub(r'\{\s*\n\s*("\$float": "[a-z-]+")\s*\n\s*\}', r"{\1}", text)
    scalar = r'(?:[^\[\]{}\n]|\{"\$float": "[a-z-]+"\})*'  # a line without a list or object but a $float
    text = re.sub(rf"\[\s*\n({scalar}(?:\n{scalar})*?)\n\s*\]",
                  lambda m: "[" + " ".join(x.strip() for x in m.group(1).split("\n")) + "]", text)
    assert json.loads(text) == json.loads(json.dumps(doc)), "formatting changed the content"
    return text + "\n"


def main() -> int:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"golden12a": make_golden12a(ROOT, Path(tmp))}
        for run_id, exp in runs.items():
            self_check(ROOT / run_id, exp)
        check_machine_neutral(ROOT, Path(tmp))
    doc = {
        "format": "1.2",
        "about": "Expected decoded content of golden-run/*; non-finite floats are {\"$float\": \"nan\"|\"inf\"|\"-inf\"}. "
                 "Rows are [step, key, type, value] with value the typed value (type 0 null, 1 float, 2 int, "
                 "3 bool, 4 string, 5 media: its kind). media: key -> items (step, index, kind, caption, meta, "
                 "decoded value: image shape and pixels, histogram counts and edges, table columns, Arrow types "
                 "and rows, text). files: every save, oldest first, with its bytes as text (UTF-8) or hex. system: the "
                 "system table's rows per stream. console: file name -> content. environment: the document "
                 "without its time. Generated by make_golden_v12.py.",
        "runs": enc(runs),
    }
    EXPECTED.write_text(dumps(doc), encoding="utf-8")
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) + EXPECTED.stat().st_size
    print(f"wrote {ROOT} and {EXPECTED.name} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
