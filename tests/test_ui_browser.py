"""``runsync ui`` in a real headless Chromium (Debian's) against the server on 127.0.0.1 (issue 18 §2).

The page (the report's own, fed by the server) lists runs and draws charts; the x-axis choice and the
smoothing redraw; a run training in a subprocess grows on its chart while the page stays open (no
reload); 1,000 runs list in under 2 s with the newest drawn; the token's one-time URL leaves the address
bar; every request the page makes goes to the server. Saves test-artifacts/ui.png.

Chromium is required (CI installs it); set RUNSYNC_SKIP_BROWSER=1 to skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdp import Browser, Page, find_chromium
from report_runs import write_system_part
from ui_util import TRAIN, clone_runs, env, make_small_runs, spawn_ranks, ui_server, wait

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.timeout(300)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.environ.get("RUNSYNC_SKIP_BROWSER") == "1":
        pytest.skip("RUNSYNC_SKIP_BROWSER=1")
    path = find_chromium()
    if path is None:
        pytest.fail("the browser tests need Chromium: `apt-get update && apt-get install -y chromium` "
                    "(Debian; CI's .ci/run installs it), or set RUNSYNC_SKIP_BROWSER=1 to skip them", pytrace=False)
    return path


@pytest.fixture()
def browser(chromium: str) -> Iterator[Browser]:
    with Browser(chromium, timeout=60) as b:
        yield b


def _page(browser: Browser) -> Page:
    p = browser.new_page()
    p.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1000, "deviceScaleFactor": 1,
                                                  "mobile": False})
    return p


# A chart's drawn lines: [[run id, points drawn]] and how much of its canvas is painted.
CHART = """
(function (kind, key) {
  const api = window.runsyncReport;
  const ch = api.charts.find(c => c.key === key && c.kind === kind);
  if (!ch || !ch.plot || !ch.list) return null;
  const cv = ch.plot.ctx.canvas;
  const d = ch.plot.ctx.getImageData(0, 0, cv.width, cv.height).data;
  let painted = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) painted++;
  return {lines: ch.list.map(l => [api.data.runs[l.run].id, l.xs.length, l.xs[l.xs.length - 1]]),
          painted: painted, redraws: api.redraws};
})(%r, %r)
"""


def _chart(page: Page, key: str, kind: str = "history") -> dict | None:
    return page.evaluate(CHART % (kind, key))


def _only_server(page: Page, base: str) -> None:
    bad = [u for u in page.requests() if not u.startswith(base) and not u.startswith("data:")]
    assert not bad, f"the page asked something other than its server: {bad[:5]}"


def test_runs_listed_charts_drawn_controls(tmp_path: Path, browser: Browser) -> None:
    root = tmp_path / "runs"
    make_small_runs(root, 3, 500, media=True)
    for d in root.iterdir():
        write_system_part(d, samples=40)
    with ui_server(root, "--interval", "0.5") as srv:
        page = _page(browser)
        page.navigate(srv.url)
        page.wait_for("window.runsyncReport && window.runsyncReport.ready", 60)
        assert page.evaluate("document.querySelectorAll('#sec-runs tbody tr').length") == 3
        names = page.evaluate("[...document.querySelectorAll('#sec-runs tbody tr')].map(r => r.textContent)")
        assert all(any(f"small-{k}" in n for n in names) for k in range(3))
        got = wait(lambda: (c := _chart(page, "train/loss")) and len(c["lines"]) == 3 and c["painted"] > 500 and c,
                   60, "the loss chart with three runs")
        assert all(n == 500 for _id, n, _last in got["lines"])
        wait(lambda: (c := _chart(page, "val/acc")) and len(c["lines"]) == 3, 60, "the val/acc chart")
        # system metrics and the media gallery, from the same server
        page.evaluate("document.getElementById('sec-system').scrollIntoView()")
        wait(lambda: (c := _chart(page, "cpu.percent", "system")) and len(c["lines"]) == 3 and c["painted"] > 200,
             60, "a system chart")
        imgs = wait(lambda: page.evaluate("document.querySelectorAll('#sec-media img').length"), 60, "media images")
        assert imgs == 3 and page.evaluate("document.querySelector('#sec-media img').src").startswith("data:image/png")
        page.evaluate("window.scrollTo(0, 0)")
        # x axis: epoch (a logged key) and smoothing change what is drawn
        before = got["redraws"]
        page.evaluate("(() => { const s = document.getElementById('xaxis'); s.value = 'key:epoch';"
                      " s.dispatchEvent(new Event('change')); })()")
        wait(lambda: (c := _chart(page, "train/loss")) and c["redraws"] > before and c["lines"][0][2] == 4, 30,
             "the redraw against epoch")
        page.evaluate("(() => { const s = document.getElementById('smoothing'); s.value = '0.9';"
                      " s.dispatchEvent(new Event('input')); })()")
        wait(lambda: page.evaluate("window.runsyncReport.state.smoothing") == 0.9, 10, "smoothing")
        # unselect a run: two lines
        page.evaluate("document.querySelector('#sec-runs tbody input[type=checkbox]').click()")
        wait(lambda: (c := _chart(page, "train/loss")) and len(c["lines"]) == 2, 30, "two lines")
        assert page.evaluate("document.querySelectorAll('#sec-config tr.diff').length") >= 1  # config diff (lr)
        # finished runs are fetched once: polls go on, no chart's data is asked for again
        series = [u for u in page.requests() if "/api/series" in u]
        assert len(series) == len(set(series))
        polls = page.evaluate("window.runsyncReport.polls")
        wait(lambda: page.evaluate("window.runsyncReport.polls") >= polls + 3, 30, "three more polls")
        page.evaluate("window.runsyncReport.redraw()")
        time.sleep(0.5)
        assert [u for u in page.requests() if "/api/series" in u] == series
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(ARTIFACTS / "ui.png")
        assert not page.console_errors()
        _only_server(page, srv.base)


def test_live_run_grows_without_reload(tmp_path: Path, browser: Browser) -> None:
    root = tmp_path / "runs"
    train = subprocess.Popen([sys.executable, "-c", TRAIN, str(root), "25"], env=env(), stderr=subprocess.PIPE)
    try:
        wait(lambda: (root / "live1" / "run.json").exists(), 60, "the run to start")
        with ui_server(root, "--interval", "0.3") as srv:
            page = _page(browser)
            page.navigate(srv.url)
            page.evaluate("window.__same_document = 1")  # survives only if the page never reloads
            first = wait(lambda: (c := _chart(page, "train/loss")) and c["lines"] and c["lines"][0][1] >= 2 and c,
                         90, "the live run's first points")
            n0 = first["lines"][0][1]
            grown = wait(lambda: (c := _chart(page, "train/loss")) and c["lines"][0][1] >= n0 + 50 and c, 90,
                         "the chart to grow")
            assert grown["lines"][0][2] > first["lines"][0][2]  # later steps drawn
            assert page.evaluate("window.__same_document") == 1 and page.evaluate("window.runsyncReport.polls") > 1
            assert train.wait(120) == 0
            wait(lambda: page.evaluate("document.querySelector('#sec-runs tbody td.status-finished') !== null"), 60,
                 "the table to show the run finished")
            final = wait(lambda: (c := _chart(page, "train/loss")) and c["lines"][0][1] >= grown["lines"][0][1]
                         and c, 30, "the final chart")
            assert final["painted"] > 200
            assert not page.console_errors()
            _only_server(page, srv.base)
    finally:
        if train.poll() is None:
            train.kill()
            train.wait(10)


def test_thousand_runs_list_in_under_two_seconds(tmp_path: Path, browser: Browser) -> None:
    root = tmp_path / "runs"
    clone_runs(root, 1000)
    with ui_server(root) as srv:
        page = _page(browser)
        t = time.monotonic()
        page.navigate(srv.url)
        page.wait_for("document.querySelectorAll('#sec-runs tbody tr').length === 1000", 30, 0.02)
        listed = time.monotonic() - t
        print(f"1,000 runs listed in {listed:.2f} s")
        assert listed < 2.0, f"1,000 runs took {listed:.2f} s to list"
        # the newest 20 are drawn; the page stays responsive while the rest are read
        got = wait(lambda: (c := _chart(page, "train/loss")) and len(c["lines"]) == 20 and c, 90, "20 lines")
        assert got["painted"] > 500
        t = time.monotonic()
        page.evaluate("(() => { const f = document.querySelector('#sec-runs input[type=search]'); f.value = 'clone-99';"
                      " f.dispatchEvent(new Event('input')); })()")
        assert page.evaluate("[...document.querySelectorAll('#sec-runs tbody tr')].length") == 11  # 99, 990..999
        assert time.monotonic() - t < 2.0
        assert not page.console_errors()
        _only_server(page, srv.base)


def test_token_url_leaves_the_address_bar(tmp_path: Path, browser: Browser) -> None:
    root = tmp_path / "runs"
    make_small_runs(root, 1, 100)
    with ui_server(root, "--host", "127.0.0.2", "--token", "tok-123") as srv:
        page = _page(browser)
        page.navigate(srv.base)
        assert "needs its access token" in page.evaluate("document.body.textContent")
        page.navigate(srv.url)
        page.wait_for("window.runsyncReport && window.runsyncReport.ready", 60)
        assert page.evaluate("location.href") == srv.base
        wait(lambda: (c := _chart(page, "train/loss")) and len(c["lines"]) == 1, 60, "the chart behind the token")


def test_one_line_per_rank_and_the_mean_toggle(tmp_path: Path, browser: Browser) -> None:
    root = tmp_path / "runs"
    spawn_ranks(root, 3)
    with ui_server(root) as srv:
        page = _page(browser)
        page.navigate(srv.url)
        got = wait(lambda: (c := _chart(page, "loss")) and len(c["lines"]) == 3 and c, 60, "three rank lines")
        assert [n for _id, n, _last in got["lines"]] == [100, 100, 100]
        legend = page.evaluate("[...document.querySelectorAll('.chart[data-key=loss] .legend .item')]"
                               ".map(e => e.dataset.stream)")
        assert legend == ["rank0", "rank1", "rank2"]
        page.evaluate("document.getElementById('streammean').click()")
        wait(lambda: (c := _chart(page, "loss")) and len(c["lines"]) == 1, 30, "the mean line")
        assert not page.console_errors()


def test_s3_source_drawn(tmp_path: Path, browser: Browser) -> None:
    pytest.importorskip("moto.server")
    from sync_s3server import moto_s3

    s3 = moto_s3()
    src = tmp_path / "runs"
    make_small_runs(src, 2, 300, media=True)
    url = s3.fresh_url()
    extra = {**s3.env, "RUNSYNC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-m", "runsync", "push", str(src), url], env=env(extra), check=True,
                   timeout=240, capture_output=True)
    with ui_server(url, "--interval", "1", extra_env=extra) as srv:
        page = _page(browser)
        page.navigate(srv.url)
        got = wait(lambda: (c := _chart(page, "train/loss")) and len(c["lines"]) == 2 and c, 90, "two runs from S3")
        assert [n for _id, n, _last in got["lines"]] == [300, 300] and got["painted"] > 500
        assert url in page.evaluate("document.querySelector('header .meta').textContent")
        page.evaluate("document.getElementById('sec-media').scrollIntoView()")
        wait(lambda: page.evaluate("document.querySelectorAll('#sec-media img').length") == 2, 60, "media from S3")
        assert not page.console_errors()
        _only_server(page, srv.base)
