"""TensorBoard writers: with ``patch()`` or ``init(sync_tensorboard=True)``, ``SummaryWriter`` logs to runsync too.

After ``patch()``, ``torch.utils.tensorboard.SummaryWriter`` and ``tensorboardX.SummaryWriter``
(whichever is installed) still write their event files, and also log to the current run (the
last ``runsync.init()`` not yet finished), at their ``global_step`` (TensorBoard's own default
of 0 when none is given):

- ``add_scalar(tag, v)`` → key ``tag``; ``add_scalars(main, {t: v})`` → keys ``main/t``;
- ``add_histogram(tag, values)`` → a ``runsync.Histogram``; ``add_image(tag, img, dataformats=)``
  → a ``runsync.Image`` (needs pillow); ``add_text(tag, s)`` → a ``runsync.Text``.

With no current run the writers behave as before. What runsync refuses (spec §5.4) or fails at
is reported once on stderr, never raised: the writer's own behaviour is unchanged.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any

from ..writer import Histogram, Image, Text, current
from ._common import report

__all__ = ["patch", "patched", "unpatch"]

_MODULES = ("torch.utils.tensorboard.writer", "tensorboardX.writer")
_METHODS = ("add_scalar", "add_scalars", "add_histogram", "add_image", "add_text")
_originals: dict[tuple[type, str], Callable[..., Any]] = {}
_lock = threading.Lock()
_inside = threading.local()  # a patched method calling another (a subclass's super()) logs once


def patch() -> list[str]:
    """Patch every installed ``SummaryWriter`` (idempotent); returns the modules patched."""
    done = []
    with _lock:
        for name in _MODULES:
            try:
                module = importlib.import_module(name)
            except Exception:  # not installed (or torch without tensorboard): nothing to patch
                continue
            cls = getattr(module, "SummaryWriter", None)
            if not isinstance(cls, type):
                continue
            for method in _METHODS:
                original = cls.__dict__.get(method)
                if original is None or (cls, method) in _originals:
                    continue
                _originals[(cls, method)] = original
                setattr(cls, method, _wrap(method, original))
            done.append(name)
    return done


def unpatch() -> None:
    """Put the original methods back."""
    with _lock:
        for (cls, method), original in _originals.items():
            setattr(cls, method, original)
        _originals.clear()


def patched() -> bool:
    return bool(_originals)


def _wrap(method: str, original: Callable[..., Any]) -> Callable[..., Any]:
    convert = _CONVERTERS[method]

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if getattr(_inside, "active", False):
            return result
        run = current()
        if run is None or run.finished:
            return result
        _inside.active = True
        try:
            data, step = convert(*args, **kwargs)
            if data:
                run.log(data, step=0 if step is None else int(step))
        except Exception as e:
            what = ",".join(sorted(k for k, _ in getattr(e, "errors", []))) or type(e).__name__
            report(f"tensorboard:{method}:{what}", f"runsync tensorboard sync: SummaryWriter.{method} not logged to "
                   f"run {run.name}: {e}")
        finally:
            _inside.active = False
        return result

    wrapper._runsync_original = original  # type: ignore[attr-defined]
    return wrapper


# Each converter takes the SummaryWriter method's arguments and returns ({key: value}, global_step).
def _scalar(tag: str, scalar_value: Any, global_step: Any = None, *args: Any,
            **kwargs: Any) -> tuple[dict[str, Any], Any]:
    return {tag: _number(scalar_value)}, global_step


def _scalars(main_tag: str, tag_scalar_dict: dict[str, Any], global_step: Any = None, *args: Any,
             **kwargs: Any) -> tuple[dict[str, Any], Any]:
    return {f"{main_tag}/{t}": _number(v) for t, v in tag_scalar_dict.items()}, global_step


def _histogram(tag: str, values: Any, global_step: Any = None, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    return {tag: Histogram(_array(values))}, global_step


def _image(tag: str, img_tensor: Any, global_step: Any = None, walltime: Any = None, dataformats: str = "CHW",
           **kwargs: Any) -> tuple[dict[str, Any], Any]:
    return {tag: Image(_to_hwc(_array(img_tensor), dataformats))}, global_step


def _text(tag: str, text_string: str, global_step: Any = None, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    return {tag: Text(str(text_string))}, global_step


_CONVERTERS: dict[str, Callable[..., tuple[dict[str, Any], Any]]] = {
    "add_scalar": _scalar, "add_scalars": _scalars, "add_histogram": _histogram, "add_image": _image,
    "add_text": _text,
}


def _number(v: Any) -> Any:
    """A 1-element tensor or array (what TensorBoard's ``make_np`` accepts) as its item; else as given (§5.3)."""
    if getattr(v, "shape", None) not in (None, ()) and getattr(v, "size", None) is not None:
        try:
            arr = _array(v)
            if arr.size == 1:
                return arr.reshape(()).item()
        except Exception:
            pass
    return v


def _array(x: Any) -> Any:
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _to_hwc(arr: Any, dataformats: str) -> Any:
    """An image array in TensorBoard's ``dataformats`` (``CHW``, ``HWC``, ``HW``, ``WH``) as HxW or HxWxC,
    with floats clipped to [0, 1] as TensorBoard scales them."""
    import numpy as np

    fmt = str(dataformats).upper()
    if sorted(fmt) not in (sorted("CHW"), sorted("HW")) or arr.ndim != len(fmt):
        raise ValueError(f"image of shape {arr.shape} with dataformats={dataformats!r} is not supported "
                         "(CHW, HWC, HW or WH)")
    order = [fmt.index(a) for a in ("HWC" if "C" in fmt else "HW")]
    arr = np.transpose(arr, order)
    if arr.dtype.kind == "f":
        arr = np.clip(np.nan_to_num(arr), 0.0, 1.0)
    return arr
