"""TensorBoard event files ↔ runsync runs (issue 17), through the ``tensorboard`` and ``tensorboardX`` packages.

Import reads ``events.out.tfevents.*`` with TensorBoard's own loader: every
directory under SOURCE that holds event files is one run, named by its path
relative to SOURCE. Scalars (``simple_value`` and the scalars plugin's
tensors) keep their steps and wall times; TensorBoard stores them as float32,
so they arrive as the float64 of that float32. Histograms, images and text
become runsync media, hparams the config. Export writes one TensorBoard run
directory per runsync run with tensorboardX.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .sink import ConvertError, ImportedRun, Source

__all__ = ["EVENTS_GLOB", "export_run", "find_runs", "read_run"]

EVENTS_GLOB = "events.out.tfevents.*"


def _need(package: str) -> Any:
    try:
        return __import__(package)
    except ImportError:
        raise ConvertError(f"this needs the {package!r} package: pip install 'runsync[tensorboard]'") from None


def find_runs(source: Path) -> list[Path]:
    """Directories at or under ``source`` that hold event files, sorted."""
    if not source.exists():
        raise ConvertError(f"{source}: no such file or directory")
    if source.is_file():
        return [source.parent]
    found = {p.parent for p in source.rglob(EVENTS_GLOB) if p.is_file()}
    if not found:
        raise ConvertError(f"{source}: no TensorBoard event files ({EVENTS_GLOB}) in it or below it")
    return sorted(found)


def _crc32c() -> Any:
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:  # TensorBoard's own pure-Python CRC-32C: correct, slower
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c

        return crc32c


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _records(path: Path, skipped: list[str]) -> Iterator[bytes]:
    """The records of one TFRecord event file (uint64 length, masked CRC-32C of it, data, masked CRC-32C of
    the data). A record whose data fails its CRC is skipped and reported; after a bad length, or a cut
    last record, nothing further can be framed: reported too."""
    crc = _crc32c()
    with open(path, "rb") as f:
        data = f.read()
    pos, n, bad = 0, 0, 0
    while pos < len(data):
        head = data[pos:pos + 12]
        if len(head) < 12:
            skipped.append(f"{path}: cut short after record {n} ({len(data) - pos} bytes at offset {pos} unread)")
            break
        (length,), (len_crc,) = struct.unpack("<Q", head[:8]), struct.unpack("<I", head[8:])
        if _masked(crc(head[:8])) != len_crc:
            skipped.append(f"{path}: damaged record header at offset {pos} after record {n}; "
                           f"the remaining {len(data) - pos} bytes cannot be read")
            break
        body = data[pos + 12:pos + 12 + length + 4]
        if len(body) < length + 4:
            skipped.append(f"{path}: cut short in record {n + 1} (offset {pos})")
            break
        pos += 12 + length + 4
        if _masked(crc(body[:length])) != struct.unpack("<I", body[length:])[0]:
            bad += 1
            continue
        n += 1
        yield body[:length]
    if bad:
        skipped.append(f"{path}: {bad} damaged record(s) skipped (CRC mismatch)")


def _events(run_dir: Path, skipped: list[str]) -> Iterator[Any]:
    """Events of a run directory's files in name order, through TensorBoard's read-time compat layers."""
    _need("tensorboard")
    from tensorboard import data_compat, dataclass_compat
    from tensorboard.compat.proto import event_pb2

    initial: dict[str, Any] = {}
    for path in sorted(run_dir.glob(EVENTS_GLOB)):
        if not path.is_file():
            continue
        for rec in _records(path, skipped):
            try:
                event = event_pb2.Event.FromString(rec)
            except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
                skipped.append(f"{path}: a record is not an event ({type(e).__name__})")
                continue
            yield from dataclass_compat.migrate_event(data_compat.migrate_event(event), initial)


def _ndarray(tensor: Any) -> Any:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(tensor)


def _hparams(content: bytes) -> dict[str, Any]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.WhichOneof("data") != "session_start_info":
        return {}
    out: dict[str, Any] = {}
    for name, v in data.session_start_info.hparams.items():
        kind = v.WhichOneof("kind")
        if kind == "number_value":
            x = v.number_value
            out[name] = int(x) if x.is_integer() and abs(x) < 2**53 else x  # TensorBoard keeps numbers as doubles
        elif kind == "string_value":
            out[name] = v.string_value
        elif kind == "bool_value":
            out[name] = v.bool_value
    return out


def _histogram(value: Any) -> Any:
    """A ``HistogramProto`` or the histograms plugin's [k, 3] tensor → runsync Histogram (counts, edges)."""
    import numpy as np

    from ..writer import Histogram

    if value.WhichOneof("value") == "histo":
        h = value.histo
        limits = list(h.bucket_limit)
        counts = list(h.bucket)
        if not counts:
            return None
        edges = [h.min] + [min(max(x, h.min), h.max) for x in limits]
        edges[-1] = max(h.max, edges[-2])
        keep = [i for i in range(len(counts)) if edges[i + 1] > edges[i] or counts[i]]
        e = [edges[0]]
        c: list[float] = []
        for i in keep:
            if edges[i + 1] > e[-1]:
                e.append(edges[i + 1])
                c.append(counts[i])
            elif c:
                c[-1] += counts[i]
        if not c:
            return None
        return Histogram((np.round(np.array(c)), np.array(e)))
    arr = _ndarray(value.tensor)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        return None
    return Histogram((np.round(arr[:, 2]), np.concatenate([arr[:1, 0], arr[:, 1]])))


