"""``run.config`` and ``run.summary``: mappings whose every change is one WAL record (spec §3.2, §3.3, §8.3.5).

Both take item and attribute access (``config.lr = 1e-3``, ``summary.best = v``),
as W&B's objects do: an attribute set is recorded exactly like an item set, and an
attribute read of a missing key raises AttributeError (so ``getattr(config, k, d)``
works). Names starting with ``_`` are the objects' own.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..format.meta import deep_update, json_safe
from ..format.wal import MetaOp

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Config", "Summary", "as_config_dict"]


def as_config_dict(source: Any, what: str = "config") -> dict[str, Any]:
    """``source`` as a plain dict: a mapping, (key, value) pairs, an ``argparse.Namespace`` or
    ``types.SimpleNamespace``, absl-style flags (an object with ``flag_values_dict()``), or a dataclass."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (argparse.Namespace, types.SimpleNamespace)):
        return dict(vars(source))
    flag_values = getattr(source, "flag_values_dict", None)
    if callable(flag_values):
        return dict(flag_values())
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return dataclasses.asdict(source)
    if isinstance(source, (list, tuple)):
        try:
            return dict(source)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"{what}: expected a dict, an argparse.Namespace, absl flags or a dataclass, got "
                    f"{type(source).__name__}")


def _changed(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Keys whose existing value ``new`` would change under the deep merge of spec §3.2."""
    out: list[tuple[str, Any, Any]] = []
    for k, v in new.items():
        if k not in old:
            continue
        if isinstance(v, dict) and isinstance(old[k], dict):
            out += _changed(old[k], v, f"{prefix}{k}.")
        elif old[k] != v:
            out.append((prefix + k, old[k], v))
    return out


class Config(MutableMapping[str, Any]):
    """``run.config``: hyperparameters; each change is one CONFIG_UPDATE record (durable at once).

    Nested dicts merge key by key (spec §3.2). Changing the value of an existing
    key without ``allow_val_change=True`` (per call, or ``init(allow_val_change=True)``)
    is recorded, with one warning per key: W&B refuses such a change.
    """

    _run: Run
    _data: dict[str, Any]
    _allow_val_change: bool
    _warned: set[str]

    def __init__(self, run: Run, data: dict[str, Any], allow_val_change: bool = False) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_allow_val_change", allow_val_change)
        object.__setattr__(self, "_warned", set())

    # -- mapping ------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError("config keys cannot be deleted once recorded; set a new value instead")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # -- attributes ---------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}; keys: {sorted(self._data)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.update({name: value})

    def __delattr__(self, name: str) -> None:
        del self[name]

    # -- updates ------------------------------------------------------------------
    def update(self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Merge ``d`` (a dict, ``argparse.Namespace`` or absl flags) and ``kwargs`` into the config."""
        changes = as_config_dict(d, "config.update()")
        changes.update(kwargs)
        for k in changes:
            if not isinstance(k, str) or not k:
                raise TypeError(f"config keys must be non-empty str, got {k!r}")
        if not changes:
            return
        safe = json_safe(changes)
        allowed = self._allow_val_change if allow_val_change is None else allow_val_change
        if not allowed:
            self._warn_changes(_changed(self._data, safe))
        self._run._write_meta(MetaOp.CONFIG_UPDATE, safe)
        deep_update(self._data, safe)

    def setdefaults(self, d: Any) -> None:
        """Set the keys of ``d`` that the config does not have yet (W&B's ``setdefaults``)."""
        missing = {k: v for k, v in as_config_dict(d, "config.setdefaults()").items() if k not in self._data}
        if missing:
            self.update(missing)

    def _warn_changes(self, changes: list[tuple[str, Any, Any]]) -> None:
        for key, old, new in changes:
            if key in self._warned:
                continue
            self._warned.add(key)
            self._run._reporter.problem(
                f"config-change:{key}",
                f"config key {key!r} changed from {old!r} to {new!r}; recorded (W&B would refuse this without "
                "config.update(..., allow_val_change=True))")

    def persist(self) -> None:
        """W&B's ``persist()``: every change is already durable here, so nothing to do."""

    def as_dict(self) -> dict[str, Any]:
        return json_safe(self._data)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(MutableMapping[str, Any]):
    """``run.summary``: last logged value per key, unless set by hand (which sticks, spec §3.3)."""

    _run: Run

    def __init__(self, run: Run) -> None:
        object.__setattr__(self, "_run", run)

    def _snapshot(self) -> dict[str, Any]:
        return self._run._summary_snapshot()

    def __getitem__(self, key: str) -> Any:
        return self._snapshot()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"summary keys must be non-empty str, got {key!r}")
        self._run._write_meta(MetaOp.SUMMARY_SET, {"key": key, "value": json_safe(value)})

    def __delitem__(self, key: str) -> None:
        if key not in self._snapshot():
            raise KeyError(key)
        self._run._write_meta(MetaOp.SUMMARY_DELETE, {"key": key})

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._snapshot()[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def update(self, d: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Set each key of ``d`` (a dict) and ``kwargs`` by hand."""
        for k, v in {**(dict(d) if d is not None else {}), **kwargs}.items():
            self[k] = v

    def __repr__(self) -> str:
        return f"Summary({self._snapshot()!r})"
