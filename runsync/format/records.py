"""WAL record kinds and META operations (spec §8.3): plain constants, importable without numpy."""

from __future__ import annotations

__all__ = ["Kind", "MetaOp"]


class Kind:
    """Record kinds (spec §8.3). Unknown kinds are skipped by length."""

    KEYDEF = 1
    SCHEMA = 2
    ROW = 3
    GENERIC = 4
    META = 5


class MetaOp:
    """Operations carried by META records (spec §8.3.5)."""

    SUMMARY_SET = 1
    SUMMARY_DELETE = 2
    CONFIG_UPDATE = 3
    DEFINE_METRIC = 4  # since 1.3
