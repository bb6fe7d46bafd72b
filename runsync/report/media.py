"""Media for the report's gallery: images as small PNG data: URIs, histograms, tables, text.

Works against the reader's ``RunView.media_keys()`` / ``RunView.media(key)``
by duck typing (items with ``step``, ``key``, ``index``, ``kind``, ``caption``,
``value``) and returns nothing for a view without them, so the report needs no
change when that API lands. Images are shrunk with numpy and written as PNG
by hand (zlib only), so no imaging library is needed. Each key keeps at most a
few items, spread over the run's steps, and the whole gallery is held to a
byte budget: a report must stay small enough to mail.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MediaBudget", "MediaLimits", "collect_media", "png_bytes", "shrink", "spread"]


@dataclass(frozen=True)
class MediaLimits:
    per_key: int = 8  # items kept per (run, key), spread over its steps
    image_side: int = 256  # longest side of an embedded image, in pixels
    table_rows: int = 20
    text_chars: int = 20_000
    cell_chars: int = 200


class MediaBudget:
    """Bytes left for the gallery; items that do not fit are counted, not embedded."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.omitted = 0

    def take(self, n: int) -> bool:
        if n > self.left:
            self.omitted += 1
            return False
        self.left -= n
        return True


def shrink(img: np.ndarray, side: int) -> np.ndarray:
    """An HxW or HxWxC image as uint8 HxWxC with the long side at most ``side`` (block means)."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"not an HxW or HxWxC (C in 1..4) image: shape {a.shape}")
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        if np.issubdtype(a.dtype, np.floating) and np.nanmax(f) <= 1.0:
            f = f * 255.0
        a = np.clip(np.nan_to_num(f), 0, 255).round().astype(np.uint8)
    h, w, c = a.shape
    k = math.ceil(max(h, w) / side)
    if k <= 1:
        return a
    ph, pw = (-h) % k, (-w) % k
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge")
    hh, ww = a.shape[0] // k, a.shape[1] // k
    blocks = a.reshape(hh, k, ww, k, c).astype(np.float32).mean(axis=(1, 3))
    return blocks.round().astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    """PNG file bytes of a uint8 HxWxC image (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)."""
    h, w, c = img.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    # Filter type 1 (Sub) on every row: the difference to the pixel on the left, mod 256.
    rows = img.reshape(h, w * c)
    sub = rows.copy()
    sub[:, c:] = rows[:, c:] - rows[:, :-c]
    raw = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def spread(steps: list[int], n: int) -> list[int]:
    """At most ``n`` of the sorted distinct ``steps``, evenly spread, first and last included."""
    if len(steps) <= n:
        return list(steps)
    if n <= 1:
        return [steps[-1]]
    pos = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
    return [steps[i] for i in pos]


def _number(v: Any) -> Any:
    f = float(v)
    if math.isfinite(f):
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")


def _cell(v: Any, limit: int) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v if not isinstance(v, str) else v[:limit]
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, np.bool_):
        try:
            return _number(v)
        except (TypeError, ValueError, OverflowError):
            pass
    if isinstance(v, np.bool_):
        return bool(v)
    return str(v)[:limit]


def _table(value: Any, limits: MediaLimits) -> dict[str, Any]:
    if hasattr(value, "iloc") and hasattr(value, "columns"):  # pandas DataFrame
        head = value.head(limits.table_rows)
        cols = [str(c) for c in head.columns]
        rows = [[_cell(v, limits.cell_chars) for v in r] for r in head.itertuples(index=False, name=None)]
        total = len(value)
    elif hasattr(value, "to_pylist") and hasattr(value, "column_names"):  # pyarrow Table
        cols = [str(c) for c in value.column_names]
        rows = [[_cell(r.get(c), limits.cell_chars) for c in value.column_names]
                for r in value.slice(0, limits.table_rows).to_pylist()]
        total = value.num_rows
    else:
        raise ValueError(f"not a table: {type(value).__name__}")
    return {"columns": cols, "rows": rows, "total": int(total)}


def encode_item(item: Any, limits: MediaLimits) -> dict[str, Any] | None:
    """One media item as report JSON (``data`` depends on ``kind``), or None if it cannot be shown."""
    kind = str(getattr(item, "kind", ""))
    value = getattr(item, "value", None)
    out: dict[str, Any] = {"step": int(getattr(item, "step", 0)), "index": int(getattr(item, "index", 0) or 0),
                           "kind": kind}
    caption = getattr(item, "caption", None)
    if caption:
        out["caption"] = str(caption)[: limits.cell_chars]
    if kind == "image":
        small = shrink(value, limits.image_side)
        out["w"], out["h"] = int(small.shape[1]), int(small.shape[0])
        out["data"] = "data:image/png;base64," + base64.b64encode(png_bytes(small)).decode("ascii")
    elif kind == "histogram":
        counts = np.asarray(value.counts, dtype=np.float64).ravel()
        edges = np.asarray(value.edges, dtype=np.float64).ravel()
        out["data"] = {"counts": [_number(v) for v in counts], "edges": [_number(v) for v in edges]}
    elif kind == "table":
        out["data"] = _table(value, limits)
    elif kind == "text":
        text = value if isinstance(value, str) else str(value)
        out["data"] = text[: limits.text_chars]
        if len(text) > limits.text_chars:
            out["truncated"] = len(text)
    else:
        return None
    return out


def collect_media(view: Any, limits: MediaLimits, budget: MediaBudget) -> tuple[dict[str, list[dict[str, Any]]],
                                                                                 list[str]]:
    """({key: [item, ...]}, [problems]) for one run; empty when the view has no media API."""
    keys_fn = getattr(view, "media_keys", None)
    media_fn = getattr(view, "media", None)
    if not callable(keys_fn) or not callable(media_fn):
        return {}, []
    out: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    try:
        keys = list(keys_fn())
    except Exception as e:  # noqa: BLE001 -- a reader bug must not cost the whole report
        return {}, [f"media: {type(e).__name__}: {e}"]
    for key in keys:
        try:
            items = list(media_fn(key))
        except Exception as e:  # noqa: BLE001 -- one key's trouble is reported, the rest still shown
            problems.append(f"media {key!r}: {type(e).__name__}: {e}")
            continue
        steps = sorted({int(getattr(it, "step", 0)) for it in items})
        kept = spread(steps, limits.per_key)
        per_step = max(1, limits.per_key // max(1, len(kept)))
        wanted = set(kept)
        chosen: dict[int, list[Any]] = {}
        for it in sorted(items, key=lambda it: (int(getattr(it, "step", 0)), int(getattr(it, "index", 0) or 0))):
            s = int(getattr(it, "step", 0))
            if s in wanted and len(chosen.setdefault(s, [])) < per_step:
                chosen[s].append(it)
        encoded: list[dict[str, Any]] = []
        for s in kept:
            for it in chosen.get(s, []):
                try:
                    enc = encode_item(it, limits)
                except Exception as e:  # noqa: BLE001 -- an item that cannot be shown is listed as a problem
                    problems.append(f"media {key!r} step {s}: {type(e).__name__}: {e}")
                    continue
                if enc is not None and budget.take(len(json.dumps(enc, separators=(",", ":")))):
                    encoded.append(enc)
        if encoded:
            out[str(key)] = encoded
    return out, problems
