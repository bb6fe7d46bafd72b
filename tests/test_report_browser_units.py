"""Report chart axes in a real headless Chromium: byte-valued system keys in human units (issue 13 §5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cdp import Browser, find_chromium
from report_runs import make_runs, opener, write_system_part

from runsync.report import build_report

pytestmark = pytest.mark.timeout(180)


def test_byte_axes_in_human_units(tmp_path: Path) -> None:
    if os.environ.get("RUNSYNC_SKIP_BROWSER") == "1":
        pytest.skip("RUNSYNC_SKIP_BROWSER=1")
    chromium = find_chromium()
    assert chromium is not None, "the browser tests need Chromium"
    root = tmp_path / "runs"
    root.mkdir()
    made = make_runs(root)
    for r in made:  # replace the fake system part with byte-valued keys of a few GiB / MiB per second
        write_system_part(root / r.id, samples=40, keys=["memory.used_bytes", "net.recv_bytes_per_s"],
                          scale=64 * 2**20)
    out = tmp_path / "report.html"
    build_report(root, out, opener=opener())
    with Browser(chromium, timeout=30) as browser:
        p = browser.new_page()
        p.navigate(out.as_uri())
        p.wait_for("window.runsyncReport && window.runsyncReport.ready", timeout=30)
        got = {}
        for key in ["memory.used_bytes", "net.recv_bytes_per_s"]:
            got[key] = p.wait_for(
                "(() => { const c = window.runsyncReport.charts.find(c => c.kind === 'system' && c.key === "
                f"'{key}'); if (!c) return null; c.box.scrollIntoView(); if (!c.plot) return null;"
                " const v = c.plot.axes[1]._values; return v && v.length ? v : null; })()", timeout=15)
    mem, net = got["memory.used_bytes"], got["net.recv_bytes_per_s"]
    assert all(v.endswith(("MiB", "GiB")) for v in mem if v), mem
    assert all(v.endswith(("MiB/s", "GiB/s")) for v in net if v), net
    assert not any("000000" in v for v in mem + net), (mem, net)
