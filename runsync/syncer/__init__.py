"""The syncer: push runs to any fsspec backend, pull and verify them. Depends on runsync.format only.

Names are imported on first use: a no-op ``runsync push`` pays only for what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pull import pull, remote_runs, verify
    from .push import PushOptions, PushResult, push
    from .remote import Remote, RemoteError, RetryPolicy, redact

__all__ = ["Remote", "RemoteError", "RetryPolicy", "redact", "push", "PushOptions", "PushResult", "pull",
           "verify", "remote_runs"]

_LAZY = {"pull": "pull", "remote_runs": "pull", "verify": "pull", "push": "push", "PushOptions": "push",
         "PushResult": "push", "Remote": "remote", "RemoteError": "remote", "RetryPolicy": "remote",
         "redact": "remote"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runsync.syncer' has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    # All of the module's names at once: importing .push binds the package attribute `push` to the
    # submodule, which must be replaced by the function of that name.
    for n, m in _LAZY.items():
        if m == module:
            globals()[n] = getattr(mod, n)
    return globals()[name]
