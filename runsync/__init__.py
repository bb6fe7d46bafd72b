"""runsync: log ML training runs offline into a specified columnar format, sync them anywhere later.

Names are imported on first use, so ``runsync push`` does not pay for the
writer's and reader's imports (pyarrow, numpy) it does not need.
"""

from __future__ import annotations

import importlib
import sys
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
from ._remote_hook import install as _install_fetchers
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
    from .writer.toplevel import alert, define_metric, login, save, unwatch, watch

__version__ = "0.1.0"

_LAZY = {
    "init": "writer", "log": "writer", "finish": "writer", "Run": "writer", "Settings": "writer",
    "RunFinishedError": "writer", "ForkedRunError": "writer", "LogValueError": "writer",
    "Image": "writer", "Histogram": "writer", "Table": "writer", "Text": "writer",
    "open_run": "reader", "RunView": "reader", "runs": "reader", "smooth": "reader",
    "save": "writer.toplevel", "define_metric": "writer.toplevel", "alert": "writer.toplevel",
    "watch": "writer.toplevel", "unwatch": "writer.toplevel", "login": "writer.toplevel",
}

# The current run and its config and summary (W&B's ``wandb.run``, ``wandb.config``, ``wandb.summary``):
# looked up on every access, never cached, since runs start and finish.
_CURRENT = ("run", "config", "summary")

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
    "run",
    "config",
    "summary",
    "save",
    "define_metric",
    "alert",
    "watch",
    "unwatch",
    "login",
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


def _fetch_runs(*args: Any, **kwargs: Any) -> Any:
    from .syncer.cache import fetch_runs

    return fetch_runs(*args, **kwargs)


def _fetch_run(*args: Any, **kwargs: Any) -> Any:
    from .syncer.cache import fetch_run

    return fetch_run(*args, **kwargs)


# The reader opens remote URLs through the syncer's verified cache without importing the syncer
# (layering, README); nothing is imported until a URL is read.
_install_fetchers(_fetch_runs, _fetch_run)


def __getattr__(name: str) -> Any:
    if name in _CURRENT:
        if name == "run" and "runsync.writer.run" not in sys.modules:
            return None  # no run can exist before the writer is imported: keep `import runsync` light
        return importlib.import_module(".writer.toplevel", __name__).module_attr(name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
