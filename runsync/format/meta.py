"""JSON documents of a run (spec §3, §6, §7): run.json, claims, status, config, summary.

Each document is a dataclass whose field names are the JSON names in the spec.
``parse_*`` functions raise a precise FormatError; unknown fields are ignored
(spec §1.2), so newer minor versions stay readable.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .atomic import publish_exclusive, write_atomic
from .errors import CorruptFileError, NotARunError
from .records import MetaOp
from .values import ValueType
from .version import FORMAT_VERSION, check_version

if TYPE_CHECKING:  # the WAL decoder needs numpy; documents (and the syncer) do not
    from .wal import Columns, MetaRecord

__all__ = [
    "RunInfo",
    "ResumeHint",
    "Claim",
    "Status",
    "ConfigDoc",
    "SummaryDoc",
    "State",
    "Durability",
    "read_json",
    "dump_json",
    "load_doc",
    "parse_doc",
    "same_run",
    "describe_run",
    "save_doc",
    "publish_doc",
    "deep_update",
    "json_safe",
    "governing_metric",
]

T = TypeVar("T")


class State:
    """Stream and run states (spec §7.1)."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CRASHED = "crashed"  # derived by readers; written only into pushed copies (spec §7.1, §12.4; since 1.3)


@dataclass
class RunInfo:
    """``run.json`` (spec §3): identity of a run; written once, never modified."""

    id: str
    name: str
    project: str
    created: float
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    entity: str | None = None  # since 1.3
    # since 1.3 (spec §3.1): where an imported run came from — {"kind", "uri", "id"}; None for runs logged here
    source: dict[str, Any] | None = None
    format: str = FORMAT_VERSION


@dataclass
class ResumeHint:
    """``<root>/.resume/<key>.json`` (spec §2.1, since 1.3): the run that ``init(resume="auto")`` without an id,
    started again from the same working directory and script, continues. Writer-local; readers ignore it."""

    id: str
    cwd: str
    script: str
    time: float
    format: str = FORMAT_VERSION


@dataclass
class Claim:
    """``streams/<s>/claim.<inc>.json`` (spec §6.1): who writes an incarnation."""

    stream: str
    incarnation: int
    host: str
    boot_id: str
    pid: int
    pid_start: float
    time: float
    first_seq: int
    heartbeat_interval: float
    time_floor: float = float("-inf")
    # Where this incarnation's WAL segments live when not in the stream directory: an absolute
    # path on the writer host's local disk (spec §6.1, §8.5; since 1.3). None: the stream directory.
    wal_dir: str | None = None
    format: str = FORMAT_VERSION


class Durability:
    """How a stream's WAL held records (spec §7.2 ``durability``, §9.4; since 1.3), weakest last."""

    MAPPED = "mapped"  # preallocated MAP_SHARED segments: a kill -9 loses nothing log() returned from
    APPEND = "append"  # the filesystem cannot map files: appended each flush, ~flush_interval at risk
    MEMORY = "memory"  # in-memory fallback segments (full disk): lost on a kill
    ORDER = (MAPPED, APPEND, MEMORY)

    @classmethod
    def weakest(cls, a: str, b: str) -> str:
        rank = {m: i for i, m in enumerate(cls.ORDER)}
        return a if rank.get(a, 0) >= rank.get(b, 0) else b


@dataclass
class Status:
    """``streams/<s>/status.json`` (spec §7.2): state and heartbeat of the latest incarnation."""

    stream: str
    incarnation: int
    state: str
    host: str
    boot_id: str
    pid: int
    pid_start: float
    started: float
    heartbeat: float
    heartbeat_interval: float
    ended: float | None = None
    exit_code: int | None = None
    last_seq: int = -1
    last_step: int = -1
    dropped_rows: int = 0
    error: str | None = None
    # The weakest WAL mode (Durability) this incarnation used so far (since 1.3); None: not recorded.
    durability: str | None = None
    format: str = FORMAT_VERSION


@dataclass
class ConfigDoc:
    """``streams/<s>/config.json`` (spec §3.2): the stream's config, applied up to ``applied_seq``.

    ``metrics`` (since 1.3) holds the ``define_metric()`` definitions (DEFINE_METRIC
    records, §8.3.5) by name; a later definition of a name replaces the earlier one.
    """

    config: dict[str, Any] = field(default_factory=dict)
    applied_seq: int = -1
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT_VERSION

    def apply(self, records: list[MetaRecord]) -> None:
        for r in records:
            if r.seq <= self.applied_seq:
                continue
            if r.op == MetaOp.CONFIG_UPDATE:
                deep_update(self.config, r.payload)
                self.applied_seq = r.seq
            elif r.op == MetaOp.DEFINE_METRIC and isinstance(r.payload, dict) and \
                    isinstance(r.payload.get("name"), str):
                self.metrics[r.payload["name"]] = copy.deepcopy(r.payload)
                self.applied_seq = r.seq


def governing_metric(metrics: Mapping[str, Any], key: str) -> Any | None:
    """The metric definition (spec §3.2, since 1.3) that governs ``key``: the one named ``key``, else the
    longest glob that matches it (on equal length, the greatest in byte order); None if none does."""
    exact = metrics.get(key)
    if exact is not None:
        return exact
    best: str | None = None
    for name in metrics:
        if any(c in name for c in "*?[") and fnmatch.fnmatchcase(key, name):
            if best is None or (len(name), name.encode("utf-8", "surrogatepass")) > \
                    (len(best), best.encode("utf-8", "surrogatepass")):
                best = name
    return metrics[best] if best is not None else None


