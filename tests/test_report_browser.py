"""``runsync report`` in a real headless Chromium (Debian's), driven over the DevTools pipe.

Checks what a person would: the page makes no request but for itself, charts
are drawn, the smoothing slider, the run checkboxes and the x-axis choice
change what is drawn, hovering shows logged values, the media gallery shows,
and the JS smoothing equals runsync.smooth. Saves test-artifacts/report.png.

Chromium is required (CI installs it); set RUNSYNC_SKIP_BROWSER=1 to skip.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdp import Browser, Page, find_chromium
from report_runs import EVIL_NAME, WEIGHTS, check_ema, ema_inputs, encode_inputs, fake_media, make_runs, opener

import runsync
from runsync.report import build_report

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.environ.get("RUNSYNC_SKIP_BROWSER") == "1":
        pytest.skip("RUNSYNC_SKIP_BROWSER=1")
    path = find_chromium()
    if path is None:
        pytest.fail("the browser tests need Chromium: `apt-get update && apt-get install -y chromium` "
                    "(Debian; CI's .ci/run installs it), or set RUNSYNC_SKIP_BROWSER=1 to skip them", pytrace=False)
    return path


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report-browser")
    root = base / "runs"
    root.mkdir()
    make_runs(root)
    out = base / "report.html"
    build_report(root, out, opener=opener({"short-a": fake_media(), "long-c": fake_media(6)}))
    return root, out


@pytest.fixture(scope="module")
def page(chromium: str, report_file: tuple[Path, Path]) -> Iterator[Page]:
    with Browser(chromium, timeout=30) as browser:
        p = browser.new_page()
        p.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1000, "deviceScaleFactor": 1,
                                                      "mobile": False})
        p.navigate(report_file[1].as_uri())
        p.wait_for("window.runsyncReport && window.runsyncReport.ready", timeout=30)
        yield p


# JS run in the page: a short fingerprint of a chart's canvas and how much of it is painted.
CANVAS_INFO = """
(function (key) {
  const ch = window.runsyncReport.charts.find(c => c.key === key && c.kind === 'history');
  if (!ch || !ch.plot) return null;
  const cv = ch.plot.ctx.canvas;
  const d = ch.plot.ctx.getImageData(0, 0, cv.width, cv.height).data;
  let painted = 0, h = 2166136261;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] !== 0) painted++;
    h = Math.imul(h ^ d[i] ^ (d[i + 1] << 8) ^ (d[i + 2] << 16) ^ (d[i + 3] << 24), 16777619) >>> 0;
  }
  return {painted: painted, hash: h, url: cv.toDataURL().length, series: ch.plot.series.length,
          xmin: ch.plot.scales.x.min, xmax: ch.plot.scales.x.max, width: cv.width, height: cv.height};
})(KEY)
"""


def canvas(page: Page, key: str = "train/loss") -> dict[str, Any]:
    info = page.evaluate(CANVAS_INFO.replace("KEY", json.dumps(key)))
    assert info is not None, f"chart {key} not drawn"
    return info


def redraw(page: Page, js: str) -> None:
    """Run ``js`` (a user action) and wait for the page's next redraw pass."""
    before = page.evaluate("window.runsyncReport.redraws")
    page.evaluate(js)
    page.wait_for(f"window.runsyncReport.redraws > {before}", timeout=10)


def set_control(element_id: str, value: object, event: str) -> str:
    """JS that sets a control's value and fires the event a person's input would."""
    return ("(() => { const s = document.getElementById(" + json.dumps(element_id) + "); s.value = "
            + json.dumps(str(value)) + "; s.dispatchEvent(new Event(" + json.dumps(event)
            + ", {bubbles: true})); })()")


def set_slider(w: float) -> str:
    return set_control("smoothing", w, "input")


def set_axis(v: str) -> str:
    return set_control("xaxis", v, "change")


def toggle_run(name: str) -> str:
    return ("(() => { const r = window.runsyncReport.data.runs.find(r => r.name === " + json.dumps(name) + ");"
            " document.querySelector('input[data-run=\"' + r.id + '\"]').click(); })()")


def test_page_loads_with_no_request_but_itself(page: Page, report_file: tuple[Path, Path]) -> None:
    urls = [u for u in page.requests() if not u.startswith("data:")]
    assert urls == [report_file[1].as_uri()], urls
    assert page.console_errors() == []
    assert page.evaluate("typeof window.pwned") == "undefined"  # logged strings stayed text
    names = page.evaluate("Array.from(document.querySelectorAll('table.runs tbody tr td:nth-child(2)'))"
                          ".map(td => td.textContent)")
    assert EVIL_NAME in names and len(names) == 3


