"""An independent WAL decoder for tests, written from spec §8.2–§8.5 and driven by spec/schema/wal.json:
struct layouts, record kinds, type codes and value sizes come from the JSON, not from runsync.format.
It is deliberately simple (one record at a time, no numpy) so that it can check runsync's Decoder. It stops
a segment at its first damaged record; it does not resynchronise after one (spec §8.5, since 1.3) as runsync does.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "spec" / "schema" / "wal.json").read_text())

_SEG = struct.Struct(SCHEMA["segment"]["header"]["struct"])
_HDR = struct.Struct(SCHEMA["record_header"]["struct"])
_REC = {r["name"]: r for r in SCHEMA["records"]}
_KIND = {r["kind"]: r["name"] for r in SCHEMA["records"]}
_STRUCT = {name: struct.Struct(r["struct"]) for name, r in _REC.items()}
_ITEM = struct.Struct(SCHEMA["schema_item"]["struct"])
_GEN = struct.Struct(SCHEMA["generic_item"]["prefix"]["struct"])
_FIXED = {v["type_code"]: v for v in SCHEMA["fixed_value"]}
_GENERIC_VALUES = {v["type_code"]: v for v in SCHEMA["generic_item"]["value_by_type"]}
_FMT = {"f64": "<d", "i64": "<q", "u8": "<B"}
_START = SCHEMA["segment"]["records_start"]


@dataclass
class Decoded:
    """Rows as (seq, step, time, key, type, value) and META records as (seq, op, time, payload)."""

    rows: list[tuple[int, int, float, str, int, Any]] = field(default_factory=list)
    meta: list[tuple[int, int, float, Any]] = field(default_factory=list)


class ReferenceDecoder:
    """Decodes the segments of one incarnation in segno order (keys, schemas and time floor carry over)."""

    def __init__(self) -> None:
        self.keys: dict[int, str] = {}
        self.schemas: dict[int, list[tuple[int, int]] | None] = {}
        self.floor = float("-inf")
        self.out = Decoded()

    def segment(self, data: bytes) -> None:
        if len(data) < _START or data[:_START] == bytes(_START):
            return
        header = dict(zip((f["name"] for f in SCHEMA["segment"]["header"]["fields"] if f["type"] != "pad"),
                          _SEG.unpack_from(data, 0)))
        assert header["magic"] == SCHEMA["segment"]["header"]["fields"][0]["value"].encode() and header["major"] == 1
        pos = _START
        while pos + _HDR.size <= len(data):
            length, crc = _HDR.unpack_from(data, pos)
            if length == 0:
                return
            if length < 16 or length % 8 or pos + length > len(data):
                return
            body = data[pos + 8 : pos + length]
            if crc and zlib.crc32(body) != crc:
                return
            name = _KIND.get(body[0])
            if name is not None and not self._record(name, data, pos):
                return
            pos += length

    def _floor(self, t: float) -> float:
        self.floor = max(self.floor, t)
        return self.floor

    def _record(self, name: str, data: bytes, pos: int) -> bool:
        st = _STRUCT[name]
        fields = st.unpack_from(data, pos + _REC[name]["struct_offset"])
        body = pos + _REC[name]["struct_offset"] + st.size
        if name == "KEYDEF":
            _kind, key_id, n = fields
            self.keys[key_id] = data[body : body + n].decode("utf-8")
        elif name == "SCHEMA":
            _kind, schema_id, n = fields
            items = [_ITEM.unpack_from(data, body + i * _ITEM.size) for i in range(n)]
            self.schemas[schema_id] = items if all(t in _FIXED for _k, t in items) else None
        elif name == "ROW":
            _kind, schema_id, seq, step, t = fields
            if schema_id not in self.schemas:
                return False  # undefined schema: stop this segment (§8.5)
            items = self.schemas[schema_id]
            if items is None:
                return True  # a schema skipped for an unknown type code: skip the record
            t = self._floor(t)
            p = body
            for key_id, vtype in items:
                fmt = _FMT[_FIXED[vtype]["type"]]
                (v,) = struct.unpack_from(fmt, data, p)
                p += struct.calcsize(fmt)
                self.out.rows.append((seq, step, t, self.keys[key_id], vtype, bool(v) if vtype == 3 else v))
        elif name == "GENERIC":
            _kind, n, seq, step, t = fields
            p = body
            got = []
            for _ in range(n):
                key_id, vtype = _GEN.unpack_from(data, p)
                p += _GEN.size
                spec = _GENERIC_VALUES.get(vtype)
                if spec is None:
                    return True  # unknown type code: the record is skipped whole, no floor move
                if "layout" in spec:
                    (m,) = struct.unpack_from("<I", data, p)
                    v: Any = data[p + 4 : p + 4 + m].decode("utf-8")
                    p += 4 + m
                elif spec["size"] == 0:
                    v = None
                else:
                    fmt = _FMT[spec["type"]]
                    (v,) = struct.unpack_from(fmt, data, p)
                    p += struct.calcsize(fmt)
                    if vtype == 3:
                        v = bool(v)
                got.append((self.keys[key_id], vtype, v))
            t = self._floor(t)
            self.out.rows.extend((seq, step, t, k, vt, v) for k, vt, v in got)
        elif name == "META":
            _kind, op, seq, t, m = fields
            self.out.meta.append((seq, op, t, json.loads(data[body : body + m])))
        return True


def decode_incarnation(paths: list[Path]) -> Decoded:
    dec = ReferenceDecoder()
    for p in sorted(paths):
        dec.segment(p.read_bytes())
    return dec.out
