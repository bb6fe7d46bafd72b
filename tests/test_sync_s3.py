"""Syncer conformance against S3: a real moto server on 127.0.0.1 (HTTP, not ``mock_aws``) through s3fs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("moto")
pytest.importorskip("s3fs")

from sync_s3server import MotoS3, moto_s3
from syncer_conformance import RemoteTests


@pytest.fixture(scope="session")
def s3_server() -> MotoS3:
    return moto_s3()


class TestS3(RemoteTests):
    @pytest.fixture
    def remote_url(self, s3_server: MotoS3) -> str:
        return s3_server.fresh_url()  # a unique prefix per test in the one bucket

    @pytest.fixture
    def storage_options(self, s3_server: MotoS3) -> dict[str, Any]:
        return s3_server.storage_options

    @pytest.fixture
    def cli_env(self, s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        """The CLI builds ``Remote(url)`` without storage options: credentials and the endpoint come from
        the environment, as they would from ~/.aws on a user's machine."""
        for k, v in s3_server.env.items():
            monkeypatch.setenv(k, v)
        yield
