"""Console capture: tee file descriptors 1 and 2 into the run's rolled log files.

The terminal keeps showing exactly what it showed before; a copy goes to
``<directory>/<prefix>.<n:06d>.log`` (n = 0, 1, 2 …, starting after any file of
that prefix already there). Capture happens at the file-descriptor level, so
``print``, ``logging``, C extensions and child processes that inherit fds 1/2
(``subprocess.run`` without capture, ``os.system``, multiprocessing workers)
are all captured without cooperation.

Mechanism: for each of fd 1 and 2 that is open for writing, the original is
saved with ``dup``; a pipe (or, when the original is a terminal, a
pseudo-terminal, so ``isatty()``, terminal size, line buffering and colours of
the program and its children stay as they were) is put in its place with
``dup2``. One daemon thread, ``runsync-console``, reads both and for every chunk
first writes it to the saved original, byte for byte, then hands it to the
stored-log side.

Stored log (what the spec calls the console log):

* One file interleaving both streams; lines are assembled per stream and
  appended when complete, so stdout and stderr lines never mix within a line.
  Nothing is added to a line: stored bytes are the program's bytes, except:
* Carriage returns: a ``\\r`` followed by any byte other than ``\\n`` discards
  itself and everything before it on the current line, so a progress bar
  redrawn with ``\\r`` is stored as its final state; ``\\r\\n`` is kept as is.
* A file is only ever appended whole lines (each ending in ``\\n``). A partial
  last line waits in memory until its newline, or is written with a ``\\n``
  appended when: its stream has been quiet for ``idle_flush`` seconds (1 s) and
  the line holds no ``\\r`` (a progress bar being redrawn waits for its line
  end); ``flush()`` or ``stop()`` is called; it grows past ``max_line`` bytes.
* The file rolls to the next number before a line that would take it past
  ``roll_bytes``; a single line longer than that goes into a file of its own
  whole. Files are created with ``O_EXCL``, written with ``O_APPEND``, never
  rewritten; a write that fails part-way is cut back to its last whole line (a
  file left with nothing is removed). A program that prints nothing leaves no file.

Training comes first: a log-file error (disk full, I/O error, file deleted) is
reported once through ``on_error`` and only the file side stops; a terminal
that fails (closed pipe, hung-up tty) stops only the terminal side. A slow
terminal slows the program exactly as it did before. ``on_error`` is called
from a short-lived thread of its own, never from the reader thread, so a
callback that prints to stderr cannot deadlock on a full pipe.

Fork: a forked child has no reader thread; its fds 1/2 still lead into the
pipe the parent reads, so its output is captured by the parent. In the child
the capture's own descriptors are closed and ``stop()``/``flush()`` do nothing.

Limits of an in-process reader: whoever owns the capture must call ``stop()``
before the process ends (at exit, and before ``os._exit``). If the process dies
without it (kill -9, a fatal signal, ``abort()``), the partial lines in memory
and whatever sits unread in the pipe (normally microseconds' worth) are lost,
from the terminal as well as from the log. Output that children write after
the process has exited has no reader: they get EPIPE (or SIGPIPE).
"""

from __future__ import annotations

import os
import selectors
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .console_fds import (
    close_quiet,
    copy_winsize,
    flush_python_streams,
    low_fds_held,
    open_pty,
    writable,
    write_all,
)
from .console_files import LogFiles
from .console_lines import LineBuffer

__all__ = ["ConsoleCapture", "LineBuffer"]

_CHUNK = 1 << 16
_DRAIN_BUDGET = 4 << 20  # bytes read per source per flush/stop: more than any pipe or pty holds
_WINSIZE_EVERY = 1.0


@dataclass
class _Source:
    fd: int  # 1 or 2
    saved: int  # dup of the original: where the terminal side goes
    read: int  # our end: pipe read end or pty master
    ident: tuple[int, int]  # (st_dev, st_ino) of what we put on fd: restore only if still ours
    pty: bool
    lines: LineBuffer
    last: float = 0.0  # monotonic time of the last data
    winsize: bytes = b""
    term_ok: bool = True
    open: bool = True


