"""Output helpers shared by the benchmark scripts: sections, notes, progress lines, tables."""

from __future__ import annotations

import statistics
import sys

__all__ = ["med", "status", "fmt_table", "section", "note", "progress"]


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def status(ok: bool) -> str:
    return "OK" if ok else "MISS"


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    """An aligned text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join((str(c).rjust(w) if i else str(c).ljust(w)) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def section(title: str) -> None:
    print()
    print("=" * 78)
    print(title)
    print("=" * 78, flush=True)


def note(msg: str) -> None:
    print(f"  {msg}", flush=True)


def progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)