def _image(data: bytes) -> Any:
    import io

    import numpy as np
    from PIL import Image as PILImage

    from ..writer import Image

    with PILImage.open(io.BytesIO(data)) as im:
        return Image(np.asarray(im.convert("RGBA") if im.mode not in ("L", "RGB", "RGBA") else im))


def read_run(run_dir: Path, root: Path, project: str = "default") -> ImportedRun:
    """Every event of one run directory as an ImportedRun."""
    from ..writer import Text

    rel = run_dir.resolve().relative_to(root.resolve()) if run_dir.resolve() != root.resolve() else Path(run_dir.name)
    uri = str(run_dir.resolve())
    run = ImportedRun(source=Source("tensorboard", uri, uri), name=str(rel) if str(rel) != "." else run_dir.name,
                      project=project)
    first: float | None = None
    last: float | None = None
    for ev in _events(run_dir, run.skipped):
        t = float(ev.wall_time)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        if not ev.HasField("summary"):
            continue
        step = int(ev.step)
        for v in ev.summary.value:
            plugin = v.metadata.plugin_data.plugin_name
            which = v.WhichOneof("value")
            try:
                if plugin == "hparams":
                    run.config.update(_hparams(v.metadata.plugin_data.content))
                elif which == "simple_value":
                    run.rows.append((step, t, v.tag, float(v.simple_value)))
                elif which == "histo" or plugin == "histograms":
                    h = _histogram(v)
                    if h is not None:
                        run.media.append((step, t, v.tag, [h]))
                elif which == "image":
                    run.media.append((step, t, v.tag, [_image(v.image.encoded_image_string)]))
                elif which == "tensor" and plugin == "images":
                    arr = _ndarray(v.tensor).ravel()
                    run.media.append((step, t, v.tag, [_image(b) for b in arr[2:]]))
                elif which == "tensor" and plugin == "text":
                    arr = _ndarray(v.tensor).ravel()
                    texts = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr]
                    tag = v.tag.removesuffix("/text_summary")  # tensorboardX's and torch's add_text suffix
                    run.media.append((step, t, tag, [Text(s) for s in texts]))
                elif which == "tensor" and plugin in ("scalars", ""):
                    arr = _ndarray(v.tensor)
                    if arr.size == 1 and arr.dtype.kind in "fiub":
                        run.rows.append((step, t, v.tag, arr.item() if arr.dtype.kind != "f" else float(arr.item())))
                    elif plugin == "scalars":
                        run.skipped.append(f"tag {v.tag!r} at step {step}: a scalar tensor of shape {arr.shape}")
                elif which is not None:
                    run.skipped.append(f"tag {v.tag!r}: {plugin or which} values are not imported")
            except Exception as e:  # noqa: BLE001 - any failure of the tool becomes a report
                run.skipped.append(f"tag {v.tag!r} at step {step}: unreadable ({type(e).__name__}: {e})")
    run.created = first
    run.ended = last
    run.skipped = _dedupe(run.skipped)
    return run


