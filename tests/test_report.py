"""``runsync report`` without a browser: data, downsampling, EMA equality, safety of the HTML."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_runs import (
    EVIL_NAME,
    LONG_STEPS,
    SPIKE,
    WEIGHTS,
    FakeHistogram,
    FakeItem,
    FakeMediaView,
    check_ema,
    encode_inputs,
    fake_media,
    make_runs,
    opener,
    same,
)

import runsync
from runsync.format.errors import RunsyncError
from runsync.reader.query import QueryError
from runsync.reader.smooth import smooth
from runsync.report import ReportOptions, build_report, collect, render
from runsync.report.build import encode_values, select_runs
from runsync.report.downsample import pick, points_per_series
from runsync.report.html import UPLOT_VERSION, asset_text
from runsync.report.media import MediaBudget, MediaLimits, collect_media, png_bytes, shrink, spread

REPO = Path(__file__).resolve().parents[1]


# -- helpers ----------------------------------------------------------------------------------------

def blob(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="runsync-data">(.*?)</script>', html, re.DOTALL)
    assert m, "no data blob"
    return json.loads(m.group(1))


def undelta(a: list[int]) -> list[int]:
    return np.cumsum(np.asarray(a, dtype=np.int64)).tolist() if a else []


def decode(v: Any, f32: bool) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        return float(v)
    return float(np.float32(v)) if f32 else float(v)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report") / "runs"
    root.mkdir()
    make_runs(root)
    return root


@pytest.fixture(scope="module")
def report(runs_dir: Path) -> tuple[str, dict[str, Any]]:
    out = runs_dir.parent / "report.html"
    build_report(runs_dir, out, opener=opener({"short-a": fake_media()}))
    html = out.read_text(encoding="utf-8")
    return html, blob(html)


# -- downsampling -----------------------------------------------------------------------------------

def test_pick_keeps_short_series_whole() -> None:
    s = np.arange(100)
    assert pick(s, np.random.default_rng(0).normal(size=100), 2000).tolist() == list(range(100))


def test_pick_keeps_extremes_ends_and_nonfinite() -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    steps = np.arange(n) * 3 + 17
    v = rng.normal(size=n)
    v[654_321] = 100.0
    v[111_111] = -100.0
    v[500_000] = np.nan
    v[700_000] = np.inf
    idx = pick(steps, v, 2000)
    assert len(idx) <= 2000 + 2
    assert np.all(np.diff(idx) > 0) and idx[0] == 0 and idx[-1] == n - 1
    for must in (654_321, 111_111, 500_000, 700_000):
        assert must in idx
    # per bucket of the step range, the kept points include that bucket's min and max
    b = ((steps - steps[0]) / (steps[-1] - steps[0]) * 500).astype(int).clip(0, 499)
    fin = np.where(np.isfinite(v), v, np.nan)
    for bucket in (0, 137, 499):
        sel = np.flatnonzero(b == bucket)
        assert sel[np.nanargmax(fin[sel])] in idx and sel[np.nanargmin(fin[sel])] in idx


def test_pick_uneven_steps_and_constant() -> None:
    steps = np.concatenate([np.arange(10), np.arange(10_000, 60_000)])
    v = np.ones(len(steps))
    idx = pick(steps, v, 400)
    assert len(idx) <= 400 and idx[0] == 0 and idx[-1] == len(steps) - 1


def test_points_per_series_shares_a_budget() -> None:
    assert points_per_series(2000, 400_000, 3, 4) == 2000
    assert points_per_series(2000, 400_000, 100, 4) == 1000
    assert points_per_series(2000, 400_000, 100, 400) == 200  # floor
    assert points_per_series(100, 10, 100, 400) == 100


def test_encode_values_round_trips_exactly() -> None:
    f32 = np.array([0.1, 0.6931472, 1e20, -2.5e-7, 3.0, 16777216.0], dtype=np.float32).astype(np.float64)
    out, is32 = encode_values(f32)
    assert is32 and out[4] == 3 and isinstance(out[4], int)
    text = json.dumps(out)
    assert all(decode(v, True) == x for v, x in zip(json.loads(text), f32))
    assert len(text) < 60  # float32 digits, not float64's
    f64 = np.array([math.pi, 1 / 3, float("nan"), float("inf"), -float("inf"), 2.0**60, -0.0])
    out, is32 = encode_values(f64)
    assert not is32 and out[2:5] == ["NaN", "Infinity", "-Infinity"]
    back = [decode(v, False) for v in json.loads(json.dumps(out, allow_nan=False))]
    assert all(same(a, b) for a, b in zip(back, f64))


# -- the debiased EMA in JavaScript equals runsync.smooth -------------------------------------------

EMA_DRIVER = """
const smooth = require(process.argv[2]);
const inputs = JSON.parse(require('fs').readFileSync(0, 'utf8')).map(a => a.map(v => typeof v === 'string' ? Number(v) : v));
const weights = %s;
const enc = v => Number.isFinite(v) ? v : String(v);
process.stdout.write(JSON.stringify(inputs.map(a => weights.map(w => smooth(a, w).map(enc)))));
"""


def test_js_ema_equals_python_smooth(tmp_path: Path) -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed; tests/test_report_browser.py checks the same in Chromium")
    driver = tmp_path / "ema.js"
    driver.write_text(EMA_DRIVER % json.dumps(WEIGHTS))
    smooth_js = Path(runsync.report.__file__).with_name("smooth.js")
    res = subprocess.run([node, str(driver), str(smooth_js)], input=encode_inputs(), capture_output=True,
                         text=True, timeout=60, check=True)
    check_ema(json.loads(res.stdout))


def test_js_ema_rejects_bad_weights_like_python() -> None:
    with pytest.raises(ValueError):
        smooth([1.0], 1.0)
    assert "RangeError" in asset_text("smooth.js")


# -- the report data --------------------------------------------------------------------------------

def logged(run_dir: Path, key: str) -> dict[int, float]:
    df = runsync.open_run(run_dir).history(keys=[key], wide=True)
    return dict(zip(df["step"].tolist(), df[key].astype(float).tolist()))


def test_every_drawn_point_is_a_logged_point(runs_dir: Path, report: tuple[str, dict[str, Any]]) -> None:
    _html, data = report
    assert data["format"] == 1 and len(data["runs"]) == 3
    assert data["keys"] == ["epoch", "train/loss", "val/acc"]
    checked = 0
    for run in data["runs"]:
        h = run["history"]
        steps = undelta(h["steps"])
        assert steps == sorted(set(steps))
        for key, s in h["series"].items():
            truth = logged(Path(run["path"]), key)
            idx = undelta(s["i"])
            ys = [decode(v, bool(s.get("f32"))) for v in s["y"]]
            assert len(idx) == len(ys) <= s["n"] == len(truth)
            for i, y in zip(idx, ys):
                assert same(truth[steps[i]], y), (run["name"], key, steps[i], y)
                checked += 1
    assert checked > 5000


def test_long_run_is_downsampled_keeping_spike_and_nan(report: tuple[str, dict[str, Any]]) -> None:
    _html, data = report
    (long,) = [r for r in data["runs"] if r["steps"] == LONG_STEPS]
    s = long["history"]["series"]["train/loss"]
    assert s["n"] == LONG_STEPS and len(s["y"]) <= 2100
    ys = [decode(v, bool(s.get("f32"))) for v in s["y"]]
    assert SPIKE in ys and any(math.isnan(y) for y in ys)
    steps = undelta(long["history"]["steps"])
    drawn_steps = {steps[i] for i in undelta(s["i"])}
    assert {0, LONG_STEPS - 1, 123_457, 150_001} <= drawn_steps


def test_x_axis_key_values_and_times(runs_dir: Path, report: tuple[str, dict[str, Any]]) -> None:
    _html, data = report
    assert data["xkeys"][0] == "epoch"  # keys never decreasing with step; axis-like names first
    for run in data["runs"]:
        h = run["history"]
        steps = undelta(h["steps"])
        epoch = [decode(v, bool(h["x"]["epoch"].get("f32"))) for v in h["x"]["epoch"]["v"]]
        truth = logged(Path(run["path"]), "epoch")
        assert all(truth[s] == e for s, e in zip(steps, epoch))  # epoch is logged at every step
        ms = undelta(h["time"])
        assert len(ms) == len(steps) and min(ms) >= -1000 and max(ms) <= (run["duration"] + 1) * 1000
        assert run["t0"] > 1e9


def test_runs_config_summary_and_system(report: tuple[str, dict[str, Any]]) -> None:
    _html, data = report
    by_name = {r["name"]: r for r in data["runs"]}
    assert set(by_name) == {"short-a", EVIL_NAME, "long-c"}
    assert by_name["long-c"]["config"]["optim.name"] == "sgd" and by_name["long-c"]["config"]["lr"] == 1e-2
    assert by_name["short-a"]["summary"]["best_acc"] == 0.9
    assert [r["created"] for r in data["runs"]] == sorted((r["created"] for r in data["runs"]), reverse=True)
    assert data["system_keys"] == ["cpu.percent", "gpu.0.util_percent", "memory.used_percent"]
    sysb = by_name["long-c"]["system"]
    s = sysb["series"]["cpu.percent"]
    assert s["n"] == 40 and [decode(v, False) for v in s["y"]] == [float(10 + (k * 7 + 11) % 80) for k in range(40)]


def test_media_gallery_data(report: tuple[str, dict[str, Any]]) -> None:
    _html, data = report
    assert data["media_keys"] == ["notes/text", "preds/table", "samples/image", "weights/hist"]
    media = next(r for r in data["runs"] if r["name"] == "short-a")["media"]
    imgs = media["samples/image"]
    assert len(imgs) <= 8 and len({i["step"] for i in imgs}) == 8  # 8 kept, spread over 12 steps
    assert imgs[0]["step"] == 0 and imgs[-1]["step"] == 1100
    assert all(max(i["w"], i["h"]) <= 256 and i["data"].startswith("data:image/png;base64,") for i in imgs)
    assert media["preds/table"][0]["data"]["total"] == 30 and len(media["preds/table"][0]["data"]["rows"]) == 20
    hist = media["weights/hist"][0]["data"]
    assert len(hist["counts"]) == 20 and len(hist["edges"]) == 21
    assert "window.pwned=2" in media["notes/text"][0]["data"]
    assert not any("media" in r for r in data["runs"] if r["name"] != "short-a")


# -- the HTML ---------------------------------------------------------------------------------------

URL_ATTR = re.compile(r"""\b(?:src|href|srcset|action|poster|data|formaction)\s*=\s*["']?\s*([^"'\s>]*)""", re.IGNORECASE)


def test_html_is_self_contained(report: tuple[str, dict[str, Any]]) -> None:
    html, _data = report
    assert '<link rel="icon" href="data:,">' in html
    for m in URL_ATTR.finditer(html):
        value = m.group(1)
        assert not re.match(r"(?i)(https?:)?//", value), f"external reference {m.group(0)!r}"
    css = "".join(re.findall(r"<style>(.*?)</style>", html, re.DOTALL))
    assert "@import" not in css and not re.search(r"url\(\s*['\"]?\s*(?!data:)", css)
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", html, re.IGNORECASE)
    assert html.count("<script") == 4  # data, uPlot, smoothing, page
    assert "Copyright (c) 2022 Leon Sorokin" in html  # uPlot's MIT licence travels with it
    for banned in ("fetch(", "XMLHttpRequest", "WebSocket", "sendBeacon", "EventSource"):
        assert banned not in asset_text("report.js") and banned not in asset_text("smooth.js")


def test_html_escapes_logged_strings(report: tuple[str, dict[str, Any]]) -> None:
    html, data = report
    m = re.search(r'<script type="application/json" id="runsync-data">(.*?)</script>', html, re.DOTALL)
    assert m is not None and "<" not in m.group(1)
    assert "<script>window.pwned" not in html
    assert any(r["name"] == EVIL_NAME for r in data["runs"])
    title = re.search(r"<title>(.*?)</title>", html).group(1)  # type: ignore[union-attr]
    assert "<" not in title


def test_report_size_stays_small(report: tuple[str, dict[str, Any]]) -> None:
    html, data = report
    media = sum(len(json.dumps(r.get("media", {}))) for r in data["runs"])
    assert len(html.encode()) - media < 1_000_000  # 3 runs incl. 200k steps: charts and data well under 1 MB
    assert len(html.encode()) < 3_000_000


def test_uplot_asset_is_the_pinned_one() -> None:
    import hashlib

    script = (Path(runsync.report.__file__).parent / "assets" / "update_uplot.sh").read_text()
    recorded = re.findall(r"^\s+([0-9a-f]{64})$", script, re.MULTILINE)
    names = ["uPlot.iife.min.js", "uPlot.min.css", "LICENSE"]
    assert len(recorded) == 3
    for name, want in zip(names, recorded):
        data = (Path(runsync.report.__file__).parent / "assets" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == want, name
    assert "MIT" in asset_text("assets/LICENSE")
    assert f"VERSION={UPLOT_VERSION}\n" in script and f"(v{UPLOT_VERSION})" in asset_text("assets/uPlot.iife.min.js")


# -- choosing runs ----------------------------------------------------------------------------------

def test_select_runs_by_ref_and_where(runs_dir: Path) -> None:
    recs, _ = select_runs(runs_dir, ["short-a"])
    assert [r["name"] for r in recs] == ["short-a"]
    # --where is the language of `runsync runs` (runsync.reader.query)
    recs, _ = select_runs(runs_dir, None, "config.optim.name = adam and steps > 500")
    assert [r["name"] for r in recs] == [EVIL_NAME]
    recs, _ = select_runs(runs_dir, [recs[0]["id"], "long-c", "short-a"], "summary.best_acc < 0.85")
    assert [r["name"] for r in recs] == ["long-c", EVIL_NAME]  # newest first
    recs, _ = select_runs(runs_dir, None, "status = finished and created > 1d ago and name ~ '^(short|long)'")
    assert {r["name"] for r in recs} == {"short-a", "long-c"}
    with pytest.raises(RunsyncError, match="no run 'nope'"):
        select_runs(runs_dir, ["nope"])
    with pytest.raises(QueryError):
        select_runs(runs_dir, None, "__import__('os').system('true')")
    with pytest.raises(QueryError):
        select_runs(runs_dir, None, "config.no_such_key > 1")


# -- media encoding ---------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, _depth, color = struct.unpack(">IIBB", data[16:26])
    return w, h, color


def unpng(data: bytes) -> np.ndarray:
    """Decode our own PNGs (8-bit, filter 1 on every row) to check the pixels."""
    w, h, color = png_size(data)
    c = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * c)
    assert np.all(raw[:, 0] == 1)
    return np.cumsum(raw[:, 1:].reshape(h, w, c).astype(np.int64), axis=1).astype(np.uint8)


def test_png_and_shrink() -> None:
    img = (np.arange(300 * 1000 * 3) % 251).reshape(300, 1000, 3).astype(np.uint8)
    small = shrink(img, 256)
    assert small.shape == (75, 250, 3)
    assert np.array_equal(unpng(png_bytes(small)), small)
    gray = shrink(np.eye(10), 256)
    assert gray.shape == (10, 10, 1) and gray.max() == 255
    assert png_size(png_bytes(gray))[:2] == (10, 10)
    with pytest.raises(ValueError):
        shrink(np.zeros((4, 4, 7)), 256)


def test_media_limits_spread_and_budget() -> None:
    assert spread(list(range(100)), 5) == [0, 25, 50, 74, 99]
    items = [FakeItem(s, "k", i, "text", None, "x" * 100) for s in range(3) for i in range(10)]
    out, problems = collect_media(FakeMediaView(items), MediaLimits(per_key=8), MediaBudget(10**6))
    assert not problems and [(it["step"], it["index"]) for it in out["k"]] == [(s, i) for s in range(3)
                                                                                for i in range(2)]
    budget = MediaBudget(500)
    out, _ = collect_media(FakeMediaView(items), MediaLimits(per_key=8), budget)
    assert len(out["k"]) == 3 and budget.omitted == 3
    odd = [FakeItem(0, "h", 0, "histogram", None, FakeHistogram([1, 2], [0.0, 1.0, float("inf")])),
           FakeItem(0, "bad", 0, "image", None, np.zeros((2, 2, 9))), FakeItem(0, "v", 0, "video", None, b"")]
    out, problems = collect_media(FakeMediaView(odd), MediaLimits(), MediaBudget(10**6))
    assert out["h"][0]["data"]["edges"][-1] == "Infinity" and "bad" not in out and "v" not in out
    assert len(problems) == 1 and "bad" in problems[0]
    assert collect_media(object(), MediaLimits(), MediaBudget(10)) == ({}, [])


# -- the command ------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    from runsync.cli import report as cli_report

    p = argparse.ArgumentParser(prog="runsync")
    cli_report.register(p.add_subparsers(dest="command"))
    return p


def test_cli_report(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "r.html"
    args = parser().parse_args(["report", str(runs_dir), "--runs", "short-a", "long-c", "-o", str(out)])
    assert args.func(args) == 0
    assert "2 runs" in capsys.readouterr().out
    data = blob(out.read_text())
    assert {r["name"] for r in data["runs"]} == {"short-a", "long-c"}
    args = parser().parse_args(["report", str(runs_dir), "--where", "steps > 1e9", "-o", str(out), "-q"])
    assert args.func(args) == 1
    args = parser().parse_args(["report", str(runs_dir), "--where", "open('x')", "-o", str(out)])
    with pytest.raises(QueryError):  # runsync's main() prints it with a caret under the fault, exit status 1
        args.func(args)
    args = parser().parse_args(["report", str(tmp_path / "none"), "-o", str(out)])
    assert args.func(args) == 2


def test_cli_help_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["report", "--help"])
    text = capsys.readouterr().out
    for word in ("--runs", "--where", "-o", "self-contained", "no server", "downsampled", "config.KEY"):
        assert word in text


def test_render_without_runs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    data = collect(tmp_path / "empty", options=ReportOptions())
    html = render(data)
    assert blob(html)["runs"] == [] and "</html>" in html
