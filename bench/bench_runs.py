#!/usr/bin/env python
"""How long listing 10,000 runs takes: ``runsync.runs()`` / ``runsync runs`` cold and warm.

    python bench/bench_runs.py               # 10,000 synthetic runs
    python bench/bench_runs.py --runs 2000   # fewer
    python bench/bench_runs.py --keep DIR    # write the runs into DIR and keep them (reused if present)

The runs are written directly as the JSON documents of spec §3 and §7 (run.json,
claim, status, config, summary), not by running the writer 10,000 times: the
listing reads nothing else. The mix is what a cluster's runs directory holds:
mostly finished runs, some failed, some crashed (a writer on another host with
an old heartbeat, or a dead pid on this host), a few running (claimed by this
process, so they are alive while the benchmark runs) and a few with two streams.

Printed, each the median of --repeats:

- ``RunView per run``: the baseline, records built through ``RunView.meta`` and
  ``RunView.documents()`` as runsync 0.1.0's ``run_records()`` did (once: slow);
- ``no index``: ``run_records(root, cache=False)``, the single-pass record
  builder, every document read and every liveness decided afresh;
- ``cold``: the first listing with the index (reads everything, writes
  ``<root>/.runsync/index/runs.json``);
- ``warm``: later listings (stat every file each record depends on; rebuild
  only what changed; liveness of non-terminal runs recomputed);
- ``warm + where/sort``: the same plus a --where filter and a sort;
- ``DataFrame``: ``runsync.runs(root)`` warm, pandas included.

Nothing is pass/fail.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RUNSYNC_SILENT", "1")

import psutil

from runsync.format.liveness import host_identity
from runsync.format.meta import dump_json
from runsync.reader import index as run_index
from runsync.reader.runs import run_records, runs, select_records

ADJ = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively", "proud"]
NOUN = ["river", "snow", "forest", "moon", "field", "star", "cloud", "stone", "wave", "leaf"]


def _write(path: Path, doc: dict) -> None:
    path.write_bytes(dump_json(doc))


def make_runs(root: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` synthetic runs under ``root`` following the field tables of spec §3 and §7."""
    rnd = random.Random(seed)
    host, boot = host_identity()
    me = psutil.Process()
    my_pid, my_start = me.pid, me.create_time()
    now = time.time()
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rid = f"r{i:07d}"
        d = root / rid
        (d / "history").mkdir(parents=True)
        created = now - rnd.uniform(60, 90 * 86400)
        kind = rnd.choices(["finished", "failed", "crashed-other", "crashed-here", "running"], [85, 5, 5, 3, 2])[0]
        _write(d / "run.json", {
            "id": rid, "name": f"{rnd.choice(ADJ)}-{rnd.choice(NOUN)}-{rnd.randrange(1000)}",
            "project": rnd.choice(["resnet", "bert", "gpt"]), "created": created,
            "group": rnd.choice([None, "sweep-1", "sweep-2", "ablation"]), "job_type": rnd.choice([None, "train", "eval"]),
            "tags": rnd.sample(["baseline", "fp16", "big", "debug", "final"], rnd.randrange(3)), "notes": None,
            "format": "1.1",
        })
        for s_i in range(2 if rnd.random() < 0.05 else 1):
            stream = "main" if s_i == 0 else f"rank{s_i}"
            sd = d / "streams" / stream
            sd.mkdir(parents=True)
            steps = rnd.randrange(100, 100000)
            started = created + rnd.uniform(0.1, 2)
            dur = rnd.uniform(60, 86400)
            if kind == "running":
                c_host, c_boot, pid, pid_start, beat = host, boot, my_pid, my_start, now - 1
            elif kind == "crashed-here":
                c_host, c_boot, pid, pid_start, beat = host, boot, 4_000_000 + i, created - 5, started + dur
            else:
                c_host, c_boot, pid, pid_start, beat = "node-17", "boot-x", 1000 + i, created - 5, started + dur
            claim = {"stream": stream, "incarnation": 0, "host": c_host, "boot_id": c_boot, "pid": pid,
                     "pid_start": pid_start, "time": started, "first_seq": 0, "heartbeat_interval": 5.0,
                     "time_floor": float("-inf"), "format": "1.1"}
            _write(sd / "claim.000000.json", claim)
            final = kind in ("finished", "failed")
            _write(sd / "status.json", {
                "stream": stream, "incarnation": 0, "state": kind if final else "running",
                "host": c_host, "boot_id": c_boot, "pid": pid, "pid_start": pid_start, "started": started,
                "heartbeat": beat, "heartbeat_interval": 5.0, "ended": beat if final else None,
                "exit_code": (0 if kind == "finished" else 1) if final else None,
                "last_seq": steps + 1, "last_step": steps - 1, "dropped_rows": 0, "error": None, "format": "1.1",
            })
            _write(sd / "config.json", {"applied_seq": 0, "format": "1.1", "config": {
                "lr": rnd.choice([1e-4, 3e-4, 1e-3, 3e-3]), "batch_size": rnd.choice([32, 64, 128, 256]),
                "epochs": rnd.randrange(1, 100), "seed": rnd.randrange(10**6),
                "optimizer": {"name": rnd.choice(["adam", "sgd", "adamw"]), "momentum": 0.9, "wd": 1e-4},
                "model": {"arch": rnd.choice(["resnet18", "resnet50", "vit-b"]), "layers": [64, 128, 256],
                          "dropout": rnd.random() / 2},
                "data": {"path": f"/datasets/imagenet/{rnd.randrange(10)}", "augment": rnd.random() < 0.5},
            }})
            values = {"loss": rnd.random(), "val/loss": rnd.random(), "val/acc": rnd.random(),
                      "train/acc": rnd.random(), "lr": 1e-4, "epoch": rnd.randrange(100),
                      "best_val_acc": rnd.random(), "note": rnd.choice(["ok", "diverged"])}
            _write(sd / "summary.json", {"applied_seq": steps + 1, "format": "1.1", "manual": ["best_val_acc"],
                                         "time": {k: beat for k in values}, "values": values})