def test_charts_are_drawn(page: Page) -> None:
    n = page.evaluate("document.querySelectorAll('.uplot canvas').length")
    assert n >= 3
    info = canvas(page)
    assert info["painted"] > 2000 and info["width"] > 300, info
    assert info["series"] == 1 + 2 * 3  # x + (raw, smoothed) per run at the default smoothing 0.6
    keys = page.evaluate("window.runsyncReport.charts.map(c => c.kind + ':' + c.key)")
    assert {"history:train/loss", "history:val/acc", "history:epoch", "system:cpu.percent"} <= set(keys)
    groups = page.evaluate("Array.from(document.querySelectorAll('#sec-history details.group'))"
                           ".map(d => d.dataset.group)")
    assert groups == ["", "train", "val"]


def test_js_smoothing_equals_python(page: Page) -> None:
    inputs = encode_inputs()
    got = page.evaluate(
        "(() => { const inputs = JSON.parse(" + json.dumps(inputs) + ")"
        ".map(a => a.map(v => typeof v === 'string' ? Number(v) : v));"
        " const enc = v => Number.isFinite(v) ? v : String(v);"
        " return JSON.stringify(inputs.map(a => " + json.dumps(WEIGHTS) + ""
        ".map(w => window.runsyncReport.smooth(a, w).map(enc)))); })()")
    check_ema(json.loads(got))
    assert len(ema_inputs()) == len(json.loads(got))


def test_smoothing_slider_changes_the_chart(page: Page) -> None:
    before = canvas(page)
    redraw(page, set_slider(0.95))
    after = canvas(page)
    assert after["hash"] != before["hash"] and after["painted"] > 2000
    redraw(page, set_slider(0))
    raw = canvas(page)
    assert raw["series"] == 1 + 3 and raw["hash"] not in (before["hash"], after["hash"])
    # Smoothed values the page draws are runsync.smooth over the drawn points
    drawn = json.loads(page.evaluate(
        "JSON.stringify(window.runsyncReport.charts.find(c => c.key === 'train/loss').list"
        ".map(s => s.ys.map(v => Number.isFinite(v) ? v : String(v))))"))
    sm = json.loads(page.evaluate(
        "JSON.stringify(window.runsyncReport.charts.find(c => c.key === 'train/loss').list"
        ".map(s => window.runsyncReport.smooth(s.ys, 0.95).map(v => Number.isFinite(v) ? v : String(v))))"))
    for ys, s in zip(drawn, sm):
        want = runsync.smooth([float(v) for v in ys], 0.95)
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(map(float, s), want))
    redraw(page, set_slider(0.6))


def test_unchecking_a_run_changes_the_chart(page: Page) -> None:
    before = canvas(page)
    redraw(page, toggle_run("long-c"))
    after = canvas(page)
    assert after["series"] == before["series"] - 2 and after["hash"] != before["hash"]
    assert page.evaluate("document.querySelector('.controls .count').textContent") == "2 of 3 runs drawn"
    redraw(page, toggle_run("long-c"))
    assert canvas(page)["series"] == before["series"]


def test_x_axis_choice(page: Page, report_file: tuple[Path, Path]) -> None:
    step = canvas(page)
    assert step["xmax"] >= 199_999 * 0.99
    redraw(page, set_axis("key:epoch"))
    ep = canvas(page)
    assert ep["xmax"] <= 10 and ep["hash"] != step["hash"]
    redraw(page, set_axis("rel"))
    rel = canvas(page)
    durations = [r["duration"] for r in page.evaluate("window.runsyncReport.data.runs")]
    assert 0 < rel["xmax"] <= max(durations) + 2 and rel["xmin"] > -2
    redraw(page, set_axis("wall"))
    wall = canvas(page)
    assert wall["xmin"] > 1.6e9 and wall["hash"] != rel["hash"]
    redraw(page, set_axis("step"))


def test_step_metric_is_a_keys_default_x_axis(page: Page) -> None:
    """A key whose runs define_metric(step_metric=) (the data's step_metrics) is drawn against it on the
    default axis, and says so; another axis chosen by hand applies as before."""
    note = ("window.runsyncReport.charts.find(c => c.key === 'train/loss' && c.kind === 'history')"
            ".note.textContent")
    step = canvas(page)
    try:
        page.evaluate("window.runsyncReport.data.step_metrics = {'train/loss': 'epoch'}")
        redraw(page, set_axis("step"))
        ep = canvas(page)
        assert ep["xmax"] <= 10 and ep["hash"] != step["hash"]
        assert "x: epoch" in page.evaluate(note)
        redraw(page, set_axis("wall"))
        assert canvas(page)["xmin"] > 1.6e9
    finally:
        page.evaluate("window.runsyncReport.data.step_metrics = {}")
        redraw(page, set_axis("step"))
    assert canvas(page)["hash"] == step["hash"]


