"""Runs for the report tests, written by the real writer, and fakes for APIs the reader may lack.

``make_runs`` writes three runs: two short ones and one of 200k steps (to
exercise downsampling), with a spike and a NaN to keep visible, an ``epoch``
key to use as x axis, a name that tries to close the script element, and a
``system/`` part (spec §14 schema = history's) written with ``write_part``.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import runsync
from runsync.format.history import SCHEMA, list_parts, read_part, resolve, select_cover, write_part
from runsync.reader.smooth import smooth

FAST = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5, segment_size=1 << 20)
EVIL_NAME = "evil</script><script>window.pwned=1</script>"
LONG_STEPS = 200_000
SPIKE = 50.0


@dataclass(frozen=True)
class MadeRun:
    id: str
    name: str
    steps: int
    config: dict[str, Any]


@contextmanager
def _env(**kw: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in kw}
    os.environ.update(kw)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _loss(i: int, n: int, lr: float, rnd: random.Random) -> float:
    return math.exp(-3.0 * i / n) * (1.0 + 100.0 * lr) + 0.05 * rnd.random()


def make_runs(root: Path) -> list[MadeRun]:
    """Three finished runs under ``root``; the writer's own system sampler (if any) is switched off."""
    out = []
    specs = [("short-a", 300, 1e-3, "adam"), (EVIL_NAME, 1_000, 3e-3, "adam"), ("long-c", LONG_STEPS, 1e-2, "sgd")]
    with _env(RUNSYNC_SYSTEM="0", RUNSYNC_CONSOLE="0", RUNSYNC_SILENT="1"):
        for k, (name, n, lr, opt) in enumerate(specs):
            config = {"lr": lr, "optim": {"name": opt, "momentum": 0.9}, "seed": 7, "batch": 64 * (k + 1)}
            run = runsync.init(dir=root, project="p", name=name, config=config, settings=FAST)
            rnd = random.Random(k)
            log = run.log
            for i in range(n):
                loss = _loss(i, n, lr, rnd)
                if n == LONG_STEPS and i == 123_457:
                    loss = SPIKE  # one spike in the long run: downsampling must keep it
                row: dict[str, Any] = {"train/loss": loss, "epoch": i * 10 // n}
                if n == LONG_STEPS and i == 150_001:
                    row["train/loss"] = float("nan")
                if i % 50 == 0:
                    row["val/acc"] = 1.0 - loss / 4.0
                log(row)
            run.summary["best_acc"] = 0.9 - k / 10
            run.finish()
            out.append(MadeRun(run.id, name, n, config))
    for r in out:
        write_system_part(root / r.id, samples=40)
    return out


def write_system_part(run_dir: Path, samples: int, keys: list[str] | None = None, scale: float = 1.0) -> None:
    """A ``system/`` part in history's long schema: cpu.percent, memory.used_percent, gpu.0.util_percent
    (or ``keys``, sorted), values times ``scale``."""
    keys = sorted(keys or ["cpu.percent", "gpu.0.util_percent", "memory.used_percent"])
    t0 = os.stat(run_dir / "run.json").st_mtime
    rows: dict[str, list[Any]] = {c: [] for c in SCHEMA.names}
    seq = 0
    for key in keys:  # sorted by key, then seq, as the writer does
        for s in range(samples):
            rows["step"].append(s)
            rows["time"].append(int((t0 + 2.0 * s) * 1e6))
            rows["key"].append(key)
            rows["type"].append(1)
            rows["value"].append(float(10 + (s * 7 + len(key)) % 80) * scale)
            rows["int"].append(None)
            rows["text"].append(None)
            rows["stream"].append("sysfake")
            rows["seq"].append(s)
            seq += 1
    table = pa.table({c: pa.array(rows[c], SCHEMA.field(c).type) for c in SCHEMA.names}, schema=SCHEMA)
    d = run_dir / "system"
    d.mkdir(exist_ok=True)
    write_part(d, "sysfake", 0, samples - 1, table)


def system_shim(self: Any, keys: list[str] | None = None, wide: bool = True, format: str = "pandas") -> Any:
    """``RunView.system`` for readers that predate it: parts of ``<run>/system/``, resolved (long, Arrow)."""
    assert not wide and format == "arrow"
    parts = select_cover(list_parts(Path(self.path) / "system"))
    if not parts:
        return SCHEMA.empty_table()
    return resolve(pa.concat_tables([read_part(p.path) for p in parts]))


# -- media: a fake view with the planned RunView.media()/media_keys() API --------------------------

@dataclass
class FakeHistogram:
    counts: list[float]
    edges: list[float]


@dataclass
class FakeItem:
    step: int
    key: str
    index: int
    kind: str
    caption: str | None
    value: Any


class FakeMediaView:
    """Only what the report's gallery uses: media_keys() and media(key)."""

    def __init__(self, items: list[FakeItem]) -> None:
        self.items = items

    def media_keys(self) -> list[str]:
        return sorted({it.key for it in self.items})

    def media(self, key: str) -> list[FakeItem]:
        return sorted((it for it in self.items if it.key == key), key=lambda it: (it.step, it.index))


def fake_media(steps: int = 12) -> list[FakeItem]:
    import pandas as pd

    items = []
    yy, xx = np.mgrid[0:600, 0:400]
    for s in range(steps):
        img = np.stack([(xx + 10 * s) % 256, (yy // 3) % 256, np.full_like(xx, 40 * (s % 6))], axis=-1).astype(np.uint8)
        items.append(FakeItem(s * 100, "samples/image", 0, "image", f"step {s} <b>caption</b>", img))
        items.append(FakeItem(s * 100, "samples/image", 1, "image", None, img[::-1]))
        counts = np.histogram(np.random.default_rng(s).normal(s / 4, 1, 1000), bins=20)
        items.append(FakeItem(s * 100, "weights/hist", 0, "histogram", None,
                              FakeHistogram(counts[0].tolist(), counts[1].tolist())))
    df = pd.DataFrame({"text": [f"row {i} </script>" for i in range(30)], "score": np.linspace(0, 1, 30)})
    items.append(FakeItem(500, "preds/table", 0, "table", "predictions", df))
    items.append(FakeItem(500, "notes/text", 0, "text", None, "hello <script>window.pwned=2</script>\nline 2"))
    return items


class ViewWith:
    """A real RunView plus, where it lacks them, ``system`` (shim) and fake media for some runs."""

    def __init__(self, view: Any, media: list[FakeItem] | None) -> None:
        self._view = view
        self._media = FakeMediaView(media) if media is not None else None

    def __getattr__(self, name: str) -> Any:
        if name == "system" and not hasattr(self._view, "system"):
            return lambda **kw: system_shim(self._view, **kw)
        if name in ("media", "media_keys") and self._media is not None:
            return getattr(self._media, name)
        if name in ("media", "media_keys") and self._media is None:
            raise AttributeError(name)  # as a reader without media: the gallery skips this run
        return getattr(self._view, name)


def opener(media_by_name: dict[str, list[FakeItem]] | None = None) -> Any:
    """An ``opener`` for ``runsync.report.collect``: real views, fake media for the runs named."""
    def open_(path: str) -> ViewWith:
        view = runsync.open_run(path)
        return ViewWith(view, (media_by_name or {}).get(view.name))
    return open_


# -- the debiased EMA: inputs and the check shared by the node and the Chromium tests ---------------

WEIGHTS = [0.0, 0.1, 0.3, 0.5, 0.6, 0.75, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999]


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def ema_inputs() -> list[list[Any]]:
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(size=3000)).tolist()
    gaps = rng.normal(size=500).tolist()
    gaps[3], gaps[40], gaps[41], gaps[499] = float("nan"), float("inf"), float("-inf"), float("nan")
    loss = [math.exp(-i / 300) + 0.01 * math.sin(i) for i in range(2000)]
    f32 = [float(np.float32(x)) for x in rng.uniform(0, 5, 1000)]
    return [walk, gaps, loss, f32, [2.5] * 20, [float("nan"), 1.0, 1.0], [], [7], list(range(-50, 50))]


def js_value(v: Any) -> float:
    return float(v) if not isinstance(v, str) else float(v.replace("Infinity", "inf"))


def check_ema(js_results: list[list[list[Any]]]) -> None:
    for inputs, per_w in zip(ema_inputs(), js_results):
        for w, got in zip(WEIGHTS, per_w):
            want = smooth(inputs, w)
            assert len(got) == len(want)
            bad = [(i, g, x) for i, (g, x) in enumerate(zip(map(js_value, got), want)) if not same(g, x)]
            assert not bad, f"weight {w}: JS and Python differ at {bad[:3]}"


def encode_inputs() -> str:
    return json.dumps([[x if math.isfinite(x) else str(x).replace("inf", "Infinity").replace("nan", "NaN")
                        for x in map(float, a)] for a in ema_inputs()])


