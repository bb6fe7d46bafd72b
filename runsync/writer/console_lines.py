"""Line assembly of captured console output (spec §15): whole lines, carriage returns collapsed.

A ``\\r`` followed by any byte other than ``\\n`` discards itself and everything before it on the line,
so a progress bar redrawn with ``\\r`` is stored as its final state; ``\\r\\n`` is kept as is.
"""

from __future__ import annotations

__all__ = ["LineBuffer"]


class LineBuffer:
    """Complete lines from one output stream, carriage returns collapsed (rules in the module doc).

    Memory is bounded: only the current line after its last collapsing ``\\r``
    is kept, so a progress bar redrawn a million times costs one redraw; a
    partial line that grows past ``max_line`` bytes is returned as a line.
    """

    def __init__(self, max_line: int = 4 << 20) -> None:
        self.max_line = max_line
        self._buf = bytearray()  # no '\r' in it except possibly as its last byte
        self.redrawn = False  # the current line has had a '\r'

    @property
    def pending(self) -> bool:
        """Whether a partial line is waiting for its line end."""
        return bool(self._buf)

    def feed(self, data: bytes) -> bytes:
        """Add ``data``; return the lines it completed, each ending in ``\\n``, concatenated."""
        if not data:
            return b""
        out = bytearray()
        if b"\r" not in data and not self._buf.endswith(b"\r"):
            last = data.rfind(b"\n")
            if last < 0:
                self._buf += data
            else:
                out += self._buf
                out += data[: last + 1]
                self._buf = bytearray(data[last + 1 :])
                self.redrawn = False
        else:
            start = 0
            while (nl := data.find(b"\n", start)) >= 0:
                self._add(data[start:nl])
                out += self._buf
                out += b"\n"
                self._buf.clear()
                self.redrawn = False
                start = nl + 1
            self._add(data[start:])
        if len(self._buf) > self.max_line:
            out += self.take()
        return bytes(out)

    def _add(self, seg: bytes) -> None:
        """Append a piece of the current line (no ``\\n`` in it), collapsing ``\\r``."""
        if not seg:
            return
        i = seg.rfind(b"\r", 0, len(seg) - 1)  # last '\r' with a byte after it in seg
        if i >= 0:
            self._buf = bytearray(seg[i + 1 :])
            self.redrawn = True
        elif self._buf.endswith(b"\r"):  # a pending '\r' followed by a byte that is not '\n'
            self._buf = bytearray(seg)
        else:
            self._buf += seg
        if seg.endswith(b"\r"):
            self.redrawn = True

    def take(self) -> bytes:
        """The partial line as a stored line (``\\n`` appended), or b"" if there is none."""
        line = bytes(self._buf) + b"\n" if self._buf else b""
        self._buf.clear()
        self.redrawn = False
        return line