def test_log_y(page: Page) -> None:
    lin = canvas(page)
    redraw(page, "document.getElementById('logy').click()")
    log = canvas(page)
    assert log["hash"] != lin["hash"] and page.evaluate(
        "window.runsyncReport.charts.find(c => c.key === 'train/loss').plot.scales.y.distr") == 3
    redraw(page, "document.getElementById('logy').click()")
    assert canvas(page)["hash"] == lin["hash"]


def test_hover_shows_logged_values(page: Page, report_file: tuple[Path, Path]) -> None:
    box = page.evaluate(
        "(() => { const c = window.runsyncReport.charts.find(c => c.key === 'val/acc');"
        " c.box.scrollIntoView(); const r = c.plot.over.getBoundingClientRect();"
        " return {x: r.left + r.width * 0.5, y: r.top + r.height * 0.5}; })()")
    time.sleep(0.2)
    box = page.evaluate(
        "(() => { const r = window.runsyncReport.charts.find(c => c.key === 'val/acc').plot.over"
        ".getBoundingClientRect(); return {x: r.left + r.width * 0.5, y: r.top + r.height * 0.5}; })()")
    page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box["x"], "y": box["y"]})
    page.wait_for("document.querySelector('.tip').style.display === 'block'", timeout=5)
    values = page.evaluate("Array.from(document.querySelectorAll('.tip .v')).map(e => e.textContent)")
    assert values
    logged = set()
    for d in report_file[0].glob("*/run.json"):
        df = runsync.open_run(d.parent).history(keys=["val/acc"])
        logged |= {float(v) for v in df["val/acc"].dropna()}
    assert all(float(v) in logged for v in values), values  # the hover shows logged values, not smoothed ones
    page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 2, "y": 2})
    page.evaluate("window.scrollTo(0, 0)")


def test_media_gallery_and_config_diff(page: Page) -> None:
    kinds = page.evaluate("Array.from(document.querySelectorAll('#sec-media .item')).map(e => e.dataset.kind)")
    assert {"image", "histogram", "table", "text"} <= set(kinds)
    imgs = page.evaluate("Array.from(document.querySelectorAll('#sec-media img'))"
                         ".map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
    assert imgs and all(c and 0 < w <= 256 and s == "data:image/png;base64," for c, w, s in imgs)
    painted = page.evaluate(
        "(() => { const c = document.querySelector('#sec-media canvas[data-kind=histogram]');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) if (d[i] < 100 && d[i + 2] > 150) n++; return n; })()")
    assert painted > 200  # blue bars
    texts = page.evaluate("Array.from(document.querySelectorAll('#sec-media pre')).map(p => p.textContent)")
    assert any("<script>window.pwned=2</script>" in t for t in texts)  # shown as text, not run
    # step slider of a media key moves the gallery
    steps = page.evaluate(
        "(() => { const k = document.querySelector('.media-key[data-key=\"samples/image\"]');"
        " const s = k.querySelector('input[type=range]'); s.value = '0';"
        " s.dispatchEvent(new Event('input')); return Array.from(k.querySelectorAll('.card .at'))"
        ".map(e => e.textContent); })()")
    assert steps and all(s == "step 0" for s in steps)
    diff = page.evaluate("Array.from(document.querySelectorAll('#sec-config tr.diff')).map(r => r.dataset.key)")
    assert set(diff) == {"batch", "lr", "optim.name"}
    same = page.evaluate("Array.from(document.querySelectorAll('#sec-config tr.same')).map(r => r.dataset.key)")
    assert set(same) == {"optim.momentum", "seed"}


def test_table_sort_and_filter(page: Page) -> None:
    page.evaluate("document.querySelector('th[data-col=steps]').click()")
    col = "Array.from(document.querySelectorAll('table.runs tbody tr')).map(r => r.dataset.run)"
    runs = page.evaluate("window.runsyncReport.data.runs")
    by_steps = [r["id"] for r in sorted(runs, key=lambda r: r["steps"])]
    assert page.evaluate(col) == by_steps
    page.evaluate("document.querySelector('th[data-col=steps]').click()")
    assert page.evaluate(col) == by_steps[::-1]
    page.evaluate("(() => { const f = document.querySelector('.tablebar input'); f.value = 'long';"
                  " f.dispatchEvent(new Event('input')); })()")
    assert page.evaluate(col) == [r["id"] for r in runs if r["name"] == "long-c"]
    page.evaluate("(() => { const f = document.querySelector('.tablebar input'); f.value = '';"
                  " f.dispatchEvent(new Event('input')); })()")
    assert len(page.evaluate(col)) == 3


def test_screenshot(page: Page) -> None:
    redraw(page, set_axis("step"))
    page.evaluate("window.scrollTo(0, 0)")
    time.sleep(0.3)
    out = ARTIFACTS / "report.png"
    page.screenshot(out, full_page=False)
    assert out.stat().st_size > 20_000
    assert re.match(rb"\x89PNG", out.read_bytes()[:4])
    assert [u for u in page.requests() if not u.startswith(("data:", "file:"))] == []
