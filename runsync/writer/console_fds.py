"""File-descriptor plumbing of console capture (spec §15): pseudo-terminals, window sizes, whole writes.

Kept apart from ``console.py`` (the capture's state machine and reader thread) because these are the
operating-system calls, each small and each with its own failure to absorb.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["writable", "low_fds_held", "high_fd", "open_pty", "copy_winsize", "write_all", "wait_writable", "flush_python_streams", "close_quiet"]


def writable(fd: int) -> bool:
    """Whether ``fd`` is open for writing (a closed or read-only fd 1/2 is not captured)."""
    import fcntl

    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return False
    return flags & getattr(os, "O_ACCMODE", 3) != os.O_RDONLY


@contextmanager
def low_fds_held() -> Iterator[None]:
    """Hold every closed fd among 0, 1, 2 on /dev/null meanwhile, so no new descriptor lands there."""
    held: list[int] = []
    try:
        for fd in range(3):
            try:
                os.fstat(fd)
            except OSError:
                new = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)  # the lowest free fd: this one
                held.append(new)
                if new > 2:
                    break
        yield
    finally:
        for fd in held:
            close_quiet(fd)


def high_fd(fd: int) -> int:
    """``fd`` moved to 3 or above (close-on-exec), so that we never occupy a closed fd 0/1/2."""
    if fd > 2:
        return fd
    import fcntl

    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def open_pty(saved: int) -> tuple[int, int] | None:
    """A pty (master, slave) that passes bytes through unchanged; None where that cannot be had."""
    try:
        import termios
    except ImportError:
        return None
    try:
        master, slave = os.openpty()
    except OSError:
        return None
    try:
        try:
            attrs = termios.tcgetattr(saved)  # same modes as the terminal, for programs that look
        except termios.error:
            attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # no output processing: the real terminal does its own
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        return master, slave
    except (OSError, termios.error):
        close_quiet(master)
        close_quiet(slave)
        return None


def copy_winsize(saved: int, master: int, previous: bytes) -> bytes:
    """Give the pty the original terminal's size (checked every second); return the size seen."""
    try:
        import fcntl
        import termios

        size = fcntl.ioctl(saved, termios.TIOCGWINSZ, b"\0" * 8)
        if size != previous:
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        return size
    except (ImportError, OSError):
        return previous


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``, waiting on a non-blocking fd as a blocking one would."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            wait_writable(fd)
            continue
        view = view[n:]


def wait_writable(fd: int) -> None:
    import select

    if hasattr(select, "poll"):
        p = select.poll()
        p.register(fd, select.POLLOUT)
        p.poll(1000)
    else:  # pragma: no cover
        select.select([], [fd], [], 1.0)


def flush_python_streams() -> None:
    seen: set[int] = set()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None or id(stream) in seen:
            continue
        seen.add(id(stream))
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 — closed or replaced streams: nothing to flush
            pass


def close_quiet(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
