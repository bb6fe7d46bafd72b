"""``runsync.Image``, ``Histogram``, ``Table`` and ``Text``: media values for ``log()`` (spec §13).

Two halves, on two threads. ``prepare()`` runs inside ``log()``: it validates
the input (bad input raises there, naming the key) and takes a private copy,
so later changes to the caller's array or DataFrame do not leak into the run.
``encode()`` runs on the flusher thread: PNG compression, histogram binning
and Parquet encoding never cost the training loop.
"""

from __future__ import annotations

import io
import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Media", "Image", "Histogram", "Table", "Text", "Prepared", "MediaError", "prepare_value"]

_MAX_BINS = 512
_MAX_TEXT = 1 << 24


class MediaError(ValueError):
    """A media value that cannot be logged (bad shape, dtype, NaN-only data...)."""


@dataclass
class Prepared:
    """A validated private copy of one item, ready to encode on the flusher thread."""

    kind: str
    caption: str | None
    payload: Any
    nbytes: int

    def encode(self) -> tuple[str, bytes, dict[str, Any]]:
        """(format, bytes, meta) as stored in the media table (spec §13.2)."""
        return _ENCODERS[self.kind](self.payload)


class Media:
    """Base of the media value types; instances are used as ``log()`` values."""

    kind = ""

    def __init__(self, caption: str | None) -> None:
        if caption is not None and not isinstance(caption, str):
            raise TypeError(f"caption must be a str, got {type(caption).__name__}")
        self.caption = caption

    def prepare(self, key: str) -> Prepared:  # pragma: no cover - abstract
        raise NotImplementedError


def _need_pillow(what: str) -> Any:
    try:
        import PIL.Image
    except ImportError:
        raise ImportError(f"{what} needs pillow, the 'media' extra: pip install 'runsync[media]'") from None
    return PIL.Image


# -- Image -------------------------------------------------------------------------------
class Image(Media):
    """An image: a numpy array (HxW, HxWx1/3/4; uint8, or float in [0, 1]), a PIL image, or an image file.

    Stored as PNG (pixel-exact for uint8 input; floats are scaled by 255 and rounded).
    """

    kind = "image"

    def __init__(self, data: Any, caption: str | None = None) -> None:
        super().__init__(caption)
        _need_pillow("runsync.Image")
        self._data = data

    def prepare(self, key: str) -> Prepared:
        data = self._data
        pil = _need_pillow("runsync.Image")
        if isinstance(data, (str, os.PathLike)):
            # Read now: the caller may overwrite the file next step (savefig("sample.png") loops).
            p = Path(data)
            try:
                raw = p.read_bytes()
            except OSError as e:
                raise MediaError(f"log() key {key!r}: image file {str(p)!r} cannot be read ({e.strerror or e})") from None
            try:
                with pil.open(io.BytesIO(raw)) as probe:
                    probe.size  # noqa: B018 - the header parses
            except Exception:
                raise MediaError(f"log() key {key!r}: {str(p)!r} is not an image file pillow can read") from None
            return Prepared("image", self.caption, ("file", raw), len(raw))
        if isinstance(data, pil.Image):
            copy = data.copy()
            return Prepared("image", self.caption, ("pil", copy), copy.width * copy.height * len(copy.getbands()))
        import numpy as np

        if not hasattr(data, "__array__") and not isinstance(data, (list, tuple)):
            raise MediaError(f"log() key {key!r}: runsync.Image takes a numpy array, a PIL image or a file path, "
                             f"not {type(data).__name__}")
        arr = np.array(data, copy=True)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or 0 in arr.shape:
            raise MediaError(f"log() key {key!r}: image shape {arr.shape} is not HxW, HxWx1, HxWx3 or HxWx4")
        if arr.dtype == np.uint8:
            pass
        elif arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
                raise MediaError(f"log() key {key!r}: float image values must be finite and within [0, 1]")
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        else:
            raise MediaError(f"log() key {key!r}: image dtype {arr.dtype} is not supported; use uint8, or float "
                             "in [0, 1]")
        return Prepared("image", self.caption, ("array", arr), arr.nbytes)