@dataclass
class SummaryDoc:
    """``streams/<s>/summary.json`` (spec §3.3).

    ``values`` holds the last logged value of each key unless the key is in
    ``manual`` (set by hand), which log() never overwrites. ``time`` is when each
    value was set; readers merging streams take the first stream in reader order (spec §3.3).
    """

    values: dict[str, Any] = field(default_factory=dict)
    manual: list[str] = field(default_factory=list)
    time: dict[str, float] = field(default_factory=dict)
    applied_seq: int = -1
    format: str = FORMAT_VERSION

    def apply(self, cols: Columns) -> None:
        """Apply decoded rows and META records, in seq order, above ``applied_seq``."""
        manual = set(self.manual)
        events: list[tuple[int, int, str, float, Any, bool]] = []
        for key, chunks in cols.chunks.items():
            best = None
            for vtype, _steps, times, seqs, values in chunks:
                i = len(seqs) - 1
                if seqs[i] <= self.applied_seq:
                    continue
                if best is None or seqs[i] > best[0]:
                    best = (int(seqs[i]), float(times[i]), _scalar(vtype, values, i))
            if best is not None:
                events.append((best[0], 1, key, best[1], best[2], False))
        for r in cols.meta:
            if r.seq <= self.applied_seq or r.op not in (MetaOp.SUMMARY_SET, MetaOp.SUMMARY_DELETE):
                continue
            value = _DELETE if r.op == MetaOp.SUMMARY_DELETE else r.payload.get("value")
            events.append((r.seq, 0, r.payload["key"], r.time, value, True))
        for _seq, _, key, t, value, by_hand in sorted(events, key=lambda e: (e[0], e[1])):
            if by_hand:
                if value is _DELETE:
                    self.values.pop(key, None)
                    self.time.pop(key, None)
                    manual.discard(key)
                else:
                    self.values[key] = value
                    self.time[key] = t
                    manual.add(key)
            elif key not in manual:
                self.values[key] = value
                self.time[key] = t
        self.manual = sorted(manual)
        self.applied_seq = max(self.applied_seq, cols.max_seq)


_DELETE = object()


def _scalar(vtype: int, values: Any, i: int) -> Any:
    if vtype == ValueType.NULL:
        return None
    v = values[i]
    if type(v).__module__ == "numpy":  # numpy scalars from decoded columns
        return v.item()
    return v


def deep_update(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    """Merge ``src`` into ``dst``: nested dicts merge key by key, anything else replaces (spec §3.2)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_update(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def dump_json(obj: Any) -> bytes:
    """Documents are UTF-8 JSON; non-finite floats as NaN/Infinity tokens (spec §3.4)."""
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True, ensure_ascii=False) + "\n").encode("utf-8")


def read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CorruptFileError(f"cannot read ({e.strerror})", path) from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"invalid JSON ({e})", path) from None


def load_doc(cls: type[T], path: Path) -> T:
    """Read and validate a document; a missing run.json means 'not a run'."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        if cls is RunInfo:
            raise NotARunError("no run.json: not a runsync run directory", path.parent) from None
        raise
    return _doc(cls, data, path)


def parse_doc(cls: type[T], raw: bytes, where: str | Path) -> T:
    """A document from its bytes (e.g. fetched from a remote), validated as ``load_doc`` does."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"invalid JSON ({e})", where) from None
    return _doc(cls, data, where)


def same_run(a: RunInfo, b: RunInfo) -> bool:
    """Whether two run.json documents are the same run (spec §12.6): equal ``id`` and ``created``.
    Ids are chosen by people and repeat; the creation time is written once, when the run starts."""
    return bool(a.id == b.id and a.created == b.created)


def describe_run(info: RunInfo) -> str:
    """``'name' (project P, created 2026-01-02T03:04:05.678901+00:00)``: a run as a person tells runs apart."""
    import datetime

    try:
        when = datetime.datetime.fromtimestamp(float(info.created), datetime.timezone.utc).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        when = repr(info.created)
    return f"{info.name!r} (project {info.project!r}, created {when})"


def _doc(cls: type[T], data: Any, path: str | Path) -> T:
    if not isinstance(data, dict):
        raise CorruptFileError(f"expected a JSON object, got {type(data).__name__}", path)
    check_version(data.get("format", "1.0"), path)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as e:
        raise CorruptFileError(f"missing or invalid fields ({e})", path) from None


def save_doc(doc: Any, path: Path, durable: bool = True, tmp_dir: Path | None = None) -> None:
    """Replace the document at ``path`` (spec §2.3); ``tmp_dir``: the run's ``.tmp/``."""
    write_atomic(path, dump_json(asdict(doc)), durable=durable, tmp_dir=tmp_dir)


def publish_doc(doc: Any, path: Path, tmp_dir: Path | None = None) -> bool:
    """Exclusively create the document at ``path`` (spec §2.3); ``tmp_dir``: the run's ``.tmp/``."""
    return publish_exclusive(path, dump_json(asdict(doc)), tmp_dir=tmp_dir)


def json_safe(value: Any) -> Any:
    """Config values → JSON-representable values (numpy scalars to Python)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        return json_safe(item())
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return json_safe(tolist())
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"config value of type {type(value).__name__} is not JSON-serialisable: {value!r}")
