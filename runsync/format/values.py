"""Logged values: keys, type codes and coercion rules (spec §5).

Every logged value becomes one of five typed scalars. This module is the only
place that decides which Python values are accepted and what they become, so
the writer and any second implementation agree with the spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import IntEnum
from typing import Any, Union

__all__ = [
    "ValueType",
    "Scalar",
    "MAX_KEY_LEN",
    "MAX_TEXT_BYTES",
    "RESERVED_KEYS",
    "INT64_MIN",
    "INT64_MAX",
    "check_key",
    "coerce",
    "flatten",
]


class ValueType(IntEnum):
    """The ``type`` column of history (spec §5.2). Codes are stable forever."""

    NULL = 0
    FLOAT = 1
    INT = 2
    BOOL = 3
    STRING = 4
    MEDIA = 5  # since 1.2: a reference to media rows (spec §13); text = the media kind


Scalar = Union[None, bool, int, float, str]

MAX_KEY_LEN = 256
MAX_TEXT_BYTES = 1 << 20
RESERVED_KEYS = frozenset({"step", "time"})
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
SEPARATOR = "/"


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid history key, else raise (spec §5.1)."""
    if not isinstance(key, str):
        raise TypeError(f"log() keys must be str, got {type(key).__name__} ({key!r})")
    if not key:
        raise ValueError("log() key must not be empty")
    if len(key) > MAX_KEY_LEN:
        raise ValueError(f"log() key {key[:40]!r}... is {len(key)} characters; at most {MAX_KEY_LEN} allowed")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ValueError(f"log() key {key!r} contains a control character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"log() key {key!r} is not valid Unicode (lone surrogate)") from None
    if key.startswith("_"):
        raise ValueError(f"log() key {key!r}: keys starting with '_' are reserved for runsync")
    if key in RESERVED_KEYS:
        raise ValueError(f"log() key {key!r} is reserved (it names a history column); pass step= to set the step")
    return key


def coerce(key: str, value: object) -> tuple[ValueType, Scalar]:
    """Map one logged value to its (type code, plain Python value) (spec §5.3).

    Raises TypeError (unsupported type) or ValueError (out of range) naming ``key``.
    """
    t = type(value)
    if t is float:
        return ValueType.FLOAT, value  # type: ignore[return-value]
    if t is int:
        return ValueType.INT, _check_int(key, value)  # type: ignore[arg-type]
    if t is bool:
        return ValueType.BOOL, value  # type: ignore[return-value]
    if t is str:
        return ValueType.STRING, _check_text(key, value)  # type: ignore[arg-type]
    if value is None:
        return ValueType.NULL, None
    # Subclasses and foreign scalar types (numpy, torch, enums), in a fixed order.
    if isinstance(value, bool) or _is_numpy_bool(value):
        return ValueType.BOOL, bool(value)
    if isinstance(value, int):
        return ValueType.INT, _check_int(key, int(value))
    if isinstance(value, float):
        return ValueType.FLOAT, float(value)
    if isinstance(value, str):
        return ValueType.STRING, _check_text(key, str.__str__(value))  # not str(): numpy.str_ drops trailing NULs
    item = _scalar_item(value)
    if item is not _NO_ITEM:
        return coerce(key, item)
    raise TypeError(
        f"log() key {key!r}: cannot log a value of type {t.__module__}.{t.__qualname__}; "
        "log a number, bool, string, None, a numpy/torch scalar or 1-element array, a list or array of numbers "
        "(stored as a histogram), a media value, or a dict of those"
    )


_NO_ITEM = object()


def _scalar_item(value: object) -> object:
    """Python scalar of a numpy/torch-style scalar, 0-d array or 1-element array, else _NO_ITEM (spec §5.3)."""
    shape = getattr(value, "shape", None)
    item = getattr(value, "item", None)
    if item is None or shape is None:
        return _NO_ITEM
    try:
        if any(int(d) != 1 for d in tuple(shape)):  # () or (1,), (1, 1)...: one element (since 1.3)
            return _NO_ITEM
        out = item()
    except Exception:
        return _NO_ITEM
    if type(out) in (float, int, bool, str) or out is None:
        return out
    return _NO_ITEM


def _is_numpy_bool(value: object) -> bool:
    t = type(value)
    return t.__name__ == "bool_" and t.__module__ == "numpy"


def _check_int(key: str, value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"log() key {key!r}: integer {value} does not fit in int64; log float({value}) to store it approximately"
        )
    return value


def _check_text(key: str, value: str) -> str:
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"log() key {key!r}: string is not valid Unicode (lone surrogate)") from None
    if n > MAX_TEXT_BYTES:
        raise ValueError(f"log() key {key!r}: string of {n} bytes exceeds {MAX_TEXT_BYTES} bytes")
    return value


def flatten(data: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, object]]:
    """Yield (key, value) with nested mappings joined by '/' (spec §5.1).

    Depth-first with an explicit stack, so a dict nested thousands of levels deep yields its (over-long)
    key for the key check to reject instead of exhausting Python's recursion limit.
    """
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [(prefix, iter(data.items()))]
    while stack:
        pre, items = stack[-1]
        for k, v in items:
            if not isinstance(k, str):
                raise TypeError(f"log() keys must be str, got {type(k).__name__} ({k!r})")
            key = f"{pre}{k}"
            if isinstance(v, Mapping):
                if v:
                    stack.append((key + SEPARATOR, iter(v.items())))
                    break
                continue
            yield key, v
        else:
            stack.pop()
