"""A shorter GIL switch interval while a flusher converts WAL records to parts.

Each numpy/Arrow call that releases the GIL makes the flusher wait up to a
switch interval (5 ms by default) to get it back while the training thread runs
Python; a part takes dozens of such calls. Shared by every flusher of the
process: the user's value is restored when the last one leaves.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["short_switch_interval"]

_SWITCH = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.005


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """Lower the interpreter's switch interval to 0.5 ms for the duration of the block."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            if _switch_saved > _SWITCH:
                sys.setswitchinterval(_SWITCH)
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0 and sys.getswitchinterval() == _SWITCH and _switch_saved > _SWITCH:
                sys.setswitchinterval(_switch_saved)
