"""Console capture (runsync.writer.console): the terminal sees every byte, the log gets whole lines.

pytest captures fds 1 and 2 itself, so every capture runs in a fresh interpreter
whose stdout/stderr are files (or a pseudo-terminal) standing in for the
terminal; the test then compares that "terminal" and the log files byte for
byte. The child loads console.py (and its console_* siblings) by path: they import nothing else of runsync,
and skipping the package import (pyarrow, numpy) keeps each child fast.
"""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import env_without_runsync
from hypothesis import given, settings
from hypothesis import strategies as st

import runsync.writer.console as console_module
from runsync.writer.console import LineBuffer

PREFIX = "main.000001"

PRELUDE = """
import atexit, errno, fcntl, os, shutil, subprocess, sys, threading, time
from pathlib import Path
import importlib, types
# console.py and its siblings (console_lines, console_files, console_fds) as a package of their own:
# their relative imports resolve without runsync.writer's __init__ (and its pyarrow)
_pkg = types.ModuleType("runsync_console_pkg")
_pkg.__path__ = [os.path.dirname({module!r})]
sys.modules["runsync_console_pkg"] = _pkg
console = importlib.import_module("runsync_console_pkg.console")
LOGS = Path({logs!r})
NOTES = Path({notes!r})

def on_error(message):
    with open({errors!r}, "a") as f:
        f.write(message.replace("\\n", " ") + "\\n")

def note(text):
    with open(NOTES, "a") as f:
        f.write(str(text) + "\\n")

def capture(**kw):
    cap = console.ConsoleCapture(LOGS, {prefix!r}, on_error=on_error, **kw)
    cap.start()
    return cap
"""


@dataclass
class Child:
    rc: int
    out: bytes  # what the "terminal" behind fd 1 received
    err: bytes  # ... behind fd 2
    log: bytes  # all log files of PREFIX, in order
    files: list[Path]
    errors: list[str]  # on_error messages
    notes: list[str]  # the child's own remarks, written to a side file


def _read_text_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_child(tmp: Path, body: str, *, terminal: tuple[int, int] | None = None, timeout: float = 30) -> Child:
    """Run PRELUDE + ``body`` in a fresh interpreter with files (or ``terminal`` fds) as fds 1 and 2."""
    logs, errors, notes = tmp / "logs", tmp / "errors.txt", tmp / "notes.txt"
    script = PRELUDE.format(
        module=str(Path(console_module.__file__)), logs=str(logs), notes=str(notes), errors=str(errors), prefix=PREFIX
    ) + textwrap.dedent(body)
    out_path, err_path = tmp / "stdout.bin", tmp / "stderr.bin"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        fds = terminal or (out.fileno(), err.fileno())
        proc = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=fds[0],
            stderr=fds[1],
            env=env_without_runsync(),
            timeout=timeout,
        )
    files = sorted(logs.glob(f"{PREFIX}.*.log")) if logs.exists() else []
    return Child(
        rc=proc.returncode,
        out=out_path.read_bytes(),
        err=err_path.read_bytes(),
        log=b"".join(f.read_bytes() for f in files),
        files=files,
        errors=_read_text_lines(errors),
        notes=_read_text_lines(notes),
    )


def lines_of(data: bytes) -> list[bytes]:
    """Stored lines, each with its '\\n' (bytes.splitlines would also split at '\\r')."""
    assert data.endswith(b"\n") or not data
    return [line + b"\n" for line in data.split(b"\n")[:-1]]


# -- the collapsing line buffer (in-process) -----------------------------------------------------------


def reference_collapse(data: bytes) -> bytes:
    """The stored form of a whole stream: per line, a '\\r' followed by a byte other than '\\n'
    discards itself and what came before; a final partial line gets a '\\n'."""
    out = []
    pieces = data.split(b"\n")
    for i, body in enumerate(pieces):
        if i == len(pieces) - 1 and not body:
            break
        trail = b"\r" if body.endswith(b"\r") else b""
        core = body[: len(body) - len(trail)]
        out.append(core[core.rfind(b"\r") + 1 :] + trail + b"\n")
    return b"".join(out)


