"""spec/schema/*.json are the machine-readable form of spec §4.1–§4.2 and §8.2–§8.3: they must say
what runsync.format writes, so they cannot drift from the code again (issue 10 item 9)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from runsync.format import wal
from runsync.format.history import SCHEMA
from runsync.format.layout import PART_RE
from runsync.format.records import Kind, MetaOp
from runsync.format.values import ValueType
from runsync.format.version import FORMAT_MAJOR, FORMAT_MINOR, FORMAT_VERSION

SPEC = Path(__file__).resolve().parents[1] / "spec" / "schema"


def _load(name: str) -> dict[str, Any]:
    return json.loads((SPEC / name).read_text())  # type: ignore[no-any-return]


def _unnamed(pattern: str) -> str:
    return re.sub(r"\?P<[a-z_]+>", "", pattern)


def test_wal_schema_is_what_format_wal_writes() -> None:
    doc = _load("wal.json")
    assert doc["format"] == FORMAT_VERSION
    seg = doc["segment"]
    assert seg["header"]["struct"] == wal.SEGMENT_HEADER.format
    assert seg["header"]["size"] == wal.SEGMENT_HEADER_SIZE == seg["records_start"]
    fields = {f["name"]: f for f in seg["header"]["fields"]}
    assert fields["magic"]["value"].encode() == wal.MAGIC
    assert fields["major"]["value"] == FORMAT_MAJOR
    assert fields["minor"]["value"] == FORMAT_MINOR
    assert fields["synced_off"]["offset"] == wal.SYNCED_OFF_POS
    header = wal.encode_segment_header(3, 7)
    assert wal.decode_segment_header(header + bytes(64 - len(header)))[:2] == (3, 7)
    assert doc["record_header"]["struct"] == wal.HEADER.format
    structs = {"KEYDEF": wal.KEYDEF, "SCHEMA": wal.SCHEMA_PREFIX, "ROW": wal.ROW_PREFIX,
               "GENERIC": wal.GENERIC_PREFIX, "META": wal.META_PREFIX}
    kinds = {n: v for n, v in vars(Kind).items() if n.isupper()}
    assert {r["name"]: r["kind"] for r in doc["records"]} == kinds
    for r in doc["records"]:
        assert r["struct"] == structs[r["name"]].format, r["name"]
        # the fields the struct covers sit where the struct puts them
        offset = r["struct_offset"]
        for f in r["fields"]:
            if isinstance(f["size"], int) and f["offset"] < offset + struct.calcsize(r["struct"]):
                assert f["offset"] >= offset
    assert doc["schema_item"]["struct"] == wal._GEN_ITEM.format == wal.SCHEMA_ITEM.format
    assert doc["generic_item"]["prefix"]["struct"] == wal._GEN_ITEM.format
    fixed = {v["type_code"]: v["size"] for v in doc["fixed_value"]}
    assert fixed == {int(t): struct.calcsize(c) for t, c in wal.VALUE_CODES.items()}
    generic = {v["type_code"]: v["name"] for v in doc["generic_item"]["value_by_type"]}
    assert generic == {int(t): t.name for t in ValueType}, "every type code has a GENERIC encoding (§8.3.4)"
    ops = {o["name"]: o["op"] for o in doc["meta_ops"]}
    assert ops == {n: v for n, v in vars(MetaOp).items() if n.isupper()}


def test_history_schema_is_what_format_history_writes() -> None:
    doc = _load("history.json")
    assert doc["format"] == FORMAT_VERSION
    assert doc["file_name_regex"] == _unnamed(PART_RE.pattern)
    assert doc["file_name_groups"] == list(PART_RE.groupindex)
    cols = [(c["name"], c["arrow_type"], c["nullable"]) for c in doc["columns"]]
    arrow_names = {"double": "float64"}  # the spec spells Arrow's float64 by its name, pyarrow prints "double"
    assert cols == [(f.name, arrow_names.get(str(f.type), str(f.type)), f.nullable) for f in SCHEMA]
    md = {m["key"] for m in doc["key_value_metadata"] if m["required"]}
    assert md == {"runsync.format", "runsync.stream"}