def runview_records(root: Path) -> list[dict]:
    """Records the way runsync 0.1.0 built them: a RunView per run (the baseline)."""
    from runsync.format.layout import iter_run_dirs
    from runsync.reader.run import RunView

    out = []
    for d in iter_run_dirs(root):
        view = RunView(d)
        meta = view.meta
        rec = {"id": view.info.id, "status": meta["status"], "duration": meta["duration"],
               "steps": max([s.get("last_step", -1) for s in meta["streams"]] + [-1]) + 1}
        config, summary = view.documents()
        rec.update(run_index.flatten_dict(config, "config."))
        rec.update(run_index.flatten_dict(summary, "summary."))
        out.append(rec)
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="write runs here and keep them (reused when present)")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        root = Path(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="runsync-bench-runs-")
        root = Path(tmp) / "runs"
    try:
        if not root.is_dir():
            t0 = time.perf_counter()
            make_runs(root, args.runs)
            print(f"wrote {args.runs} synthetic runs in {time.perf_counter() - t0:.1f} s under {root}")
        # Files modified less than RACY_SECONDS ago are never trusted to the index (see index.py); wait them out.
        time.sleep(run_index.RACY_SECONDS + 0.1)
        shutil.rmtree(root / ".runsync" / "index", ignore_errors=True)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")

        t_base, _ = timed(lambda: runview_records(root), 1)
        t_none, (recs, errs) = timed(lambda: run_records(root, cache=False), args.repeats)
        n = len(recs)
        t0 = time.perf_counter()
        run_records(root)
        t_cold = time.perf_counter() - t0
        t_warm, _ = timed(lambda: run_records(root), args.repeats)
        where = "status = finished and config.optimizer.name in [adam, adamw] and summary.val/acc > 0.5"
        t_query, sel = timed(lambda: select_records(root, where=where, sort=["-summary.val/acc", "name"]),
                             args.repeats)
        t_df, _ = timed(lambda: runs(root), args.repeats)
        print(f"{n} runs read ({len(errs)} unreadable); {len(sel[0])} match {where!r}")
        for label, t in [("RunView per run (0.1.0)", t_base), ("no index", t_none), ("cold (index written)", t_cold), ("warm", t_warm),
                         ("warm + where/sort", t_query), ("DataFrame (warm)", t_df)]:
            print(f"  {label:<24} {t:7.2f} s   {t / max(n, 1) * 1e6:7.1f} µs/run")
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
