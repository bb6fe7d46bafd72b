"""runsync: log ML training runs offline into a specified columnar format, sync them anywhere later.

Names are imported on first use, so ``runsync push`` does not pay for the
writer's and reader's imports (pyarrow, numpy) it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .format.errors import (
    CorruptFileError,
    DataLossWarning,
    FormatError,
    NotARunError,
    RunsyncError,
    StreamClaimedError,
    UnsupportedVersionError,
)
from .format.version import FORMAT_VERSION

if TYPE_CHECKING:
    from .reader import RunView, open_run, runs, smooth
    from .writer import (
        ForkedRunError,
        Histogram,
        Image,
        LogValueError,
        Run,
        RunFinishedError,
        Settings,
        Table,
        Text,
        finish,
        init,
        log,
    )

__version__ = "0.1.0"

_LAZY = {
    "init": "writer", "log": "writer", "finish": "writer", "Run": "writer", "Settings": "writer",
    "RunFinishedError": "writer", "ForkedRunError": "writer", "LogValueError": "writer",
    "Image": "writer", "Histogram": "writer", "Table": "writer", "Text": "writer",
    "open_run": "reader", "RunView": "reader", "runs": "reader", "smooth": "reader",
}

__all__ = [
    "init",
    "log",
    "finish",
    "Run",
    "Settings",
    "Image",
    "Histogram",
    "Table",
    "Text",
    "open_run",
    "RunView",
    "runs",
    "smooth",
    "FORMAT_VERSION",
    "RunsyncError",
    "FormatError",
    "CorruptFileError",
    "UnsupportedVersionError",
    "NotARunError",
    "StreamClaimedError",
    "RunFinishedError",
    "ForkedRunError",
    "LogValueError",
    "DataLossWarning",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