@pytest.mark.parametrize(
    ("chunks", "stored"),
    [
        ([b"\r 10%\r 50%\r100%\n"], b"100%\n"),
        ([b"\r 10%", b"\r 50%", b"\r", b"100%\n"], b"100%\n"),
        ([b"crlf\r\n", b"half\r", b"\n"], b"crlf\r\nhalf\r\n"),
        ([b"a\rb\rc", b"\r\n"], b"c\r\n"),
        ([b"abc\r\r\n"], b"\r\n"),
        ([b"one\ntwo\nthr", b"ee\n"], b"one\ntwo\nthree\n"),
        ([b"no newline"], b"no newline\n"),
        ([b"bar\r"], b"bar\r\n"),
        ([b""], b""),
    ],
)
def test_line_buffer_rules(chunks: list[bytes], stored: bytes) -> None:
    buf = LineBuffer()
    got = b"".join(buf.feed(c) for c in chunks) + buf.take()
    assert got == stored == reference_collapse(b"".join(chunks))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda b: bytes(b"ab\r\n"[x % 4] for x in b)), st.lists(st.integers(0, 200)))
def test_line_buffer_is_independent_of_chunking(data: bytes, cuts: list[int]) -> None:
    buf = LineBuffer()
    got, last = [], 0
    for cut in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        got.append(buf.feed(data[last:cut]))
        last = cut
    complete = b"".join(got)
    assert complete == reference_collapse(data[: data.rfind(b"\n") + 1])
    assert complete + buf.take() == reference_collapse(data)


def test_line_buffer_memory_is_bounded() -> None:
    buf = LineBuffer(max_line=100)
    for i in range(10_000):  # a progress bar that never ends its line
        assert buf.feed(f"\r{i:>6}/10000".encode()) == b""
    assert buf.take() == b"  9999/10000\n"
    assert buf.feed(b"x" * 150) == b"x" * 150 + b"\n"  # a partial past max_line is stored as a line
    assert not buf.pending


# -- capture in a child process --------------------------------------------------------------------


