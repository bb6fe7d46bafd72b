"""The ``runsync`` command line. Each module in this package registers its commands."""

from __future__ import annotations

import argparse
import sys

from ..format.errors import RunsyncError
from ..format.version import FORMAT_VERSION
from . import convert, inspect, report, restore, runs, sync, ui, watch

__all__ = ["main", "build_parser"]

_MODULES = (inspect, runs, sync, watch, restore, report, ui, convert)


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runsync",
        description="Log ML training runs offline; inspect them here; push them anywhere later.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()} (format {FORMAT_VERSION})",
                   help="print runsync's version and the format version it writes, then exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in _MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except RunsyncError as e:
        print(f"runsync: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