def _encode_image(payload: tuple[str, Any]) -> tuple[str, bytes, dict[str, Any]]:
    pil = _need_pillow("runsync.Image")
    how, obj = payload
    if how == "array":
        import numpy as np

        arr = obj
        if arr.dtype != np.uint8:
            arr = np.rint(arr * 255.0).astype(np.uint8)
        im = pil.fromarray(arr)
    elif how == "pil":
        im = obj
    else:
        with pil.open(io.BytesIO(obj)) as f:
            f.load()
            im = f.copy()
    # Stored modes: L, RGB, RGBA (read back as uint8 HxW, HxWx3, HxWx4) and 16-bit grey I;16.
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "RGB", "RGBA", "I;16"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return "png", buf.getvalue(), {"width": im.width, "height": im.height, "mode": im.mode}


# -- Histogram -----------------------------------------------------------------------------
class Histogram(Media):
    """A histogram of ``values`` (``bins`` equal bins over their finite range), or ready ``(counts, edges)``.

    W&B's spelling works too: ``Histogram(sequence=v, num_bins=n)`` and
    ``Histogram(np_histogram=np.histogram(v))``.
    """

    kind = "histogram"

    def __init__(self, values: Any = None, bins: int = 64, caption: str | None = None, *, sequence: Any = None,
                 np_histogram: Any = None, num_bins: int | None = None) -> None:
        super().__init__(caption)
        if sequence is not None:
            values = sequence
        if np_histogram is not None:
            if values is not None:
                raise ValueError("Histogram takes values (a sequence) or np_histogram=(counts, edges), not both")
            if not isinstance(np_histogram, (tuple, list)) or len(np_histogram) != 2:
                raise ValueError("Histogram(np_histogram=...) takes (counts, edges), as numpy.histogram returns")
            values = (np_histogram[0], np_histogram[1])
        if values is None:
            raise ValueError("Histogram needs values (a sequence of numbers) or np_histogram=(counts, edges)")
        if num_bins is not None:
            bins = num_bins
        if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or not 1 <= int(bins) <= _MAX_BINS:
            raise ValueError(f"bins must be an int from 1 to {_MAX_BINS}, got {bins!r}")
        self._values = values
        self._bins = int(bins)

    def prepare(self, key: str) -> Prepared:
        import numpy as np

        v = self._values
        if isinstance(v, tuple) and len(v) == 2 and all(hasattr(x, "__len__") for x in v):
            counts = np.array(v[0], dtype=np.float64, copy=True).ravel()
            edges = np.array(v[1], dtype=np.float64, copy=True).ravel()
            if len(edges) != len(counts) + 1 or len(counts) == 0:
                raise MediaError(f"log() key {key!r}: histogram (counts, edges) needs len(edges) == len(counts) + 1 "
                                 f"and at least one bin; got {len(counts)} counts and {len(edges)} edges")
            if not (np.isfinite(counts).all() and np.isfinite(edges).all()) or (counts < 0).any() \
                    or (np.diff(edges) <= 0).any() or (counts != np.round(counts)).any():
                raise MediaError(f"log() key {key!r}: histogram counts must be finite non-negative integers and "
                                 "edges finite and increasing")
            return Prepared("histogram", self.caption, ("counts", counts.astype(np.int64), edges), counts.nbytes * 2)
        try:
            arr = np.array(v, dtype=np.float64, copy=True).ravel()
        except (TypeError, ValueError):
            raise MediaError(f"log() key {key!r}: histogram values must be numbers, got {type(v).__name__}") from None
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise MediaError(f"log() key {key!r}: histogram of {arr.size} values has no finite value (all NaN/inf)")
        return Prepared("histogram", self.caption, ("values", finite, self._bins, arr.size - finite.size),
                        finite.nbytes)


def _encode_histogram(payload: tuple[Any, ...]) -> tuple[str, bytes, dict[str, Any]]:
    import numpy as np

    meta: dict[str, Any] = {}
    if payload[0] == "counts":
        counts, edges = payload[1], payload[2]
    else:
        values, bins, dropped = payload[1], payload[2], payload[3]
        counts, edges = np.histogram(values, bins=bins)
        meta = {"values": int(values.size), "nonfinite": int(dropped), "min": float(values.min()),
                "max": float(values.max())}
    meta["bins"] = len(counts)
    doc = {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]}
    return "json", json.dumps(doc, separators=(",", ":")).encode(), meta


