"""``runsync ui``: a live local dashboard — the report's page, served from a runs directory or a remote."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..format.errors import RunsyncError
from ._common import DEFAULT_DIR

__all__ = ["cmd_ui", "register"]

_DESCRIPTION = """\
Serve the page of `runsync report` live: the runs table, charts (smoothing,
x-axis choice, per-stream lines), media, config diff and system metrics, fed
by a small read-only server. Charts of running runs grow while the page is
open (it polls); finished runs are fetched once. DIR may be a remote
(s3://bucket/runs, ...): runs are read through the verified local cache, so a
team can browse a shared bucket with no tracking server.

The server binds 127.0.0.1; reach it from your laptop with
  ssh -L 6006:127.0.0.1:6006 login-node    then open http://127.0.0.1:6006/
Any other --host needs an access token (--token, $RUNSYNC_UI_TOKEN, or one is
made up and printed in the URL); the page sends it once and keeps it in a
cookie. Ctrl-C stops the server."""


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        from ..report.serve import TOKEN_ENV, UiOptions, serve
    except ImportError as e:
        print(f"runsync ui needs aiohttp: pip install 'runsync[ui]' ({e})", file=sys.stderr)
        return 2
    from ..reader.remote import is_url

    source = args.dir or os.environ.get("RUNSYNC_DIR") or "runs"
    if not is_url(source) and not os.path.isdir(source.removeprefix("file://")):
        print(f"runsync: no runs directory {source} (set RUNSYNC_DIR or pass DIR)", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("runsync: --interval must be positive", file=sys.stderr)
        return 2
    token = args.token or os.environ.get(TOKEN_ENV) or None
    opts = UiOptions(token=token, interval=args.interval)

    def ready(url: str) -> None:
        print(f"runsync ui: serving {source} at {url}  (Ctrl-C to stop)", flush=True)

    def log(msg: str) -> None:
        print(f"runsync ui: {msg}", file=sys.stderr, flush=True)

    try:
        return serve(source, args.host, args.port, opts, on_ready=ready, log=log)
    except RunsyncError as e:
        print(f"runsync: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def register(sub: Any) -> None:
    p = sub.add_parser("ui", help="serve a live dashboard of runs (the report's page) on 127.0.0.1",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=_DESCRIPTION)
    p.add_argument("dir", nargs="?", metavar="DIR|URL", help=f"runs directory or remote (default {DEFAULT_DIR})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                   "needs a token)")
    p.add_argument("--port", type=int, default=6006, help="port (default 6006; 0 picks a free one)")
    p.add_argument("--token", help="access token the page must present (default $RUNSYNC_UI_TOKEN; required, "
                   "and made up if absent, on any address but 127.0.0.1)")
    p.add_argument("--interval", type=float, default=2.0, metavar="S",
                   help="seconds between looks at the runs (default 2; a remote is listed this often)")
    p.set_defaults(func=cmd_ui)
