#!/usr/bin/env python
"""Reading at the speed of the engine (issue 19): runsync's reader beside DuckDB on the same files.

    python bench/bench_reader.py                 # 1M steps x 10 keys; 100 runs x 100k steps x 10 keys for sql
    python bench/bench_reader.py --quick         # 200k steps; 20 runs x 50k steps
    python bench/bench_reader.py --keep DIR      # write the runs into DIR and keep them (reused if present)

Each measurement runs in a fresh subprocess (warm page cache: the files were just written or read), so
its peak RSS is its own; each figure is the median of --repeats. Printed beside each runsync figure, the
stock engine on the same files in the same run:

1. ``history(keys=[k])``: one key of a 1M-step x 10-key run, ``open_run().history(keys=[k])`` (resolved,
   wide, pandas) against DuckDB reading the run's parts for that key (``read_parquet(...) WHERE key = k``).
   Target: within 1.5x of DuckDB's time; peak RSS within 2x.
2. ``runsync sql`` with the resolved ``history`` view, a group-by over all keys of 100 runs x 100k steps x
   10 keys, against DuckDB's same group-by on the raw files. Target: within 2x and under 1.5 GB RSS.

Nothing is pass/fail; the targets are printed OK/MISS for a person to read. Machines here are shared and
noisy: compare ratios, and run again if the load average is high.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_table, progress, section, status  # noqa: E402

os.environ.setdefault("RUNSYNC_SILENT", "1")

WRITE = textwrap.dedent('''
    import sys, runsync
    root, run_id, steps, keys = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    names = [f"k{i}" for i in range(keys)]
    run = runsync.init(dir=root, id=run_id, settings=runsync.Settings(part_interval=3600))
    for s in range(steps):
        run.log({n: (s * (i + 1)) % 977 / 977.0 for i, n in enumerate(names)})
    run.finish()
''')

MEASURE = textwrap.dedent('''
    import json, resource, sys, time
    kind, arg, key = sys.argv[1], sys.argv[2], sys.argv[3]
    # imports first: the time is the read, warm (the issue's figures); peak RSS includes the libraries
    import duckdb, pandas, pyarrow.parquet, runsync, runsync.reader.sql
    runsync.open_run  # the reader's own imports
    t = time.perf_counter()
    if kind == "runsync-history":
        import runsync
        n = len(runsync.open_run(arg).history(keys=[key]))
    elif kind == "duckdb-history":
        import duckdb
        n = duckdb.sql(f"SELECT step, value FROM read_parquet('{arg}/history/*.parquet') WHERE key = '{key}'"
                       ).fetchdf().shape[0]
    elif kind == "runsync-sql":
        from runsync.reader.sql import sql_connection
        q = "SELECT key, avg(value), max(step) FROM history GROUP BY key"
        n = len(sql_connection(arg, q).sql(q).fetchall())
    elif kind == "duckdb-sql":
        import duckdb
        n = len(duckdb.sql(f"SELECT key, avg(value), max(step) FROM read_parquet('{arg}/*/history/*.parquet') "
                           "GROUP BY key").fetchall())
    dt = time.perf_counter() - t
    print(json.dumps({"seconds": dt, "rows": n, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
''')


def _write(root: Path, run_id: str, steps: int, keys: int) -> None:
    if (root / run_id / "run.json").exists():
        return
    subprocess.run([sys.executable, "-c", WRITE, str(root), run_id, str(steps), str(keys)], check=True)


def _measure(kind: str, arg: str, key: str, repeats: int) -> dict[str, float]:
    got = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", MEASURE, kind, arg, key], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{kind} failed:\n{r.stderr}")
        got.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(g["seconds"] for g in got), "rss_mb": max(g["rss_mb"] for g in got),
            "rows": got[0]["rows"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--only", choices=["history", "sql"])
    args = ap.parse_args()
    steps, runs, run_steps = (200_000, 20, 50_000) if args.quick else (1_000_000, 100, 100_000)
    root = args.keep or Path(tempfile.mkdtemp(prefix="runsync-bench-reader-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"runsync reader benchmark — {time.strftime('%Y-%m-%d %H:%M')}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    try:
        rows = []
        if args.only in (None, "history"):
            section(f"1. history(keys=[k]): one key of a {steps:,}-step x 10-key run")
            progress("writing the run")
            _write(root / "one", "big", steps, 10)
            run = str(root / "one" / "big")
            rs = _measure("runsync-history", run, "k3", args.repeats)
            dd = _measure("duckdb-history", run, "k3", args.repeats)
            ratio, mem = rs["seconds"] / dd["seconds"], rs["rss_mb"] / dd["rss_mb"]
            rows.append(["history(keys=[k])", f"{rs['seconds']:.2f} s", f"{dd['seconds']:.2f} s", f"{ratio:.1f}x",
                         f"{rs['rss_mb']:.0f} / {dd['rss_mb']:.0f} MB", status(ratio <= 1.5 and mem <= 2)])
            assert rs["rows"] == dd["rows"] == steps, (rs, dd)
        if args.only in (None, "sql"):
            section(f"2. runsync sql, resolved history: {runs} runs x {run_steps:,} steps x 10 keys, group by key")
            for i in range(runs):
                progress(f"writing run {i + 1}/{runs}")
                _write(root / "many", f"run{i:04d}", run_steps, 10)
            rs = _measure("runsync-sql", str(root / "many"), "", args.repeats)
            dd = _measure("duckdb-sql", str(root / "many"), "", args.repeats)
            ratio = rs["seconds"] / dd["seconds"]
            rows.append(["sql group-by", f"{rs['seconds']:.2f} s", f"{dd['seconds']:.2f} s", f"{ratio:.1f}x",
                         f"{rs['rss_mb']:.0f} / {dd['rss_mb']:.0f} MB", status(ratio <= 2 and rs["rss_mb"] < 1536)])
        section("summary (targets: history within 1.5x of DuckDB, RSS within 2x; sql within 2x, under 1.5 GB)")
        print(fmt_table(["work", "runsync", "DuckDB", "ratio", "peak RSS runsync / DuckDB", "target"], rows))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
