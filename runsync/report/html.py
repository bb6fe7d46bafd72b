"""The report as one self-contained HTML file: data, uPlot, styles and page script inline.

The file must open on a machine with no network and make no request of any
kind, so nothing is referenced: uPlot (``assets/``, MIT, its licence copied
into the file) and the page's own script and styles are inlined, fonts are the
system's, and the favicon is an empty data: URI so the browser does not ask a
server for one. The data is one ``<script type="application/json">`` blob in
which every ``<`` is written ``\\u003c``, so no logged string can close the
script element.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["UPLOT_VERSION", "asset_text", "data_json", "render"]

UPLOT_VERSION = "1.6.32"


@cache
def asset_text(name: str) -> str:
    """A file shipped beside this module (``report.js``) or in ``assets/`` (``assets/uPlot.min.css``)."""
    path = resources.files("runsync.report")
    for part in name.split("/"):
        path = path / part
    return path.read_text(encoding="utf-8")


def data_json(data: dict[str, Any]) -> str:
    """Compact strict JSON, safe inside a script element."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _script_safe(code: str, name: str) -> str:
    if "</script" in code.lower() or "<!--" in code:
        raise ValueError(f"{name} contains '</script' or '<!--' and cannot be inlined")
    return code


def _comment_safe(text: str) -> str:
    return text.replace("*/", "* /")


def render(data: dict[str, Any], served: bool = False) -> str:
    """The whole HTML document for report ``data`` (from ``build.collect``).

    ``served``: the page of ``runsync ui`` — ``data`` is then only where to fetch
    the data from (``serve.py``), and ``served.js``, the page's one use of the
    network, is inlined; a static report never has it.
    """
    title = html.escape(str(data.get("title") or "runsync report"))
    licence = _comment_safe(asset_text("assets/LICENSE").strip())
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"generator\" content=\"runsync report\">\n",
        "<link rel=\"icon\" href=\"data:,\">\n",
        f"<title>{title}</title>\n",
        f"<style>\n/* uPlot {UPLOT_VERSION} (MIT licence, below) */\n{asset_text('assets/uPlot.min.css')}\n</style>\n",
        f"<style>\n{asset_text('report.css')}</style>\n",
        "</head>\n<body>\n<div id=\"app\"><noscript>This report needs JavaScript.</noscript></div>\n",
        "<script type=\"application/json\" id=\"runsync-data\">", data_json(data), "</script>\n",
        f"<script>\n/* uPlot {UPLOT_VERSION}, vendored unmodified from its npm package.\n{licence}\n*/\n",
        _script_safe(asset_text("assets/uPlot.iife.min.js"), "uPlot"), "\n</script>\n",
        "<script>\n", _script_safe(asset_text("smooth.js"), "smooth.js"), "</script>\n",
        *(["<script>\n", _script_safe(asset_text("served.js"), "served.js"), "</script>\n"] if served else []),
        "<script>\n", _script_safe(asset_text("report.js"), "report.js"), "</script>\n",
        "</body>\n</html>\n",
    ])