def test_child_process_output_is_byte_exact(tmp_path: Path) -> None:
    """A grandchild writing binary-ish bytes, a 300 KB line and no final newline: stored exactly."""
    payload = bytes(range(256)).replace(b"\r", b"") * 40 + b"L" * 300_000 + b"\nend without newline"
    (tmp_path / "payload.bin").write_bytes(payload)
    child = run_child(
        tmp_path,
        f"""
        cap = capture(idle_flush=60)
        subprocess.run([sys.executable, "-c",
                        "import sys; sys.stdout.buffer.write(open({str(tmp_path / "payload.bin")!r}, 'rb').read())"])
        os.system("printf '\\\\001\\\\377 then sh'")
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    terminal = payload + b"\x01\xff then sh"
    assert child.out == terminal
    assert child.log == terminal + b"\n"
    assert [f.name for f in child.files] == [f"{PREFIX}.000000.log"]
    assert child.errors == []


def test_terminal_gets_every_byte_and_log_collapses_progress_bars(tmp_path: Path) -> None:
    out_chunks = [
        b"epoch 1\n",
        b"\r 10%",
        b"\r 50%",
        b"\r",
        b"100%\n",
        b"crlf line\r\n",
        b"half\r",
        b"\n",
        b"a\rb\rc",
        b"\r\n",
        b"spaces  \r  \rfinal\n",
        b"waiting...",
        b"done\n",
    ]
    child = run_child(
        tmp_path,
        f"""
        cap = capture()
        for chunk in {out_chunks!r}:
            os.write(1, chunk)
            if chunk == b"waiting...":  # a quiet partial line: written after 1 s, as a line
                os.write(2, b"\\r bar 1/2")  # a bar being redrawn: waits for its line end
                time.sleep(1.4)
                os.write(2, b"\\r bar 2/2\\n")
            time.sleep(0.01)
        sys.stderr.write("\\r 10%\\r 50%\\rtqdm 100%\\n")
        sys.stderr.flush()
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    assert child.out == b"".join(out_chunks)
    assert child.err == b"\r bar 1/2\r bar 2/2\n\r 10%\r 50%\rtqdm 100%\n"
    lines = lines_of(child.log)
    stderr_lines = [line for line in lines if line in (b" bar 2/2\n", b"tqdm 100%\n")]
    assert stderr_lines == [b" bar 2/2\n", b"tqdm 100%\n"]
    assert b"".join(line for line in lines if line not in stderr_lines) == (
        b"epoch 1\n100%\ncrlf line\r\nhalf\r\nc\r\nfinal\nwaiting...\ndone\n"
    )


def test_flush_stores_partial_lines_and_everything_before(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        cap = capture(idle_flush=60)
        print("buffered by Python", end="")
        os.write(2, b"\\r 42%")
        note(cap.flush())
        note(b"".join(f.read_bytes() for f in sorted(LOGS.glob("*.log"))))
        os.write(1, b" continued\\n")
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    assert child.notes[0] == "True"
    assert sorted(lines_of(ast.literal_eval(child.notes[1]))) == [b" 42%\n", b"buffered by Python\n"]
    assert child.out == b"buffered by Python continued\n"
    assert sorted(lines_of(child.log)) == [b" 42%\n", b" continued\n", b"buffered by Python\n"]


def test_rolling_keeps_every_file_whole(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"{PREFIX}.000000.log").write_bytes(b"an earlier file of this prefix\n")
    lines = [f"line {i} " + "x" * (i * 7 % 60) + "\n" for i in range(40)]
    lines[17] = "long " + "y" * 250 + "\n"
    child = run_child(
        tmp_path,
        f"""
        cap = capture(roll_bytes=100)
        for line in {lines!r}:
            sys.stdout.write(line)
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    assert child.out == "".join(lines).encode()
    old, *new = child.files
    assert old.read_bytes() == b"an earlier file of this prefix\n"  # never touched
    assert [f.name for f in new] == [f"{PREFIX}.{n:06d}.log" for n in range(1, len(new) + 1)]
    assert len(new) > 10
    assert b"".join(f.read_bytes() for f in new) == "".join(lines).encode()
    for f, following in zip(new, new[1:] + [None]):
        data = f.read_bytes()
        assert data.endswith(b"\n")
        assert len(data) <= 100 or data.count(b"\n") == 1  # only a single long line exceeds roll_bytes
        if following is not None:  # rolled only because the next line did not fit
            assert len(data) + len(lines_of(following.read_bytes())[0]) > 100


def test_crash_traceback_reaches_the_log(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        cap = capture()
        atexit.register(cap.stop)  # runsync's finish runs at exit, after the traceback is printed
        def train():
            raise RuntimeError("exploded at step 7")
        print("step 6 ok")
        train()
        """,
    )
    assert child.rc == 1
    assert b"Traceback (most recent call last)" in child.err
    assert child.err.endswith(b"RuntimeError: exploded at step 7\n")
    assert child.err in child.log
    assert b"step 6 ok\n" in child.log
    assert child.out == b"step 6 ok\n"


def test_log_write_failure_reports_once_and_the_terminal_continues(tmp_path: Path) -> None:
    """ENOSPC after half a write: the file is cut back to whole lines, reported once; output flows on."""
    lines = [f"line {i:02d} {'z' * i}\n" for i in range(30)]
    child = run_child(
        tmp_path,
        f"""
        lines = {lines!r}
        real_write, mode = os.write, []
        def write(fd, data):
            if mode and os.readlink(f"/proc/self/fd/{{fd}}").endswith(".log"):
                if mode[-1] == "half":
                    mode.append("full")
                    return real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)
        os.write = write
        cap = capture()
        sys.stdout.write("".join(lines[:10]))
        cap.flush()
        mode.append("half")
        os.write(1, "".join(lines[10:20]).encode())
        time.sleep(0.1)
        sys.stdout.write("".join(lines[20:]))
        cap.stop()
        note(mode)
        """,
    )
    assert child.rc == 0, child.err
    assert child.notes == ["['half', 'full']"]
    everything = "".join(lines).encode()
    assert child.out == everything
    assert len(child.errors) == 1 and "No space left on device" in child.errors[0], child.errors
    assert child.log.endswith(b"\n")
    assert everything.startswith(child.log)
    assert len(lines[:10]) <= len(lines_of(child.log)) < 20


def test_deleted_log_directory_reports_once_and_is_not_recreated(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        cap = capture()
        print("before", flush=True)
        cap.flush()
        shutil.rmtree(LOGS)
        for i in range(3):
            print("after", i, flush=True)
            cap.flush()
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    assert child.out == b"before\nafter 0\nafter 1\nafter 2\n"
    assert len(child.errors) == 1 and "deleted" in child.errors[0], child.errors
    assert not (tmp_path / "logs").exists()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=False, capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_real_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "logs", "256k"):
        child = run_child(
            tmp_path,
            """
            cap = capture(roll_bytes=64 << 10)
            for i in range(20000):
                print(f"step {i:06d} " + "w" * (i % 50))
            cap.stop()
            """,
        )
        assert child.rc == 0, child.err
        expected = "".join(f"step {i:06d} " + "w" * (i % 50) + "\n" for i in range(20000)).encode()
        assert child.out == expected
        assert len(child.errors) == 1 and "No space left on device" in child.errors[0], child.errors
        assert 100_000 < len(child.log) < len(expected)
        assert expected.startswith(child.log)
        assert all(f.read_bytes().endswith(b"\n") for f in child.files), [
            (f.name, f.stat().st_size) for f in child.files
        ]


def test_stop_restores_fds_and_cleans_up(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        def fds():
            return [(os.fstat(fd).st_dev, os.fstat(fd).st_ino, fcntl.fcntl(fd, fcntl.F_GETFL), os.get_inheritable(fd))
                    for fd in (1, 2)]
        before, open_before = fds(), sorted(os.listdir("/proc/self/fd"))
        cap = capture()
        note(fds() != before)
        print("captured")
        subprocess.run(["sh", "-c", "echo child captured >&2"])
        cap.stop()
        cap.stop()
        note(cap.flush())
        note(fds() == before)
        print("after stop", flush=True)
        os.system("echo child after stop")
        time.sleep(0.1)
        note([t.name for t in threading.enumerate() if t.name.startswith("runsync-console")])
        note(sorted(os.listdir("/proc/self/fd")) == open_before)
        """,
    )
    assert child.rc == 0, child.err
    assert child.notes == ["True", "False", "True", "[]", "True"]
    assert child.out == b"captured\nafter stop\nchild after stop\n"
    assert child.err == b"child captured\n"
    assert sorted(lines_of(child.log)) == [b"captured\n", b"child captured\n"]


def test_closed_or_read_only_fds_are_left_alone(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        os.close(1)
        cap = capture()
        try:
            os.fstat(1)
            note("fd 1 was taken")
        except OSError:
            note("fd 1 still closed")
        os.write(2, b"stderr alone\\n")
        cap.stop()
        os.dup2(os.open(os.devnull, os.O_RDONLY), 1)
        ident = os.fstat(1).st_ino
        cap = console.ConsoleCapture(LOGS, "other", on_error=on_error)
        cap.start()
        note(os.fstat(1).st_ino == ident)
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    assert child.notes == ["fd 1 still closed", "True"]
    assert child.err == child.log == b"stderr alone\n"


def test_children_holding_the_pipe_do_not_delay_stop(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        cap = capture()
        late = subprocess.Popen(["sh", "-c", "echo early; sleep 0.6; echo late"])
        time.sleep(0.2)
        t0 = time.monotonic()
        cap.stop()
        note(time.monotonic() - t0 < 0.5)
        late.wait()
        time.sleep(0.2)  # the reader still passes the late child's output to the terminal
        """,
    )
    assert child.rc == 0, child.err
    assert child.notes == ["True"]
    assert child.out == b"early\nlate\n"
    assert child.log == b"early\n"


def test_forked_child_is_captured_by_the_parent(tmp_path: Path) -> None:
    child = run_child(
        tmp_path,
        """
        import warnings
        warnings.simplefilter("ignore")  # Python 3.12+: fork() with threads
        cap = capture()
        pid = os.fork()
        if pid == 0:
            cap.stop()  # a no-op in the child: its fds stay on the parent's pipe
            os.write(1, b"from the forked child\\n")
            os._exit(0)
        os.waitpid(pid, 0)
        print("from the parent")
        cap.stop()
        """,
    )
    assert child.rc == 0, child.err
    assert child.out == b"from the forked child\nfrom the parent\n"
    assert child.log == child.out


def test_terminal_stays_a_terminal(tmp_path: Path) -> None:
    """On a tty the capture uses a pty: isatty, size and child line buffering are as before."""
    termios = pytest.importorskip("termios")
    import fcntl
    import struct

    master, slave = os.openpty()
    name = os.ttyname(slave)
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # compare raw bytes, without the outer pty's '\n' -> '\r\n'
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    received: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every holder of the slave is gone
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        child = run_child(
            tmp_path,
            """
            cap = capture()
            note(os.isatty(1) and os.isatty(2))
            note(tuple(os.get_terminal_size(1)))
            subprocess.run([sys.executable, "-c", "import sys; print(sys.stdout.isatty())"])
            os.write(1, b"\\r 10%\\r 50%\\r100%\\n")
            for i in range(3000):
                print(f"line {i:05d} " + "y" * 50)
            cap.stop()
            note(os.ttyname(1))
            """,
            terminal=(slave, slave),
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    assert child.rc == 0, child.err
    body = "".join(f"line {i:05d} " + "y" * 50 + "\n" for i in range(3000)).encode()
    assert b"".join(received) == b"True\n\r 10%\r 50%\r100%\n" + body
    assert child.log == b"True\n100%\n" + body
    assert child.notes[:2] == ["True", "(111, 33)"]
    assert child.notes[2] == name  # fd 1 is the original terminal again
