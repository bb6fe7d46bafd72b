"""One azurite blob server (Microsoft's Azure Storage emulator, a real node.js HTTP server process on 127.0.0.1,
which checks Shared Key signatures) per test process, started lazily.

azurite comes from npm: .ci/run installs it into .ci/node/ (``npm install --prefix .ci/node azurite@3``);
``azurite-blob`` on PATH works too. Used by tests/test_sync_azure.py. Not a test module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_servers import Lazy, die_with_parent, wait_for_port

# The emulator's one well-known account (public, documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_REPO = Path(__file__).resolve().parent.parent
def connection_string(endpoint: str, key: str = ACCOUNT_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={endpoint}/{ACCOUNT};")


@dataclass
class Azurite:
    endpoint: str  # http://127.0.0.1:<port>
    container: str
    proc: subprocess.Popen[bytes] = field(repr=False)
    workdir: Path = field(repr=False)

    @property
    def connection_string(self) -> str:
        return connection_string(self.endpoint)

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"connection_string": self.connection_string}

    def env(self) -> dict[str, str]:
        """Environment under which the CLI's plain ``Remote("az://...")`` reaches the server: adlfs reads
        ``AZURE_STORAGE_CONNECTION_STRING`` (as the az CLI and Azure SDKs do)."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def fresh_url(self, scheme: str = "az") -> str:
        return f"{scheme}://{self.container}/t-{uuid.uuid4().hex[:12]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def executable() -> str | None:
    """``azurite-blob`` from .ci/node (where .ci/run installs it), else from PATH."""
    local = _REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("azurite-blob")


def _start() -> Azurite:
    exe = executable()
    if exe is None:
        raise RuntimeError("azurite is not installed (npm install --prefix .ci/node azurite@3)")
    workdir = Path(tempfile.mkdtemp(prefix="runsync-azurite-"))
    log_path = workdir / "azurite.log"
    with open(log_path, "wb") as log:
        # Port 0: the kernel picks a free port, azurite says which. No telemetry: nothing leaves 127.0.0.1.
        proc = subprocess.Popen(
            [exe, "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence", "--extentMemoryLimit", "512",
             "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)  # noqa: PLW1509
    deadline = time.monotonic() + 30
    port = None
    while port is None:
        said = log_path.read_text(errors="replace")
        m = re.search(r"successfully listens on http://127\.0\.0\.1:(\d+)", said)
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"azurite did not start: {said[-2000:]}")
        else:
            time.sleep(0.05)
    wait_for_port(port, proc, 10.0, "azurite")
    endpoint = f"http://127.0.0.1:{port}"
    from azure.storage.blob import BlobServiceClient

    container = "runsync-test"
    BlobServiceClient.from_connection_string(connection_string(endpoint)).create_container(container)
    return Azurite(endpoint, container, proc, workdir)


_lazy: Lazy[Azurite] = Lazy(_start)
azurite = _lazy.get  # the process's server (started on first use)
stop_azurite = _lazy.stop
