"""Syncer conformance against fsspec's in-memory filesystem (memory://): an atomic-put object store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from syncer_conformance import RemoteTests


def _clear() -> None:
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")


class TestMemory(RemoteTests):
    @pytest.fixture
    def remote_url(self) -> Iterator[str]:
        _clear()
        yield f"memory://runsync-{uuid.uuid4().hex[:8]}/remote"
        _clear()

    def read_history_stock(self, url: str, storage_options: dict[str, Any] | None, run_id: str) -> pd.DataFrame:
        fs, path = fsspec.core.url_to_fs(f"{url}/{run_id}/history")
        assert isinstance(fs, MemoryFileSystem)
        return pq.read_table(path, filesystem=fs).to_pandas()
