"""``runsync report``: one self-contained HTML file of runs — table, charts, media, config diff."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ._common import DEFAULT_DIR, human, runs_dir

__all__ = ["cmd_report", "register"]

_QUIET_FOR = 1.0  # seconds: a report faster than this prints no per-run progress


_DESCRIPTION = """\
Write ONE self-contained HTML file that shows runs with no server and makes no
request of any kind (uPlot, data and styles are inline), so it can be copied
off the cluster and opened anywhere. It holds:
  - the runs table: sortable, filterable; checkboxes choose the runs drawn
  - a chart per numeric metric, runs overlaid, grouped by the prefix before '/'
  - x axis: step, wall time, time since the run's start, or a logged key that
    never decreases (epoch, tokens_seen, ...)
  - smoothing: the debiased EMA of runsync.smooth() (TensorBoard's)
  - system metrics, a media gallery per step, and a config diff

Long histories are downsampled for drawing: each of ~N/4 step buckets keeps its
first, last, lowest and highest logged point (N = --points), so spikes stay
visible and every value shown on hover is a logged one."""

_EPILOG = """\
examples:
  runsync report runs -o report.html
  runsync report runs --runs 3f2a9c7d sweep-lr-3 -o two.html
  runsync report runs --where "status = finished and config.lr < 1e-3"
  runsync report runs --where "summary.val/acc > 0.8 and tags contains baseline"
  runsync report runs --where "created > 2d ago" --title "last two days"

--where is the language of `runsync runs` (see `runsync runs --help`): columns
id, name, project, group, job_type, tags, status, created, start, duration,
steps, streams, config.KEY, summary.KEY compared with literals (= != < <= > >=
~ in contains "is null"), combined with and, or, not and parentheses."""


class _Progress:
    """Per-run lines on stderr once the report takes a while (one updating line on a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.printed = False

    def __call__(self, done: Any) -> None:
        if self.quiet:
            return
        el = time.monotonic() - self.t0
        if el < _QUIET_FOR and done.error is None:
            return
        eta = el / done.done * (done.total - done.done)
        what = f"error: {done.error}" if done.error else f"{done.rows:,} rows, {done.keys} keys, {done.seconds:.1f} s"
        line = f"[{done.done}/{done.total}] {done.name} ({done.id}): {what}; ETA {eta:.0f} s"
        if self.tty and done.error is None:
            end = "\n" if done.done == done.total else ""
            print(f"\r\033[K{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(f"runsync report: {line}", file=sys.stderr, flush=True)
        self.printed = True


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import ReportOptions, build_report
    from ..report.media import MediaLimits

    root = runs_dir(args.dir)
    if not root.is_dir():
        print(f"runsync: no runs directory {root} (set RUNSYNC_DIR or pass DIR)", file=sys.stderr)
        return 2
    if args.points < 10 or args.budget < 10:
        print("runsync: --points and --budget must be at least 10", file=sys.stderr)
        return 2
    opts = ReportOptions(max_points=args.points, budget=args.budget, media_bytes=args.media_bytes,
                         media=MediaLimits(per_key=args.media_per_key))
    res = build_report(root, args.output, args.runs, args.where, opts, args.title, _Progress(args.quiet))
    if not args.quiet:
        print(f"wrote {res.path}: {res.runs} runs, {human(res.bytes)}, {res.seconds:.1f} s"
              + (f"; {res.errors} problem(s), listed in the report" if res.errors else ""))
    if res.runs == 0:
        print("runsync: no runs matched", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="write one self-contained HTML report of runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_DESCRIPTION, epilog=_EPILOG)
    p.add_argument("dir", nargs="?", help=f"directory of runs (default {DEFAULT_DIR})")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--runs", nargs="+", metavar="ID", help="only these runs (ids or names)")
    p.add_argument("--where", metavar="EXPR", help="only runs for which EXPR is true, as in `runsync runs` "
                   "(see below)")
    p.add_argument("--title", help="page title (default: 'runsync report: DIR')")
    p.add_argument("--points", type=int, default=2000, metavar="N",
                   help="drawn points per series at most (default 2000)")
    p.add_argument("--budget", type=int, default=400_000, metavar="N",
                   help="drawn points in the whole report; with many runs and keys each series gets fewer "
                   "(at least 200) so the file stays small (default 400000)")
    p.add_argument("--media-per-key", type=int, default=8, metavar="N",
                   help="media items kept per run and key, spread over its steps (default 8)")
    p.add_argument("--media-bytes", type=int, default=8_000_000, metavar="B",
                   help="bytes of embedded media in all (default 8000000); the rest is counted, not embedded")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_report)