def _dedupe(lines: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for line in lines:
        seen.setdefault(line, None)
    return list(seen)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Config → TensorBoard hparams: nested keys joined with ``/``; lists as JSON text."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (bool, int, float, str)):
            out[f"{prefix}{k}"] = v
        elif v is not None:
            out[f"{prefix}{k}"] = json.dumps(v)
    return out


def export_run(view: Any, out_dir: Path) -> tuple[Path, list[str]]:
    """Write ``view`` (a RunView) as TensorBoard event files under ``out_dir``; (dir written, notes)."""
    _need("tensorboardX")
    import numpy as np
    import pyarrow.compute as pc
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    from ..format.values import ValueType

    notes: list[str] = []
    rows = view.history(wide=False, format="arrow")
    streams = sorted(set(rows.column("stream").to_pylist())) or ["main"]
    written = out_dir / view.name
    if written.exists() and any(written.rglob(EVENTS_GLOB)):
        raise ConvertError(f"{written} already holds TensorBoard event files; TensorBoard would show both exports "
                           "as one run. Export into another -o directory, or remove that one first")
    for stream in streams:
        target = written if len(streams) == 1 else written / stream
        os.makedirs(target, exist_ok=True)
        mine = rows.filter(pc.equal(rows.column("stream"), stream))
        with SummaryWriter(logdir=str(target)) as w:
            if stream == streams[0] and view.config:
                exp, ssi, sei = hparams(_flat(view.config), {})
                fw = w._get_file_writer()  # into this run's directory: add_hparams would make a subdirectory
                for s in (exp, ssi, sei):
                    fw.add_summary(s)
            steps = mine.column("step").to_pylist()
            times = [t.timestamp() for t in mine.column("time").to_pylist()]
            for step, t, key, vtype, value, text in zip(steps, times, mine.column("key").to_pylist(),
                                                        mine.column("type").to_pylist(),
                                                        mine.column("value").to_pylist(),
                                                        mine.column("text").to_pylist()):
                if vtype in (ValueType.FLOAT, ValueType.INT, ValueType.BOOL):
                    w.add_scalar(key, value, step, walltime=t)
                elif vtype == ValueType.STRING:
                    w.add_text(key, text, step, walltime=t)
            when = {(s, k): t for s, k, t in zip(steps, mine.column("key").to_pylist(), times)}
            for key in view.media_keys():
                for item in view.media(key):
                    if item.stream != stream:
                        continue
                    t = when.get((item.step, key))
                    tag = key if item.index == 0 else f"{key}/{item.index}"
                    if item.kind == "image":
                        arr = np.asarray(item.value)
                        w.add_image(tag, arr, item.step, walltime=t, dataformats="HW" if arr.ndim == 2 else "HWC")
                    elif item.kind == "histogram":
                        h = item.value
                        counts, edges = np.asarray(h.counts, np.float64), np.asarray(h.edges, np.float64)
                        mids = (edges[:-1] + edges[1:]) / 2
                        w.add_histogram_raw(tag, float(edges[0]), float(edges[-1]), float(counts.sum()),
                                            float((counts * mids).sum()), float((counts * mids**2).sum()),
                                            edges[1:].tolist(), counts.tolist(), item.step, walltime=t)
                    elif item.kind == "text":
                        w.add_text(tag, item.value, item.step, walltime=t)
                    else:
                        notes.append(f"{view.id}: {item.kind} media of key {key!r} not exported (TensorBoard "
                                     "has no such kind)")
    return written, _dedupe(notes)
