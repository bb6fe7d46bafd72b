"""Syncer conformance against local remotes: a plain path (e.g. a removable drive) and a file:// URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from syncer_conformance import RemoteTests


class TestLocalPath(RemoteTests):
    @pytest.fixture
    def remote_url(self, tmp_path: Path) -> str:
        return str(tmp_path / "remote")


class TestFileURL(RemoteTests):
    @pytest.fixture
    def remote_url(self, tmp_path: Path) -> str:
        return (tmp_path / "remote-url").as_uri()
