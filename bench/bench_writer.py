#!/usr/bin/env python
"""Performance benchmark for the runsync writer.

    python bench/bench_writer.py                  # full run (~3-5 min on 2 cores)
    python bench/bench_writer.py --quick          # smoke run (~1-1.5 min)
    python bench/bench_writer.py --sidecars-only  # only section 5, sidecars (~2 min; with --quick ~1 min)

Every number is compared with a baseline measured in the same process, in the
same run, on the same machine. The issue's targets are printed next to each
measurement with OK/MISS for a human to read; nothing here fails on them (the
script exits 0 unless something actually breaks, e.g. a read-back mismatch).

See bench/README.md for what each section measures.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("RUNSYNC_SILENT", "1")

import numpy as np  # noqa: E402

import runsync  # noqa: E402
from _common import fmt_table, med, note, progress, section, status  # noqa: E402 (bench/ is on sys.path)

try:
    import psutil  # runsync depends on it; still optional here
except ImportError:  # pragma: no cover
    psutil = None

# 10 float scalars, keys as a training loop would name them.
KEYS10 = [
    "train/loss", "train/acc", "train/lr", "train/grad_norm", "train/ppl",
    "val/loss", "val/acc", "sys/gpu_util", "sys/mem_frac", "perf/tokens_per_s",
]
POOL_SIZE = 4096  # distinct dicts cycled through, so values change call to call


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def make_pool(seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((POOL_SIZE, len(KEYS10))).tolist()
    return [dict(zip(KEYS10, row)) for row in vals]


def tmpdir(tag: str) -> str:
    return tempfile.mkdtemp(prefix=f"runsync-bench-{tag}-")


def us(ns: float) -> float:
    return ns / 1000.0


def pct(samples: list[int], qs=(50, 90, 99, 99.9)) -> dict[float, float]:
    a = np.asarray(samples, dtype=np.int64)
    return dict(zip(qs, np.percentile(a, qs).tolist()))


class RssSampler:
    """Samples this process's RSS from a thread (psutil), with marks for phases."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t: threading.Thread | None = None
        self._proc = psutil.Process() if psutil is not None else None

    def rss(self) -> int:
        if self._proc is not None:
            return self._proc.memory_info().rss
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    def start(self) -> RssSampler:
        self.base = self.rss()
        self._t = threading.Thread(target=self._run, daemon=True, name="bench-rss")
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.perf_counter(), self.rss()))

    def stop(self) -> None:
        self._stop.set()
        if self._t is not None:
            self._t.join()
        self.samples.append((time.perf_counter(), self.rss()))

    def mark(self) -> float:
        """Take a sample now (phase boundary) and return its time."""
        t = time.perf_counter()
        self.samples.append((t, self.rss()))
        return t

    def peak_growth(self, since: float = float("-inf"), until: float = float("inf")) -> int:
        """Peak RSS above the starting RSS among samples in [since, until]."""
        vals = [r for t, r in self.samples if since <= t <= until]
        return (max(vals) if vals else self.base) - self.base