# -- Table ---------------------------------------------------------------------------------
class Table(Media):
    """A table: ``columns`` (names) with ``rows`` (lists), or a pandas ``dataframe``. Stored as Parquet."""

    kind = "table"

    def __init__(self, columns: list[str] | None = None, rows: list[Any] | None = None, dataframe: Any = None,
                 caption: str | None = None) -> None:
        super().__init__(caption)
        if dataframe is None and columns is None:
            raise TypeError("runsync.Table takes columns= and rows=, or dataframe=")
        if dataframe is not None and (columns is not None or rows is not None):
            raise TypeError("runsync.Table takes either columns=/rows= or dataframe=, not both")
        self._columns, self._rows, self._df = columns, rows, dataframe

    def prepare(self, key: str) -> Prepared:
        import pyarrow as pa

        try:
            if self._df is not None:  # a deep copy: Arrow would share the numeric columns' memory
                table = pa.Table.from_pandas(self._df.copy(deep=True), preserve_index=False)
            else:
                cols = [str(c) for c in self._columns or []]
                if len(set(cols)) != len(cols):
                    raise MediaError(f"log() key {key!r}: table column names repeat: {cols}")
                rows = [list(r) for r in (self._rows or [])]
                for i, r in enumerate(rows):
                    if len(r) != len(cols):
                        raise MediaError(f"log() key {key!r}: table row {i} has {len(r)} values for {len(cols)} columns")
                arrays = []
                for j, name in enumerate(cols):
                    try:
                        arrays.append(pa.array([r[j] for r in rows]))
                    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
                        kinds = sorted({type(r[j]).__name__ for r in rows})
                        raise MediaError(f"log() key {key!r}: table column {name!r} mixes types "
                                         f"({', '.join(kinds)}): {e}") from None
                table = pa.table(arrays, names=cols)
        except pa.ArrowException as e:
            raise MediaError(f"log() key {key!r}: table cannot be stored: {e}") from None
        return Prepared("table", self.caption, table, table.nbytes)


def _encode_table(table: Any) -> tuple[str, bytes, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return "parquet", sink.getvalue().to_pybytes(), {"rows": table.num_rows, "columns": table.column_names}


# -- Text ----------------------------------------------------------------------------------
class Text(Media):
    """A piece of text (a generated sample, a prompt), stored as UTF-8."""

    kind = "text"

    def __init__(self, text: str, caption: str | None = None) -> None:
        super().__init__(caption)
        self._text = text

    def prepare(self, key: str) -> Prepared:
        if not isinstance(self._text, str):
            raise MediaError(f"log() key {key!r}: runsync.Text takes a str, got {type(self._text).__name__}")
        try:
            raw = self._text.encode("utf-8")
        except UnicodeEncodeError:
            raise MediaError(f"log() key {key!r}: text is not valid Unicode (lone surrogate)") from None
        if len(raw) > _MAX_TEXT:
            raise MediaError(f"log() key {key!r}: text of {len(raw)} bytes exceeds {_MAX_TEXT} bytes")
        return Prepared("text", self.caption, raw, len(raw))


def _encode_text(raw: bytes) -> tuple[str, bytes, dict[str, Any]]:
    return "utf8", raw, {"chars": len(raw.decode("utf-8"))}


_ENCODERS = {"image": _encode_image, "histogram": _encode_histogram, "table": _encode_table, "text": _encode_text}


def prepare_value(key: str, value: Any) -> list[Prepared] | None:
    """Prepared items if ``value`` is a media value or a non-empty list/tuple of them, else None."""
    if isinstance(value, Media):
        return [value.prepare(key)]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Media) for v in value):
        kinds = {v.kind for v in value}
        if len(kinds) > 1:
            raise MediaError(f"log() key {key!r}: a list of media must hold one kind, got {sorted(kinds)}")
        return [v.prepare(key) for v in value]
    numbers_ = _numbers(value)
    if numbers_ is not None:
        return [Histogram(numbers_).prepare(key)]
    return None


def _numbers(value: Any) -> Any:
    """The values of a list/tuple of real numbers or of a numpy array / torch tensor of ≥ 2 elements, else None.

    Logged as a histogram, as W&B does (spec §5.3, since 1.3). torch is never
    imported here: a tensor is recognised by its type's module.
    """
    t = type(value)
    if t is list or t is tuple:
        if value and all(type(v) in (int, float) or isinstance(v, numbers.Real) and not isinstance(v, bool)
                         for v in value):
            return value
        return None
    module = t.__module__
    if module == "numpy" and t.__name__ == "ndarray":
        if value.size >= 2 and value.dtype.kind in "iuf":
            return value
        return None
    if module.startswith("torch") and hasattr(value, "numel") and hasattr(value, "detach"):
        try:
            if value.numel() < 2 or value.is_complex() or value.dtype.is_complex:
                return None
            return value.detach().cpu().double().numpy()
        except Exception:
            return None
    return None
