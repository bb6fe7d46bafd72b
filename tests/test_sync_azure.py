"""Syncer conformance against Azure Blob Storage: azurite (a real HTTP server process on 127.0.0.1, which checks
Shared Key signatures) through adlfs."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_azureserver import ACCOUNT_KEY, Azurite, azurite, connection_string, executable, stop_azurite
from sync_servers import require
from sync_util import make_run

pytest.importorskip("adlfs")
require(executable() is not None, "azurite is not installed (npm install --prefix .ci/node azurite@3; .ci/run does)")

from syncer_conformance import RemoteTests

from runsync.syncer import Remote, push, remote_runs, verify


@pytest.fixture(scope="session")
def az_server() -> Iterator[Azurite]:
    yield azurite()
    stop_azurite()


@pytest.fixture
def az_env(az_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("AZURE_"):
            monkeypatch.delenv(var)
    for k, v in az_server.env().items():
        monkeypatch.setenv(k, v)


class TestAzure(RemoteTests):
    @pytest.fixture
    def remote_url(self, az_server: Azurite) -> str:
        return az_server.fresh_url()  # az://<container>/t-<unique>

    @pytest.fixture
    def storage_options(self, az_server: Azurite) -> dict[str, Any]:
        return az_server.storage_options

    @pytest.fixture
    def cli_env(self, az_env: None) -> Iterator[None]:
        """The CLI builds ``Remote(url)`` without storage options: adlfs reads AZURE_STORAGE_CONNECTION_STRING."""
        yield


def test_abfs_url_form(az_server: Azurite, az_env: None, root: Path) -> None:
    """``abfs://container/path`` (the other spelling users type) reaches the same store, credentials from the
    environment."""
    url = az_server.fresh_url("abfs")
    remote = Remote(url)
    assert remote.atomic_put
    make_run(root, "run-a", steps=5)
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1
    assert remote_runs(remote) == ["run-a"] and verify(remote).ok
    same = Remote(url.replace("abfs://", "az://", 1))
    assert remote_runs(same) == ["run-a"] and verify(same).ok


@pytest.mark.parametrize("command", ["push", "verify", "pull"])
def test_wrong_account_key_fails_fast_without_echoing_it(az_server: Azurite, root: Path, tmp_path: Path,
                                                         command: str) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    assert wrong != ACCOUNT_KEY
    make_run(root, "run-a", steps=5)
    url = az_server.fresh_url()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSYNC_", "AZURE_"))}
    env.update(AZURE_STORAGE_CONNECTION_STRING=connection_string(az_server.endpoint, wrong), RUNSYNC_SILENT="1")
    argv = {"push": ["push", str(root), url], "verify": ["verify", url],
            "pull": ["pull", url, str(tmp_path / "dest")]}[command]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runsync.cli", *argv], env=env, text=True, capture_output=True,
                          check=False, timeout=120)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 20, (seconds, out)  # the default policy (8 retries, backoff) is not spent on it
    assert "retrying" not in out, out
    assert wrong not in out and wrong[:16] not in out, out
    assert "check the credentials" in out, out
    assert "<?xml" not in out and "RequestId" not in out, out  # one line, not the XML body
