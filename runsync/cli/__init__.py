"""The ``runsync`` command line. Each module in this package registers its commands."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from ..format.errors import DataLossWarning, RunsyncError
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


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """runsync's own warnings (a damaged WAL record, spec §8.5) as one plain stderr line, not Python's
    file:line form; others as Python shows them."""
    if issubclass(category, DataLossWarning):
        if str(message) not in _shown:  # a command may read the same tail more than once
            _shown.add(str(message))
            print(f"runsync: warning: {message}", file=sys.stderr, flush=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning
_shown: set[str] = set()


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
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
