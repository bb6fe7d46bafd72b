"""Syncer conformance against SFTP: a real asyncssh SSH server process on 127.0.0.1, through sshfs.

SFTP is not an object store: the syncer writes a temporary name, then renames it over the final one
(sshfs's ``mv`` is the OpenSSH ``posix-rename`` extension, which replaces an existing file atomically).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncssh")
pytest.importorskip("sshfs")

from sync_sftpserver import SFTPServer, sftp_server, stop_sftp_server
from sync_util import make_run
from syncer_conformance import RemoteTests

from runsync.syncer import Remote, push, remote_runs, verify
from runsync.syncer.remote import RemoteSetupError


@pytest.fixture(scope="session")
def sftp() -> Iterator[SFTPServer]:
    yield sftp_server()
    stop_sftp_server()


@pytest.fixture
def ssh_home(sftp: SFTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user whose ``~/.ssh`` holds the authorised key, and no agent or config of the real user's."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    for k, v in sftp.env().items():
        monkeypatch.setenv(k, v)


class TestSFTP(RemoteTests):
    @pytest.fixture
    def remote_url(self, sftp: SFTPServer) -> str:
        return sftp.fresh_url()  # sftp://runsync@127.0.0.1:<port>/t-<unique>

    @pytest.fixture
    def storage_options(self, sftp: SFTPServer) -> dict[str, Any]:
        return sftp.storage_options

    @pytest.fixture
    def cli_env(self, ssh_home: None) -> Iterator[None]:
        """The CLI builds ``Remote(url)`` without storage options: asyncssh logs in with ``~/.ssh/id_ed25519``,
        as ssh would on a user's machine."""
        yield


def _uses_sshfs(url: str, **options: Any) -> bool:
    import fsspec
    import sshfs

    return isinstance(fsspec.core.url_to_fs(url, **options)[0], sshfs.SSHFileSystem)


@pytest.mark.parametrize("scheme", ["sftp", "ssh"])
def test_both_url_forms_reach_sshfs(sftp: SFTPServer, root: Path, scheme: str) -> None:
    """sshfs registers both ``sftp://`` and ``ssh://`` with fsspec (replacing fsspec's paramiko ``sftp``)."""
    url = sftp.fresh_url().replace("sftp://", f"{scheme}://", 1)
    assert _uses_sshfs(url, **sftp.storage_options)
    remote = Remote(url, storage_options=sftp.storage_options)
    assert not remote.atomic_put  # temp name + rename
    make_run(root, "run-a", steps=5)
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1
    assert remote_runs(remote) == ["run-a"] and verify(remote).ok
    rel = remote.root.lstrip("/")
    assert (sftp.root / rel / "run-a" / "manifest.json").is_file()
    assert not [p for p in (sftp.root / rel).rglob("*.tmp")]  # every temporary name was renamed


def test_password_in_url(sftp: SFTPServer, root: Path, ssh_home: None, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``sftp://user:password@host`` logs in with the password (no key anywhere) and is never echoed."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh: the password is the only way in
    url = sftp.fresh_url().replace("runsync@", f"runsync:{sftp.password}@", 1)
    make_run(root, "run-a", steps=5)
    remote = Remote(url)
    assert sftp.password not in remote.display
    res = push(root, remote)
    assert res.failures == [] and res.runs_pushed == 1
    assert verify(remote).ok


def _cli(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runsync.cli", *args], env=env, text=True, capture_output=True,
                          check=False, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


@pytest.mark.parametrize("command", ["push", "verify", "pull"])
def test_wrong_password_fails_fast_without_echoing_it(sftp: SFTPServer, root: Path, tmp_path: Path,
                                                      command: str) -> None:
    secret = "Wr0ngPassw0rd-" + os.urandom(6).hex()
    make_run(root, "run-a", steps=5)
    url = sftp.fresh_url().replace("runsync@", f"runsync:{secret}@", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSYNC_", "SSH_"))}
    env.update(HOME=str(tmp_path), RUNSYNC_SILENT="1")  # no key to fall back on
    argv = {"push": ["push", str(root), url], "verify": ["verify", url],
            "pull": ["pull", url, str(tmp_path / "dest")]}[command]
    rc, out, seconds = _cli(argv, env)
    assert rc != 0, out
    assert seconds < 20, (seconds, out)  # the default policy (8 retries, backoff) is not spent on it
    assert "retrying" not in out
    assert secret not in out, out
    assert "Permission denied" in out and "check the credentials" in out, out
    assert "Traceback" not in out, out


def test_host_key_checked_when_known_hosts_given(sftp: SFTPServer, root: Path, tmp_path: Path) -> None:
    """sshfs checks no host key by default (it passes ``known_hosts=None`` to asyncssh); with ``known_hosts``
    (``-o known_hosts=~/.ssh/known_hosts``) a server whose key changed is refused, once, before anything is sent."""
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sftp.port} {other[0]} {other[1]}\n")
    make_run(root, "run-a", steps=5)
    url = sftp.fresh_url()
    remote = Remote(url, storage_options={"client_keys": [sftp.client_key], "known_hosts": str(wrong)})
    with pytest.raises(RemoteSetupError, match=r"cannot connect: HostKeyNotVerifiable"):
        push(root, remote)
    assert not (sftp.root / url.rsplit("/", 1)[-1]).exists()


def test_host_key_checked_against_the_users_known_hosts_by_default(sftp: SFTPServer, root: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """As ssh does: ``~/.ssh/known_hosts`` is used when no ``known_hosts`` option is given (sshfs alone would
    check nothing); ``-o known_hosts=null`` turns the check off."""
    import asyncssh

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sftp.port} {other[0]} {other[1]}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    make_run(root, "run-a", steps=5)
    url = sftp.fresh_url()
    with pytest.raises(RemoteSetupError, match=r"HostKeyNotVerifiable"):
        push(root, Remote(url, storage_options={"client_keys": [sftp.client_key]}))
    res = push(root, Remote(url, storage_options={"client_keys": [sftp.client_key], "known_hosts": None}))
    assert not res.failures and remote_runs(Remote(url, storage_options=sftp.storage_options)) == ["run-a"]


def test_refused_connection_is_retried_then_reported(tmp_path: Path) -> None:
    """sshfs connects while it is built: a refused connection there is a network error like any other
    (retried with backoff), and after the retries one clear setup error, not a traceback per run."""
    import socket

    from runsync.syncer import RetryPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    said: list[str] = []
    remote = Remote(f"sftp://runsync@127.0.0.1:{port}/runs",
                    policy=RetryPolicy(retries=2, base=0.01, say=said.append))
    with pytest.raises(RemoteSetupError, match=r"cannot connect: .*gave up after 3 attempts"):
        remote.listdir()
    assert len(said) == 2 and all(m.startswith("network error (") for m in said), said