def dir_bytes(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


# ---------------------------------------------------------------------------
# timed loops: all have the same shape so the timer/loop cost is comparable
# ---------------------------------------------------------------------------

def time_empty(pool: list[dict], n: int) -> list[int]:
    pc = time.perf_counter_ns
    out = [0] * n
    mask = len(pool) - 1
    for i in range(n):
        d = pool[i & mask]  # noqa: F841
        t0 = pc()
        t1 = pc()
        out[i] = t1 - t0
    return out


def _noop(d: Any) -> None:
    pass


def time_call(fn: Callable[[Any], Any], pool: list[dict], n: int) -> list[int]:
    pc = time.perf_counter_ns
    out = [0] * n
    mask = len(pool) - 1
    for i in range(n):
        d = pool[i & mask]
        t0 = pc()
        fn(d)
        t1 = pc()
        out[i] = t1 - t0
    return out


def time_floor(pool: list[dict], n: int) -> list[int]:
    """The floor: copy the dict and append it to a list, timed like log()."""
    pc = time.perf_counter_ns
    out = [0] * n
    mask = len(pool) - 1
    lst: list[dict] = []
    ap = lst.append
    for i in range(n):
        d = pool[i & mask]
        t0 = pc()
        ap(dict(d))
        t1 = pc()
        out[i] = t1 - t0
    del lst
    return out


def warm(fn: Callable[[Any], Any], pool: list[dict], n: int) -> None:
    mask = len(pool) - 1
    for i in range(n):
        fn(pool[i & mask])


# ---------------------------------------------------------------------------
# 1. log() latency
# ---------------------------------------------------------------------------

def bench_latency(cfg: argparse.Namespace, pool: list[dict], results: dict) -> None:
    section(f"1. run.log() latency, 10 float scalars, caller's thread "
            f"({cfg.lat_calls:,} timed calls x {cfg.repeats} repeats, medians of repeats)")
    qs = (50, 90, 99, 99.9)
    per: dict[str, list[dict[float, float]]] = {"empty": [], "noop": [], "floor": [], "runsync": []}
    for r in range(cfg.repeats):
        progress(f"latency repeat {r + 1}/{cfg.repeats}")
        per["empty"].append(pct(time_empty(pool, cfg.lat_calls), qs))
        per["noop"].append(pct(time_call(_noop, pool, cfg.lat_calls), qs))
        per["floor"].append(pct(time_floor(pool, cfg.lat_calls), qs))
        gc.collect()
        d = tmpdir("lat")
        try:
            run = runsync.init(project="bench", dir=d, settings=runsync.Settings())
            warm(run.log, pool, cfg.warmup)
            per["runsync"].append(pct(time_call(run.log, pool, cfg.lat_calls), qs))
            run.finish()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        gc.collect()

    agg = {k: {q: med([p[q] for p in v]) for q in qs} for k, v in per.items()}
    overhead = agg["empty"][50]

    def net(name: str) -> dict[float, float]:
        return {q: max(0.0, agg[name][q] - overhead) for q in qs}

    floor, rs, noop = net("floor"), net("runsync"), net("noop")
    wb = bench_wandb(cfg, pool)

    rows = [["timer overhead (empty timed region, raw)"] + [f"{us(agg['empty'][q]):.3f}" for q in qs] + ["", ""]]
    rows.append(["no-op function call (net, for scale)"] + [f"{us(noop[q]):.3f}" for q in qs] + ["", ""])
    rows.append(["floor: lst.append(dict(d)) (net)"] + [f"{us(floor[q]):.3f}" for q in qs] + ["1.0x", ""])
    rows.append(["runsync run.log(d) (net)"] + [f"{us(rs[q]):.3f}" for q in qs]
                + [f"{rs[50] / floor[50]:.1f}x" if floor[50] else "-", ""])
    if isinstance(wb, dict):
        wbn = {q: max(0.0, wb[q] - overhead) for q in qs}
        rows.append([f"wandb offline run.log(d) (net, {cfg.wandb_calls:,} calls)"] + [f"{us(wbn[q]):.3f}" for q in qs]
                    + [f"{wbn[50] / floor[50]:.1f}x" if floor[50] else "-", ""])
    print(fmt_table(["µs per call", "median", "p90", "p99", "p99.9", "vs floor", ""], rows))
    note(f"net = raw percentile minus the timer overhead median ({us(overhead):.3f} µs); gc enabled; "
         f"values cycle through {POOL_SIZE} pre-built dicts")

    tgt = []
    m, p99 = us(rs[50]), us(rs[99])
    tgt.append(["log() median", f"{m:.2f} µs", "≤ 3 µs (goal ≤ 1.5 µs)",
                f"{status(m <= 3.0)} / goal {status(m <= 1.5)}"])
    tgt.append(["log() p99", f"{p99:.2f} µs", "≤ 20 µs", status(p99 <= 20.0)])
    if isinstance(wb, dict):
        ratio = max(0.0, wb[50] - overhead) / rs[50] if rs[50] else float("inf")
        tgt.append(["runsync faster than W&B offline (median)",
                    f"{ratio:.1f}x (runsync/wandb = {1 / ratio:.4f})", "≥ 25x", status(ratio >= 25.0)])
    else:
        tgt.append(["vs W&B offline", str(wb), "≥ 25x", "n/a"])
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["latency"] = tgt


def bench_wandb(cfg: argparse.Namespace, pool: list[dict]) -> dict[float, float] | str:
    try:
        import wandb  # type: ignore[import-not-found]
    except ImportError:
        msg = "wandb not installed (pip install wandb to compare)"
        note(msg)
        return msg
    progress("wandb offline (init can take a few seconds)")
    os.environ.setdefault("WANDB_SILENT", "true")
    d = tmpdir("wandb")
    try:
        run = wandb.init(mode="offline", dir=d, project="runsync-bench")
        try:
            warm(run.log, pool, max(1000, cfg.wandb_calls // 10))
            reps = [pct(time_call(run.log, pool, cfg.wandb_calls)) for _ in range(min(cfg.repeats, 3))]
        finally:
            run.finish()
            if hasattr(wandb, "teardown"):
                wandb.teardown()  # stop wandb's service process so it does not disturb later sections
        return {q: med([r[q] for r in reps]) for q in reps[0]}
    except Exception as e:  # report, don't die: the comparison is optional
        msg = f"wandb offline failed: {type(e).__name__}: {e}"
        note(msg)
        return msg
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# 2. end-to-end throughput and memory
# ---------------------------------------------------------------------------

def throughput_runsync(pool: list[dict], steps: int) -> dict[str, float]:
    gc.collect()
    d = tmpdir("tput")
    mask = len(pool) - 1
    half = steps // 2
    try:
        run = runsync.init(project="bench", dir=d, settings=runsync.Settings())
        log = run.log
        sampler = RssSampler().start()
        t0 = time.perf_counter()
        for i in range(half):
            log(pool[i & mask])
        t_half = sampler.mark()
        for i in range(half, steps):
            log(pool[i & mask])
        t1 = sampler.mark()
        run.finish()
        t2 = time.perf_counter()
        sampler.stop()
        hist = Path(d) / run.id / "history"
        rows = _parquet_rows(hist)
        return dict(total=t2 - t0, loop=t1 - t0, finish=t2 - t1, steps_per_s=steps / (t2 - t0),
                    loop_steps_per_s=steps / (t1 - t0),
                    peak_h1=sampler.peak_growth(until=t_half), peak_h2=sampler.peak_growth(t_half, t1),
                    peak_fin=sampler.peak_growth(t1), rows=rows)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def flushed_rows(hist: Path) -> int:
    """Rows already in history parts (a non-overlapping cover, as readers pick it)."""
    from runsync.format.history import list_parts, part_stats, select_cover
    try:
        return sum(part_stats(p.path).rows for p in select_cover(list_parts(hist)))
    except Exception:  # a part merged away while listing: not worth failing over
        return 0


def _parquet_rows(hist: Path) -> int:
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(p).metadata.num_rows for p in hist.glob("*.parquet"))


def throughput_floor(pool: list[dict], steps: int) -> dict[str, float]:
    gc.collect()
    mask = len(pool) - 1
    half = steps // 2
    sampler = RssSampler().start()
    lst: list[dict] = []
    ap = lst.append
    t0 = time.perf_counter()
    for i in range(half):
        ap(dict(pool[i & mask]))
    t_half = sampler.mark()
    for i in range(half, steps):
        ap(dict(pool[i & mask]))
    t1 = sampler.mark()
    sampler.stop()
    out = dict(total=t1 - t0, steps_per_s=steps / (t1 - t0),
               peak_h1=sampler.peak_growth(until=t_half), peak_h2=sampler.peak_growth(t_half, t1))
    del lst, ap
    gc.collect()
    return out


def bench_throughput(cfg: argparse.Namespace, pool: list[dict], results: dict) -> None:
    steps = cfg.tput_steps
    section(f"2. end-to-end throughput: {steps:,} steps x 10 keys, tight loop + background flush + finish() "
            f"({cfg.tput_repeats} repeats, medians)")
    rs, fl = [], []
    for r in range(cfg.tput_repeats):
        progress(f"throughput repeat {r + 1}/{cfg.tput_repeats}")
        rs.append(throughput_runsync(pool, steps))
        fl.append(throughput_floor(pool, steps))
    R = {k: med([x[k] for x in rs]) for k in rs[0]}
    F = {k: med([x[k] for x in fl]) for k in fl[0]}
    MiB = 1 << 20
    rows = [
        ["floor: lst.append(dict(d))", f"{F['steps_per_s']:,.0f}", f"{F['total']:.2f}", "-", "-",
         f"{F['peak_h1'] / MiB:.0f}", f"{F['peak_h2'] / MiB:.0f}", "-"],
        ["runsync log() ... finish()", f"{R['steps_per_s']:,.0f}", f"{R['total']:.2f}", f"{R['loop']:.2f}",
         f"{R['finish']:.2f}", f"{R['peak_h1'] / MiB:.0f}", f"{R['peak_h2'] / MiB:.0f}", f"{R['peak_fin'] / MiB:.0f}"],
    ]
    print(fmt_table(["", "steps/s", "total s", "loop s", "finish s",
                     "RSS+ 1st half", "RSS+ 2nd half", "RSS+ finish"], rows))
    note(f"runsync loop alone (before finish): {R['loop_steps_per_s']:,.0f} steps/s; "
         f"the floor is {F['steps_per_s'] / R['steps_per_s']:.1f}x faster than runsync end-to-end")
    note(f"rows in history after finish: {int(R['rows']):,} (expected {steps * 10:,})"
         + ("" if int(R["rows"]) == steps * 10 else "  <-- MISMATCH"))
    note("RSS+ = peak RSS growth in MiB over the RSS before the loop (psutil, sampled every 20 ms and at each "
         "phase boundary). Bounded memory: 2nd half ≈ 1st half. The floor keeps every dict, so it grows.")
    h1, h2 = R["peak_h1"], R["peak_h2"]
    growth = h2 / h1 if h1 > 0 else float("inf")
    bounded = h2 <= 1.5 * h1 + 8 * MiB  # heuristic, for reading only
    tgt = [
        ["steps/s incl. finish()", f"{R['steps_per_s']:,.0f}", "≥ 300,000", status(R["steps_per_s"] >= 300_000)],
        ["memory bounded (RSS+ 2nd half / 1st half)", f"{h2 / MiB:.0f} / {h1 / MiB:.0f} MiB ({growth:.2f}x); "
         f"finish {R['peak_fin'] / MiB:.0f} MiB", "bounded", "OK" if bounded else "MISS?"],
    ]
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["throughput"] = tgt
    if int(R["rows"]) != steps * 10:
        results["errors"].append("throughput: history row count mismatch")


# ---------------------------------------------------------------------------
# 3. bytes on disk per scalar, realistic mix, exact read-back
# ---------------------------------------------------------------------------

MIX_KEYS = ["train/loss", "train/acc", "lr", "grad_norm", "epoch", "samples_seen",
            "weight_decay", "batch_size", "throughput", "val/metric"]
INT_KEYS = {"epoch", "samples_seen", "batch_size"}


def mix_chunk(rng: np.random.Generator, s0: int, s1: int, total: int) -> dict[str, list]:
    """Values for steps [s0, s1) as Python scalars, like a torch loop would log them."""
    step = np.arange(s0, s1, dtype=np.int64)
    n = len(step)
    f32 = np.float32
    t = step.astype(np.float64)
    base = (2.3 * np.exp(-t / (total / 4)) + 0.4).astype(f32)
    loss = (base * (f32(1) + f32(0.08) * rng.standard_normal(n).astype(f32))).astype(f32)
    acc = np.clip(f32(1) - base / f32(3) + f32(0.01) * rng.standard_normal(n).astype(f32), 0, 1).astype(f32)
    warmup = max(1, total // 100)
    lr = np.where(step < warmup, 3e-4 * (t + 1) / warmup,
                  0.5 * 3e-4 * (1 + np.cos(np.pi * np.clip(t - warmup, 0, None) / max(1, total - warmup))))
    gnorm = (np.exp(rng.standard_normal(n) * 0.3) * (1.0 + base)).astype(f32)
    epoch = step // 5000
    samples = step * 128
    tput = np.round(3000.0 + 150.0 * rng.standard_normal(n), 1)
    metric = 0.5 + 0.1 * np.sin(t / 1000.0) + 0.01 * rng.standard_normal(n)
    return {
        # float32 .tolist() == torch .item(): exact float32 value as a Python float
        "train/loss": loss.tolist(), "train/acc": acc.tolist(), "lr": lr.tolist(),
        "grad_norm": gnorm.tolist(), "epoch": epoch.tolist(), "samples_seen": samples.tolist(),
        "weight_decay": [0.01] * n, "batch_size": [128] * n, "throughput": tput.tolist(),
        "val/metric": metric.tolist(),
    }


def bench_bytes(cfg: argparse.Namespace, results: dict) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    steps = cfg.bytes_steps
    section(f"3. bytes on disk per scalar, realistic mix: {steps:,} steps x 10 keys (default Settings)")
    progress("bytes: logging")
    rng = np.random.default_rng(42)
    chunk = 10_000
    expected: dict[str, list] = {k: [] for k in MIX_KEYS}
    d = tmpdir("bytes")
    try:
        run = runsync.init(project="bench", dir=d, settings=runsync.Settings())
        log = run.log
        t0 = time.perf_counter()
        for s0 in range(0, steps, chunk):
            c = mix_chunk(rng, s0, min(steps, s0 + chunk), steps)
            for k in MIX_KEYS:
                expected[k].extend(c[k])
            for row in zip(*(c[k] for k in MIX_KEYS)):
                log(dict(zip(MIX_KEYS, row)))
        run.finish()
        elapsed = time.perf_counter() - t0
        hist = Path(d) / run.id / "history"
        parts = sorted(hist.glob("*.parquet"))
        nbytes = sum(p.stat().st_size for p in parts)
        run_bytes = dir_bytes(Path(d) / run.id)
        scalars = steps * len(MIX_KEYS)
        bps = nbytes / scalars

        # per-column share of the compressed size
        col_bytes: dict[str, int] = {}
        for p in parts:
            md = pq.ParquetFile(p).metadata
            for rg in range(md.num_row_groups):
                g = md.row_group(rg)
                for ci in range(g.num_columns):
                    c = g.column(ci)
                    col_bytes[c.path_in_schema] = col_bytes.get(c.path_in_schema, 0) + c.total_compressed_size

        progress("bytes: reading back with pandas")
        df = pd.read_parquet(hist)
        check = verify(df, expected, steps, cfg)
    finally:
        shutil.rmtree(d, ignore_errors=True)

    rows = [["history/*.parquet", f"{nbytes:,}", f"{bps:.2f}"],
            ["whole run dir (incl. json docs)", f"{run_bytes:,}", f"{run_bytes / scalars:.2f}"],
            ["raw float64/int64 values only (reference)", f"{scalars * 8:,}", "8.00"]]
    print(fmt_table(["", "bytes", "B/scalar"], rows))
    note(f"{len(parts)} part file(s); {scalars:,} scalars logged in {elapsed:.1f} s incl. value generation and finish()")
    note("compressed bytes per column, B/scalar: "
         + ", ".join(f"{k}={v / scalars:.2f}" for k, v in sorted(col_bytes.items(), key=lambda kv: -kv[1])))
    print()
    for line in check["lines"]:
        note(line)
    tgt = [["history bytes per scalar", f"{bps:.2f} B", "≤ 7 B", status(bps <= 7.0)],
           ["read-back exactness (pd.read_parquet)", check["verdict"], "exact", "OK" if check["ok"] else "MISMATCH"]]
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["bytes"] = tgt
    if not check["ok"]:
        results["errors"].append("bytes: read-back mismatch")


def verify(df: Any, expected: dict[str, list], steps: int, cfg: argparse.Namespace) -> dict[str, Any]:
    """Every value (not only a sample) must come back bit-identical and exactly once."""
    lines: list[str] = []
    ok = True
    n_expected = steps * len(MIX_KEYS)
    if len(df) != n_expected:
        ok = False
        lines.append(f"row count {len(df):,} != {n_expected:,} logged scalars: MISMATCH")
    dup = int(df.duplicated(["step", "key"]).sum())
    if dup:
        ok = False
        lines.append(f"{dup:,} duplicate (step, key) rows: MISMATCH")
    rng = np.random.default_rng(7)
    sample_steps = np.unique(np.concatenate([[0, steps - 1], rng.integers(0, steps, cfg.sample_steps)]))
    checked = bad = 0
    int_as_float = False
    first_bad: list[str] = []
    for key in MIX_KEYS:
        sub = df[df["key"] == key].sort_values("step")
        got_steps = sub["step"].to_numpy()
        want = np.asarray(expected[key])
        if len(got_steps) != steps or not np.array_equal(got_steps, np.arange(steps)):
            ok = False
            lines.append(f"{key}: steps do not cover 0..{steps - 1} exactly once: MISMATCH")
            continue
        is_int = key in INT_KEYS
        col = sub["int"] if is_int else sub["value"]
        if is_int and col.dtype.kind == "f":
            int_as_float = True
        got = col.to_numpy()
        # full vectorised comparison (bitwise for floats)
        if is_int:
            full_ok = np.array_equal(got.astype(np.int64), want.astype(np.int64))
            tcode_ok = bool((sub["type"] == 2).all())
        else:
            full_ok = np.array_equal(np.asarray(got, np.float64).view(np.int64), want.astype(np.float64).view(np.int64))
            tcode_ok = bool((sub["type"] == 1).all())
        # the sample: compared as Python scalars, the way a user would
        for s in sample_steps:
            checked += 1
            g = got[s].item() if hasattr(got[s], "item") else got[s]
            w = expected[key][s]
            if is_int and type(g) is float and g.is_integer() and abs(g) < 2**53:
                g = int(g)  # pandas reads the nullable int64 `int` column as float64 (NaN for non-int rows)
            if not (type(g) is type(w) and g == w):
                bad += 1
                if len(first_bad) < 5:
                    first_bad.append(f"{key}@{s}: logged {w!r} ({type(w).__name__}) read {g!r} ({type(g).__name__})")
        if not full_ok or not tcode_ok:
            ok = False
            lines.append(f"{key}: {'values differ' if not full_ok else 'wrong type code'}: MISMATCH")
    if int_as_float:
        lines.append("note: with pandas defaults the nullable `int` column reads as float64, so int64 values "
                     "beyond 2**53 would not round-trip through pd.read_parquet(dir) without dtype_backend=")
    if bad:
        ok = False
        lines.append(f"sample: {bad}/{checked} values differ: MISMATCH; e.g. " + "; ".join(first_bad))
    lines.insert(0, f"read-back: {len(df):,} rows; every value compared bitwise per key, plus {checked:,} sampled "
                    f"values compared as Python scalars: {'OK' if ok else 'MISMATCH'}")
    return dict(ok=ok, verdict="all values bit-exact" if ok else "MISMATCH", lines=lines)


# ---------------------------------------------------------------------------
# 4. cost of a busy flusher on the caller
# ---------------------------------------------------------------------------

def bench_flusher(cfg: argparse.Namespace, pool: list[dict], results: dict) -> None:
    n = cfg.flush_calls
    section(f"4. log() latency while the background flusher is idle vs busy ({n:,} calls x {cfg.repeats} repeats)")
    variants = {
        # flusher never wakes during the measurement; big segment so log() never switches segments
        "idle": runsync.Settings(flush_interval=3600.0, part_interval=3600.0, heartbeat_interval=3600.0,
                                 segment_size=256 << 20),
        "default": runsync.Settings(),
        # drains every 10 ms, writes a part every 50 ms, compacts every 8 parts
        "busy": runsync.Settings(flush_interval=0.01, part_interval=0.05),
    }
    qs = (50, 99)
    per: dict[str, list[dict[float, float]]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    flushed: dict[str, list[int]] = {k: [] for k in variants}
    empties = []
    for r in range(cfg.repeats):
        progress(f"flusher repeat {r + 1}/{cfg.repeats}")
        empties.append(pct(time_empty(pool, n // 2), qs)[50])
        for name, st in variants.items():
            gc.collect()
            d = tmpdir(f"flush-{name}")
            try:
                run = runsync.init(project="bench", dir=d, settings=st)
                warm(run.log, pool, cfg.warmup)
                if name == "busy":
                    time.sleep(0.1)  # let it get going
                t0 = time.perf_counter_ns()
                lat = time_call(run.log, pool, n)
                wall[name].append((time.perf_counter_ns() - t0) / n)
                per[name].append(pct(lat, qs))
                flushed[name].append(flushed_rows(Path(d) / run.id / "history"))
                run.finish()
            finally:
                shutil.rmtree(d, ignore_errors=True)
    overhead = med(empties)
    agg = {k: {q: max(0.0, med([p[q] for p in v]) - overhead) for q in qs} for k, v in per.items()}
    W = {k: med(v) for k, v in wall.items()}
    rows = []
    for name in variants:
        rows.append([name, f"{us(agg[name][50]):.3f}", f"{us(agg[name][99]):.3f}", f"{us(W[name]):.3f}",
                     f"{agg[name][50] / agg['idle'][50]:.2f}x" if agg["idle"][50] else "-",
                     f"{W[name] / W['idle']:.2f}x",
                     f"{med(flushed[name]) / (n + cfg.warmup) / 10:.0%}"])
    print(fmt_table(["flusher", "median µs", "p99 µs", "wall µs/iter", "median vs idle", "wall vs idle",
                     "in parts by loop end"], rows))
    note("idle: flush/part/heartbeat intervals 1 h; busy: flush_interval=0.01 s, part_interval=0.05 s")
    note("in parts by loop end = share of the logged rows already written to Parquet parts when the timed "
         "loop ended (shows how much flushing overlapped the measurement)")
    note("wall µs/iter = loop wall time / calls, incl. timer and loop overhead and any GIL waits between calls")
    results["flusher"] = [
        ["log() median, busy vs idle flusher", f"{us(agg['busy'][50]):.2f} vs {us(agg['idle'][50]):.2f} µs",
         "(report only)", "-"],
        ["loop wall per call, busy vs idle flusher", f"{us(W['busy']):.2f} vs {us(W['idle']):.2f} µs "
         f"({W['busy'] / W['idle']:.2f}x)", "(report only)", "-"],
    ]


# ---------------------------------------------------------------------------
# 5. sidecars: log() latency with system metrics / console capture / environment on vs off
# ---------------------------------------------------------------------------

# label, system metrics, system_interval (s), console capture, environment record
SIDECAR_VARIANTS: list[tuple[str, bool, float, bool, bool]] = [
    ("all off (baseline)", False, 2.0, False, False),
    ("all off, again (noise)", False, 2.0, False, False),
    ("system metrics, default 2 s", True, 2.0, False, False),
    ("system metrics, 0.05 s", True, 0.05, False, False),
    ("console capture", False, 2.0, True, False),
    ("environment record", False, 2.0, False, True),
    ("all on (defaults)", True, 2.0, True, True),
]
SIDECAR_BASELINES = ("all off (baseline)", "all off, again (noise)")
PRINT_EVERY = 1000  # the loop prints one line every this many steps, in every variant
SLOW_NS = 50_000  # a log() call slower than this (net) counts as a stall


def _onoff(flag: bool) -> str:
    return "on" if flag else "off"


def time_call_printing(fn: Callable[[Any], Any], pool: list[dict], n: int, every: int, start: int = 0) -> list[int]:
    """time_call() plus a flushed print() every `every` steps (outside the timed region)."""
    pc = time.perf_counter_ns
    out = [0] * n
    mask = len(pool) - 1
    for i in range(n):
        d = pool[i & mask]
        t0 = pc()
        fn(d)
        t1 = pc()
        out[i] = t1 - t0
        if i % every == 0:
            print(f"step {start + i}: train/loss {d['train/loss']:.6f} train/acc {d['train/acc']:.6f}", flush=True)
    return out


def sidecar_child(spec: dict[str, Any]) -> int:
    """One measurement in a process of its own (run by the parent with --sidecar-child SPEC).

    The sidecars are switched by RUNSYNC_SYSTEM / RUNSYNC_CONSOLE / RUNSYNC_ENVIRONMENT in this
    process's environment (set by the parent). fds 1 and 2 are files the parent reads afterwards.
    The result goes to spec["result"] as JSON.
    """
    n, warmup, every = spec["calls"], spec["warmup"], PRINT_EVERY
    pool = make_pool()
    samples: list[tuple[int, int]] = []  # (start, end) perf_counter_ns of every system sample after init
    overhead = pct(time_empty(pool, 100_000), (50,))[50]
    gc.collect()
    d = spec["dir"]
    t_init = time.perf_counter_ns()
    wall_init = time.time()
    run = runsync.init(project="bench", dir=d, mode="offline",
                       settings=runsync.Settings(system_interval=spec["system_interval"]))
    system_mod = sys.modules.get("runsync.writer.system")
    if system_mod is not None:  # count the sampler's samples (patched after init, so init's imports are timed)
        sample = system_mod.Sampler.sample

        def counted(self: Any) -> dict[str, float]:
            t0 = time.perf_counter_ns()
            try:
                return sample(self)
            finally:
                samples.append((t0, time.perf_counter_ns()))
        system_mod.Sampler.sample = counted  # type: ignore[method-assign]
    t_warm = time.perf_counter_ns()
    time_call_printing(run.log, pool, warmup, every)
    t_loop = time.perf_counter_ns()
    lat = time_call_printing(run.log, pool, n, every, start=warmup)
    t_end = time.perf_counter_ns()
    run.finish()
    t_fin = time.perf_counter_ns()
    run_dir = Path(d) / run.id
    console_lines = 0
    for f in sorted((run_dir / "console").glob("*.log")):
        console_lines += sum(1 for line in f.read_bytes().splitlines() if line.startswith(b"step "))
    envs = sorted((run_dir / "streams").glob("*/environment.*.json"))
    loop_samples = [(a, b) for a, b in samples if t_loop <= a < t_end]
    res = dict(
        pct={str(q): v for q, v in pct(lat).items()}, overhead=overhead,
        slow=int(np.count_nonzero(np.asarray(lat, dtype=np.int64) > SLOW_NS + overhead)),
        init_s=(t_warm - t_init) / 1e9, warm_s=(t_loop - t_warm) / 1e9, loop_s=(t_end - t_loop) / 1e9,
        finish_s=(t_fin - t_end) / 1e9, steps=warmup + n, printed=len(range(0, warmup, every)) + len(range(0, n, every)),
        rows=_parquet_rows(run_dir / "history"), console_lines=console_lines,
        env_docs=len(envs), env_after_init_s=(envs[0].stat().st_mtime - wall_init) if envs else None,
        loop_start_after_init_s=(t_loop - t_init) / 1e9,
        samples=len(samples), loop_samples=len(loop_samples),
        sample_ms=(med([(b - a) / 1e6 for a, b in loop_samples]) if loop_samples else None),
        system_rows=_parquet_rows(run_dir / "system") if (run_dir / "system").is_dir() else 0,
    )
    Path(spec["result"]).write_text(json.dumps(res))
    return 0


def run_sidecar_child(label: str, system: bool, interval: float, console: bool, environment: bool,
                      calls: int, warmup: int) -> dict[str, Any]:
    """Start one measurement in a child process; its stdout/stderr go to files, never to this terminal."""
    work = tmpdir("sidecar")
    try:
        spec = dict(label=label, system=system, system_interval=interval, console=console,
                    environment=environment, calls=calls, warmup=warmup,
                    dir=os.path.join(work, "runs"), result=os.path.join(work, "result.json"))
        env = dict(os.environ)
        for k in ("RUNSYNC_DISABLE_CODE", "RUNSYNC_MODE", "RUNSYNC_REMOTE", "RUNSYNC_DIR", "PYTHONUNBUFFERED"):
            env.pop(k, None)
        env.update(RUNSYNC_SILENT="1", RUNSYNC_SYSTEM=_onoff(system), RUNSYNC_CONSOLE=_onoff(console),
                   RUNSYNC_ENVIRONMENT=_onoff(environment))
        out_path, err_path = os.path.join(work, "stdout"), os.path.join(work, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--sidecar-child", json.dumps(spec)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, timeout=600,
                                  check=False)
        stdout = Path(out_path).read_bytes()
        stderr = Path(err_path).read_bytes().decode("utf-8", "replace")
        if proc.returncode != 0 or not os.path.exists(spec["result"]):
            tail = stderr.strip().splitlines()[-5:]
            return dict(error=f"{label}: child exited {proc.returncode}: " + " | ".join(tail))
        res = json.loads(Path(spec["result"]).read_text())
        res["stdout_lines"] = sum(1 for line in stdout.splitlines() if line.startswith(b"step "))
        res["stderr"] = stderr.strip()
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_sidecars(cfg: argparse.Namespace, results: dict) -> None:
    n, warmup, reps = cfg.sidecar_calls, cfg.warmup, cfg.sidecar_repeats
    section(f"5. sidecars: log() latency with system metrics / console capture / environment on vs off "
            f"({n:,} timed calls x {reps} child processes per row, medians)")
    qs = (50, 99, 99.9)
    per: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in SIDECAR_VARIANTS}
    for r in range(reps):
        k = r % len(SIDECAR_VARIANTS)  # rotate the order so no variant always runs right after another
        for label, system, interval, console, environment in SIDECAR_VARIANTS[k:] + SIDECAR_VARIANTS[:k]:
            progress(f"sidecars repeat {r + 1}/{reps}: {label}")
            res = run_sidecar_child(label, system, interval, console, environment, n, warmup)
            if "error" in res:
                results["errors"].append("sidecars: " + res["error"])
                note("ERROR " + res["error"])
                continue
            per[label].append(res)
    if any(not v for v in per.values()):
        note("some rows have no successful measurement; see the errors above")
        return

    def net(res: dict[str, Any], q: float) -> float:
        return max(0.0, res["pct"][str(q)] - res["overhead"])

    def agg(items: list[dict[str, Any]]) -> dict[str, float]:
        out = {q: med([net(x, q) for x in items]) for q in qs}
        out["wall"] = med([x["loop_s"] / n for x in items])  # seconds per timed-loop iteration
        out["loop_sps"] = med([n / x["loop_s"] for x in items])
        out["e2e_sps"] = med([x["steps"] / (x["warm_s"] + x["loop_s"] + x["finish_s"]) for x in items])
        out["init"] = med([x["init_s"] for x in items])
        out["finish"] = med([x["finish_s"] for x in items])
        return out

    A = {label: agg(items) for label, items in per.items()}
    base = agg(per[SIDECAR_BASELINES[0]] + per[SIDECAR_BASELINES[1]])
    b1, b2 = A[SIDECAR_BASELINES[0]], A[SIDECAR_BASELINES[1]]

    def noise(key: Any) -> float:
        return abs(b1[key] - b2[key]) / base[key] if base[key] else 0.0

    tol = max(0.05, noise(50))  # "no measurable change": median within max(5%, baseline-vs-baseline noise)

    def ratio(label: str, key: Any) -> float:
        return A[label][key] / base[key] if base[key] else float("nan")

    rows = []
    for label, system, interval, console, environment in SIDECAR_VARIANTS:
        a = A[label]
        if label in SIDECAR_BASELINES:
            verdict = "(baseline)"
        else:
            verdict = status(ratio(label, 50) <= 1 + tol)
        rows.append([label] + [f"{us(a[q]):.3f}" for q in qs]
                    + [f"{ratio(label, q):.2f}x" for q in qs]
                    + [f"{a['loop_sps']:,.0f}", f"{ratio(label, 'loop_sps'):.2f}x",
                       f"{a['e2e_sps']:,.0f}", f"{a['e2e_sps'] / base['e2e_sps']:.2f}x", verdict])
    print(fmt_table(["sidecars", "median µs", "p99 µs", "p99.9 µs", "median", "p99", "p99.9",
                     "loop steps/s", "loop", "e2e steps/s", "e2e", "median target"], rows))
    note(f"µs = net of each child's timer overhead; ratios are against both baseline rows pooled "
         f"({len(per[SIDECAR_BASELINES[0]]) + len(per[SIDECAR_BASELINES[1]])} children); "
         f"every variant's loop prints one line every {PRINT_EVERY:,} steps (print(..., flush=True), "
         f"outside the timed region) to a file the child's fd 1 points at")
    note(f"noise (baseline run twice, |a - b| / pooled): median {noise(50):.1%}, p99 {noise(99):.1%}, "
         f"p99.9 {noise(99.9):.1%}, loop wall {noise('wall'):.1%}")
    note(f"median target: no measurable change = median within +max(5%, noise) = +{tol:.1%} of the baseline")
    note("loop steps/s = timed calls / timed-loop wall (timer + print included, same in every row); "
         "e2e steps/s = all steps / (warm-up + timed loop + finish()), init excluded")

    print()
    crows = []
    for label, system, interval, console, environment in SIDECAR_VARIANTS:
        items = per[label]
        x = items[0]
        sysinfo = "-"
        if system:
            ls = med([i["loop_samples"] for i in items])
            due = med([i["loop_s"] / interval for i in items])
            sm = [i["sample_ms"] for i in items if i["sample_ms"] is not None]
            sysinfo = (f"{ls:.0f} of {due:.0f} due" + (f", {med(sm):.1f} ms each" if sm else "")
                       + f"; {min(i['system_rows'] for i in items)} values")
        coninfo = "-"
        if console:
            coninfo = f"{min(i['console_lines'] for i in items)}/{x['printed']} lines stored"
        envinfo = "-"
        if environment:
            ea = [i["env_after_init_s"] for i in items if i["env_after_init_s"] is not None]
            envinfo = (f"written {med(ea) * 1000:.0f} ms after init (timed loop from "
                       f"{med([i['loop_start_after_init_s'] for i in items]) * 1000:.0f} ms)") if ea else "MISSING"
        slow = med([i["slow"] * 100_000 / n for i in items])
        crows.append([label, f"{slow:.0f}", f"{A[label]['init'] * 1000:.0f}", f"{A[label]['finish'] * 1000:.0f}",
                      sysinfo, coninfo, envinfo])
    print(fmt_table(["sidecars", f"calls > {us(SLOW_NS):.0f} µs per 100k", "init ms", "finish ms",
                     "system samples in timed loop", "console log", "environment record"], crows))
    note("system samples = Sampler.sample() calls begun during the timed loop, of loop time / system_interval due; "
         "ms each = median wall time of a sample (incl. waiting for the GIL); values = system-table rows "
         "(one per key and 30 s window, plus the partial window at finish())")
    note("the saved-files sidecar is present in every row but idle (no run.save()); the run is offline")

    # sanity: everything the children were asked to record is there, and nothing leaked to this terminal
    for label, system, interval, console, environment in SIDECAR_VARIANTS:
        for x in per[label]:
            problems = []
            if x["rows"] != x["steps"] * len(KEYS10):
                problems.append(f"history rows {x['rows']:,} != {x['steps'] * len(KEYS10):,}")
            if x["stdout_lines"] != x["printed"]:
                problems.append(f"{x['stdout_lines']} of {x['printed']} printed lines reached the child's stdout")
            if console and x["console_lines"] != x["printed"]:
                problems.append(f"console log holds {x['console_lines']} of {x['printed']} printed lines")
            if not console and x["console_lines"]:
                problems.append("console captured although switched off")
            if system and not x["system_rows"]:
                problems.append("no system rows")
            if not system and (x["samples"] or x["system_rows"]):
                problems.append("system metrics recorded although switched off")
            if environment != bool(x["env_docs"]):
                problems.append(f"environment documents: {x['env_docs']}")
            if problems:
                results["errors"].append(f"sidecars: {label}: " + "; ".join(problems))
                note(f"MISMATCH {label}: " + "; ".join(problems))
            if x["stderr"]:
                note(f"{label}: the child wrote to stderr: {x['stderr'].splitlines()[-1][:200]}")

    tgt = []
    for label in ("system metrics, default 2 s", "system metrics, 0.05 s", "console capture", "all on (defaults)"):
        tgt.append([f"sidecars: log() median, {label} vs off",
                    (f"{us(A[label][50]):.3f} vs {us(base[50]):.3f} µs ({ratio(label, 50):.2f}x; "
                     f"p99 {ratio(label, 99):.2f}x, p99.9 {ratio(label, 99.9):.2f}x)"),
                    f"no measurable change (≤ +{tol:.0%})", status(ratio(label, 50) <= 1 + tol)])
    print()
    print(fmt_table(["target", "measured", "issue target", "status"], tgt))
    results["sidecars"] = tgt


# ---------------------------------------------------------------------------

def header(cfg: argparse.Namespace) -> None:
    import pandas as pd
    import pyarrow as pa
    try:
        aff = len(os.sched_getaffinity(0))
    except AttributeError:
        aff = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print("runsync writer benchmark" + (" (--quick)" if cfg.quick else ""))
    print(f"  date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"  python    {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}")
    print(f"  cpus      {os.cpu_count()} (usable: {aff}); load average {load}")
    print(f"  versions  runsync {runsync.__version__}, numpy {np.__version__}, pyarrow {pa.__version__}, "
          f"pandas {pd.__version__}")
    print(f"  temp dir  {tempfile.gettempdir()}")
    print("  Each number is a median over repeats; ratios are against baselines measured in this same run. "
          "Targets are shown for reading only.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads (~30 s)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats for latency sections")
    ap.add_argument("--only", default="12345", help="which sections to run, e.g. 13")
    ap.add_argument("--sidecars-only", action="store_true", help="run only section 5 (sidecars), same as --only 5")
    ap.add_argument("--sidecar-child", default=None, help=argparse.SUPPRESS)  # internal: one section-5 child
    cfg = ap.parse_args(argv)
    if cfg.sidecar_child is not None:
        return sidecar_child(json.loads(cfg.sidecar_child))
    if cfg.sidecars_only:
        cfg.only = "5"
    repeats_given = cfg.repeats
    cfg.lat_calls = 200_000
    cfg.warmup = 20_000
    cfg.wandb_calls = 20_000
    if cfg.quick:
        cfg.repeats = cfg.repeats or 3
        cfg.tput_steps, cfg.tput_repeats = 200_000, 2
        cfg.bytes_steps = 100_000
        cfg.flush_calls = 100_000
        cfg.sample_steps = 500
        cfg.wandb_calls = 5_000
        cfg.sidecar_calls, cfg.sidecar_repeats = 600_000, repeats_given or 2
    else:
        cfg.repeats = cfg.repeats or 5
        cfg.tput_steps, cfg.tput_repeats = 1_000_000, 3
        cfg.bytes_steps = 500_000
        cfg.flush_calls = 200_000
        cfg.sample_steps = 2_000
        cfg.sidecar_calls, cfg.sidecar_repeats = 1_200_000, repeats_given or 3

    header(cfg)
    pool = make_pool()
    results: dict[str, Any] = {"errors": []}
    t0 = time.perf_counter()
    if "1" in cfg.only:
        bench_latency(cfg, pool, results)
    if "2" in cfg.only:
        bench_throughput(cfg, pool, results)
    if "3" in cfg.only:
        bench_bytes(cfg, results)
    if "4" in cfg.only:
        bench_flusher(cfg, pool, results)
    if "5" in cfg.only:
        bench_sidecars(cfg, results)

    section("summary against the issue's targets (informational; not pass/fail)")
    rows = [r for k in ("latency", "throughput", "bytes", "flusher", "sidecars") for r in results.get(k, [])]
    print(fmt_table(["target", "measured", "issue target", "status"], rows))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"\n  total benchmark time {time.perf_counter() - t0:.0f} s; load average now {load} "
          "(other processes on a shared machine skew single runs: compare ratios, rerun if in doubt)")
    if results["errors"]:
        print("  ERRORS: " + "; ".join(results["errors"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