class ConsoleCapture:
    """Tee fds 1 and 2 into ``directory/<prefix>.<n:06d>.log`` while the terminal sees them unchanged.

    ``pty``: None (default) uses a pseudo-terminal where the original fd is a
    terminal and a pipe elsewhere; False always uses pipes.
    """

    def __init__(
        self,
        directory: Path,
        prefix: str,
        *,
        roll_bytes: int = 8 << 20,
        on_error: Callable[[str], None] | None = None,
        idle_flush: float = 1.0,
        max_line: int = 4 << 20,
        pty: bool | None = None,
    ) -> None:
        if roll_bytes <= 0 or max_line <= 0:
            raise ValueError("roll_bytes and max_line must be positive")
        self.directory = Path(directory)
        self.prefix = prefix
        self.roll_bytes = roll_bytes
        self.idle_flush = idle_flush
        self.max_line = max_line
        self._on_error = on_error
        self._use_pty = pty
        self._state = "new"  # new | running | stopping | stopped | forked
        self._pid = os.getpid()
        self._sources: list[_Source] = []
        self._files: LogFiles | None = None
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._cond = threading.Condition(threading.RLock())
        self._wake_r = -1
        self._wake_w = -1
        self._req = 0  # flush/stop requests made
        self._done = 0  # requests the reader has served
        self._stopping = False
        self._final_done = False
        self._reported: set[str] = set()
        self._reporters: list[threading.Thread] = []
        self._child_fds: tuple[int, ...] = ()  # closed in a forked child
        self._notes: list[bytes] = []  # text for the log only (record()), stored by the reader thread
        self._ws_checked = 0.0

    # -- public ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin capturing fds 1 and 2 (each only if open for writing). Never raises for I/O trouble."""
        with self._cond:
            if self._state != "new":
                return
            self._state = "stopped"  # unless everything below works
        if os.name != "posix":
            self._report("unsupported", "console capture is not supported on this platform", inline=True)
            return
        self._pid = os.getpid()
        targets = [fd for fd in (1, 2) if writable(fd)]
        if targets:
            with low_fds_held():  # none of our descriptors may land on a closed fd 0, 1 or 2
                self._start(targets)

    def _start(self, targets: list[int]) -> None:
        try:
            self._files = LogFiles(self.directory, self.prefix, self.roll_bytes)
        except OSError as e:
            self._report("file", f"console capture disabled: cannot use {self.directory}: {e}", inline=True)
            return
        try:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        except OSError as e:
            self._report("start", f"console capture disabled: {e}", inline=True)
            self._close_all()
            return
        flush_python_streams()  # what was printed before start goes to the terminal only
        for fd in targets:
            src = self._capture(fd)
            if src is not None:
                self._sources.append(src)
        if not self._sources:
            self._close_all()
            return
        try:
            self._sel = selectors.DefaultSelector()
            self._sel.register(self._wake_r, selectors.EVENT_READ, None)
            for src in self._sources:
                self._sel.register(src.read, selectors.EVENT_READ, src)
            self._thread = threading.Thread(target=self._run, name="runsync-console", daemon=True)
            self._child_fds = self._own_fds()
            _live.add(self)
            _install_fork_hook()
            with self._cond:
                self._state = "running"
            self._thread.start()
        except (OSError, RuntimeError) as e:
            self._restore_fds()
            self._close_all()
            with self._cond:
                self._state = "stopped"
            self._report("start", f"console capture disabled: {e}", inline=True)

    def flush(self, timeout: float = 5.0) -> bool:
        """Make everything written so far reach the log file, partial lines included.

        Returns whether the reader confirmed within ``timeout`` seconds.
        """
        if os.getpid() != self._pid:
            return False
        with self._cond:
            if self._state != "running":
                return False
        flush_python_streams()
        return self._request(final=False, timeout=timeout)

    def record(self, text: str, timeout: float = 5.0) -> bool:
        """Store ``text`` in the log after everything written so far, without showing it on the terminal.

        For what the terminal shows later anyway, such as the traceback of an exception that
        leaves a ``with runsync.init()`` block: Python prints it only after the run finished
        and capture stopped, so the log would otherwise miss the cause of the failure.
        """
        if os.getpid() != self._pid:
            return False
        with self._cond:
            if self._state != "running":
                return False
            self._notes.append(text.encode("utf-8", "replace") if text.endswith("\n") else (text + "\n").encode(
                "utf-8", "replace"))
        flush_python_streams()
        return self._request(final=False, timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Flush Python's streams, restore fds 1/2, store everything written so far, close the files.

        Idempotent; a no-op in a forked child. Output that children still
        holding the old fds write afterwards reaches the terminal only. If
        the reader cannot finish within ``timeout`` (a blocked terminal), this
        returns anyway with the fds restored; the reader closes the file later.
        """
        if os.getpid() != self._pid:
            return
        with self._cond:
            if self._state != "running":
                return
            self._state = "stopping"
        deadline = time.monotonic() + timeout
        flush_python_streams()
        self._restore_fds()
        self._request(final=True, timeout=timeout)
        for thread in list(self._reporters):  # a problem found while draining is reported before we return
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._state = "stopped"

    # -- setup and teardown ------------------------------------------------------------------------

    def _capture(self, fd: int) -> _Source | None:
        """Put a pipe or pty on ``fd``; None if anything fails."""
        opened: list[int] = []
        try:
            saved = os.dup(fd)
            opened.append(saved)
            use_pty = self._use_pty if self._use_pty is not None else os.isatty(saved)
            pty_fds = open_pty(saved) if use_pty else None
            if pty_fds is not None:
                read, write = pty_fds
            else:
                read, write = os.pipe()
            opened += [read, write]
            os.set_blocking(read, False)
            os.dup2(write, fd)
            os.close(write)
            opened.remove(write)
            st = os.fstat(fd)
        except OSError:
            for x in opened:
                close_quiet(x)
            return None
        src = _Source(
            fd=fd,
            saved=saved,
            read=read,
            ident=(st.st_dev, st.st_ino),
            pty=pty_fds is not None,
            lines=LineBuffer(self.max_line),
        )
        if src.pty:
            src.winsize = copy_winsize(saved, read, b"")
        return src

    def _restore_fds(self) -> None:
        """Put the originals back on fds 1/2, where they still hold what we put there."""
        for src in self._sources:
            try:
                st = os.fstat(src.fd)
                if (st.st_dev, st.st_ino) == src.ident:
                    os.dup2(src.saved, src.fd)
            except OSError:
                pass

    def _own_fds(self) -> tuple[int, ...]:
        fds = [self._wake_r, self._wake_w]
        for src in self._sources:
            fds += [src.read, src.saved]
        return tuple(fd for fd in fds if fd >= 0)

    def _close_all(self) -> None:
        """Close every descriptor of ours (reader thread gone or never started)."""
        self._child_fds = ()
        with self._cond:
            wake = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
        for fd in wake:
            if fd >= 0:
                close_quiet(fd)
        for src in self._sources:
            if src.open:
                src.open = False
                close_quiet(src.read)
            close_quiet(src.saved)
        if self._sel is not None:
            try:
                self._sel.close()
            except (OSError, ValueError):
                pass
        if self._files is not None:
            self._files.close()
            self._files = None

    def _after_fork_child(self) -> None:
        fds, self._child_fds = self._child_fds, ()
        self._state = "forked"
        self._thread = None
        for fd in fds:
            close_quiet(fd)

    # -- requests ----------------------------------------------------------------------------------

    def _request(self, final: bool, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._final_done or self._wake_w < 0:
                return final and self._final_done
            if final:
                self._stopping = True
            self._req += 1
            ticket = self._req
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass  # full: a wake-up is already pending
            return self._cond.wait_for(lambda: self._done >= ticket, max(0.0, deadline - time.monotonic()))

    # -- the reader thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 — a bug here must not leave fds 1/2 on a pipe nobody reads
            self._restore_fds()
            with self._cond:
                self._final_done = True
                self._done = self._req
                self._cond.notify_all()
            self._report("internal", f"console capture stopped: {e!r}")
        finally:
            self._close_all()

    def _loop(self) -> None:
        assert self._sel is not None
        while not (self._final_done and not any(s.open for s in self._sources)):
            for key, _ in self._sel.select(self._timeout()):
                if key.data is None:
                    self._serve()
                else:
                    self._pump(key.data)
            self._tick()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        due: list[float] = []
        if self._files is not None:
            due += [s.last + self.idle_flush for s in self._sources if s.lines.pending and not s.lines.redrawn]
        if any(s.pty and s.open for s in self._sources):
            due.append(self._ws_checked + _WINSIZE_EVERY)
        return max(0.0, min(due) - now) if due else None

    def _tick(self) -> None:
        now = time.monotonic()
        if self._files is not None:
            for src in self._sources:
                if src.lines.pending and not src.lines.redrawn and now - src.last >= self.idle_flush:
                    self._store(src.lines.take())
        if now - self._ws_checked >= _WINSIZE_EVERY:
            self._ws_checked = now
            for src in self._sources:
                if src.pty and src.open:
                    src.winsize = copy_winsize(src.saved, src.read, src.winsize)

    def _pump(self, src: _Source, budget: int = _CHUNK) -> int:
        """Read up to ``budget`` bytes from ``src`` and pass them on; return how many were read."""
        got = 0
        while src.open and got < budget:
            try:
                data = os.read(src.read, _CHUNK)
            except (BlockingIOError, InterruptedError):
                return got
            except OSError:  # EIO: a pty nobody holds any more
                data = b""
            if not data:
                self._eof(src)
                return got
            got += len(data)
            self._emit(src, data)
            if budget <= _CHUNK:
                return got
        return got

    def _eof(self, src: _Source) -> None:
        src.open = False
        if self._sel is not None:
            try:
                self._sel.unregister(src.read)
            except (KeyError, ValueError):
                pass
        close_quiet(src.read)
        if self._files is not None:
            self._store(src.lines.take())

    def _emit(self, src: _Source, data: bytes) -> None:
        if src.term_ok:
            try:
                write_all(src.saved, data)
            except OSError as e:
                src.term_ok = False
                self._report(
                    f"terminal{src.fd}",
                    f"console: writing to the original fd {src.fd} failed ({e}); its output is still stored in the log",
                )
        src.last = time.monotonic()
        if self._files is not None:
            self._store(src.lines.feed(data))

    def _store(self, lines: bytes) -> None:
        if not lines or self._files is None:
            return
        try:
            self._files.append(lines)
        except OSError as e:
            self._files.close()
            self._files = None
            self._report("file", f"console log stopped: {e}; the terminal is unaffected")

    def _serve(self) -> None:
        """A flush or stop request: store everything written so far, partial lines included."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass
        with self._cond:
            ticket = self._req
            final = self._stopping
        for src in self._sources:
            self._pump(src, _DRAIN_BUDGET)
        if self._files is not None:
            for src in self._sources:
                self._store(src.lines.take())
        with self._cond:
            notes, self._notes = self._notes, []
        for note in notes:
            self._store(note)
        if final and self._files is not None:
            self._files.close()
            self._files = None
        with self._cond:
            self._done = max(self._done, ticket)
            if final:
                self._final_done = True
            self._cond.notify_all()

    # -- reporting ---------------------------------------------------------------------------------

    def _report(self, kind: str, message: str, inline: bool = False) -> None:
        """Report ``message`` once per ``kind``: ``inline`` only while fds 1/2 are not captured,
        otherwise from a thread of its own (never the reader's), which ``stop()`` waits for."""
        if kind in self._reported:
            return
        self._reported.add(kind)
        callback = self._on_error or self._say

        def call() -> None:
            try:
                callback(message)
            except Exception:  # noqa: BLE001, S110 — a failing reporter must not take the capture down
                pass

        if inline:
            call()
            return
        thread = threading.Thread(target=call, name="runsync-console-report", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down
            self._say(message)
            return
        self._reporters.append(thread)

    def _say(self, message: str) -> None:
        """Default report: straight to the original stderr, bypassing the capture."""
        fd = next((s.saved for s in self._sources if s.fd == 2 and s.term_ok), 2)
        try:
            write_all(fd, f"runsync: {message}\n".encode(errors="replace"))
        except OSError:
            pass


# -- helpers -----------------------------------------------------------------------------------------

_live: weakref.WeakSet[ConsoleCapture] = weakref.WeakSet()
_fork_hooked = False


def _install_fork_hook() -> None:
    global _fork_hooked
    if not _fork_hooked:
        _fork_hooked = True
        os.register_at_fork(after_in_child=_after_fork_child)


def _after_fork_child() -> None:
    for cap in list(_live):
        cap._after_fork_child()
    _live.clear()


