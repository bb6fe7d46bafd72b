"""One asyncssh SFTP server (a real SSH server process on 127.0.0.1) per test process, started lazily.

Used by tests/test_sync_sftp.py. Not a test module. Run as a script it *is* the server: it serves
SFTP (no shell, no exec) chrooted to ``--root`` for one user, who logs in with a password or the
one authorised key, prints ``PORT <n>`` once listening, and exits when its standard input closes
(so a killed pytest never leaves it behind).

The client side is what a user has: ``sftp://runsync@127.0.0.1:<port>/<path>`` through sshfs
(fsspec's ``sftp`` and ``ssh`` protocols once sshfs is installed), with the key in ``~/.ssh``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_servers import Lazy, wait_for_port

USER = "runsync"

@dataclass
class SFTPServer:
    port: int
    base: Path  # root/ (the chroot), home/ (a user's home: ~/.ssh), keys
    password: str
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def root(self) -> Path:
        """The server's filesystem as the client sees it at ``/``."""
        return self.base / "root"

    @property
    def home(self) -> Path:
        """A home directory with ``~/.ssh/id_ed25519`` (the authorised key) and ``~/.ssh/known_hosts``."""
        return self.base / "home"

    @property
    def client_key(self) -> str:
        return str(self.home / ".ssh" / "id_ed25519")

    @property
    def known_hosts(self) -> str:
        return str(self.home / ".ssh" / "known_hosts")

    @property
    def storage_options(self) -> dict[str, Any]:
        """sshfs (asyncssh.connect) options: this key only, and the server's host key checked."""
        return {"client_keys": [self.client_key], "known_hosts": self.known_hosts}

    def env(self) -> dict[str, str]:
        """Environment under which a plain ``Remote("sftp://runsync@127.0.0.1:<port>/...")`` (as the CLI builds
        it) logs in: asyncssh finds ``~/.ssh/id_ed25519`` by itself, as on a user's machine."""
        return {"HOME": str(self.home)}

    def url(self, path: str = "", *, scheme: str = "sftp", password: str | None = None) -> str:
        cred = USER if password is None else f"{USER}:{password}"
        return f"{scheme}://{cred}@127.0.0.1:{self.port}/{path.lstrip('/')}"

    def fresh_url(self) -> str:
        return self.url(f"t-{uuid.uuid4().hex[:12]}")

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for f in (proc.stdin, proc.stdout):
        if f:
            f.close()


def _start() -> SFTPServer:
    import asyncssh

    base = Path(tempfile.mkdtemp(prefix="runsync-sftp-"))
    (base / "root").mkdir()
    ssh_dir = base / "home" / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(base / "host_key"))
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(ssh_dir / "id_ed25519"))
    client_key.write_public_key(str(ssh_dir / "id_ed25519.pub"))
    os.chmod(ssh_dir / "id_ed25519", 0o600)
    password = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, __file__, "--root", str(base / "root"), "--host-key", str(base / "host_key"),
         "--authorized-key", str(ssh_dir / "id_ed25519.pub"), "--user", USER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=base)
    assert proc.stdin and proc.stdout
    proc.stdin.write(password.encode() + b"\n")  # not on the command line (ps shows that)
    proc.stdin.flush()
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "PORT":
        _stop(proc)
        raise RuntimeError(f"the SFTP server did not start (said {line!r})")
    port = int(line[1])
    wait_for_port(port, proc, 10.0, "the SFTP server")
    host_pub = host_key.export_public_key("openssh").decode().split()
    (ssh_dir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    return SFTPServer(port, base, password, proc)


# ---------------------------------------------------------------------- the server process


def _serve(args: argparse.Namespace) -> None:
    import asyncio

    import asyncssh

    password = sys.stdin.readline().strip()
    authorized = asyncssh.read_public_key(args.authorized_key)
    root = os.path.realpath(args.root).encode()

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True  # every user must authenticate

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, pw: str) -> bool:
            return username == args.user and pw == password

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_public_key(self, username: str, key: Any) -> bool:
            return username == args.user and key == authorized

    async def main() -> None:
        listener = await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[args.host_key], server_factory=Server,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root), allow_scp=False)
        port = listener.get_port()
        print(f"PORT {port}", flush=True)
        # Serve until the parent closes our stdin (or dies).
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        listener.close()

    asyncio.run(main())


_lazy: Lazy[SFTPServer] = Lazy(_start)
sftp_server = _lazy.get  # the process's server (started on first use)
stop_sftp_server = _lazy.stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", required=True)
    ap.add_argument("--host-key", required=True)
    ap.add_argument("--authorized-key", required=True)
    ap.add_argument("--user", default=USER)
    _serve(ap.parse_args())
