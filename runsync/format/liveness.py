"""Is a stream still being written? Crash detection (spec §7.3)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache

import psutil

from .errors import CorruptFileError
from .layout import RunLayout, StreamLayout
from .meta import Claim, State, Status, load_doc

__all__ = [
    "same_boot", "host_identity", "StreamState", "stream_state", "run_state", "STALE_FACTOR", "MIN_STALE"]

STALE_FACTOR = 6.0
MIN_STALE = 60.0


@lru_cache(maxsize=1)
def host_identity() -> tuple[str, str]:
    """(hostname, boot id): two processes are on one host only if both match."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    if not boot:  # no Linux boot id (macOS, a restricted /proc): the boot time names the boot
        try:
            boot = f"boot-time-{psutil.boot_time():.0f}"
        except Exception:
            boot = ""
    return os.uname().nodename, boot


def same_boot(host: str, boot_id: str) -> bool:
    """True if a writer on (host, boot_id) ran in this machine's current boot (spec §8.5).

    Both must match and the boot id must be known: two hosts, or two boots, that could
    not tell their boot apart (an empty id) are not the same boot, so only what the
    writer synced is trusted.
    """
    return bool(boot_id) and (host, boot_id) == host_identity()


def pid_alive(pid: int, pid_start: float) -> bool:
    """True if process ``pid`` exists and started at ``pid_start`` (guards PID reuse)."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(p.create_time() - pid_start) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


@dataclass
class StreamState:
    stream: str
    incarnation: int
    state: str
    claim: Claim
    status: Status | None


def _alive(host: str, boot_id: str, pid: int, pid_start: float, heartbeat: float, interval: float, now: float) -> bool:
    if (host, boot_id) == host_identity():
        return pid_alive(pid, pid_start)
    return now - heartbeat < max(MIN_STALE, STALE_FACTOR * interval)


def stream_state(stream: StreamLayout, now: float | None = None) -> StreamState | None:
    """State of the latest incarnation of ``stream``; None if it was never claimed."""
    incs = stream.incarnations()
    if not incs:
        return None
    inc = incs[-1]
    claim = load_doc(Claim, stream.claim(inc))
    try:
        status: Status | None = load_doc(Status, stream.status)
    except FileNotFoundError:
        status = None
    except CorruptFileError:
        status = None
    now = time.time() if now is None else now
    if status is not None and status.incarnation == inc:
        # ``crashed`` is written only into pushed copies, for a dead writer whose tail the pusher turned
        # into parts (spec §7.1, §12.4; since 1.3): as final as finished and failed.
        if status.state in (State.FINISHED, State.FAILED, State.CRASHED):
            return StreamState(stream.name, inc, status.state, claim, status)
        heartbeat = status.heartbeat
    else:
        heartbeat = claim.time
    alive = _alive(claim.host, claim.boot_id, claim.pid, claim.pid_start, heartbeat, claim.heartbeat_interval, now)
    return StreamState(stream.name, inc, State.RUNNING if alive else State.CRASHED, claim, status)


def run_state(layout: RunLayout, now: float | None = None) -> str:
    """Run state from its streams: running > crashed > failed > finished (spec §7.4)."""
    states = {s.state for s in (stream_state(st, now) for st in layout.streams()) if s is not None}
    for st in (State.RUNNING, State.CRASHED, State.FAILED, State.FINISHED):
        if st in states:
            return st
    return State.CRASHED  # no stream ever claimed: the creator died during init()
