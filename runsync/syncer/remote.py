"""A remote is any fsspec URL: a handful of primitives, retries, and safe messages.

The core never branches on the protocol; what differs between backends is
captured here as capability flags (whether a rename is atomic, so uploads go to
a temporary name first).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .._logging import get_logger, quiet_network_noise
from ..format.atomic import tmp_name
from ..format.errors import RunsyncError
from . import s3_multipart
from .credentials import connect_options
from .errors import RemoteError, RemoteSetupError

__all__ = ["Remote", "RemoteError", "RemoteSetupError", "redact", "RetryPolicy"]

T = TypeVar("T")

# Backends whose put is atomic per object (no partial object is ever visible).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})
_INSTALL_HINT = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
                 "abfss": "azure", "sftp": "sftp", "ssh": "sftp", "http": "http", "https": "http"}
_READ_ONLY = frozenset({"http", "https"})  # fsspec's HTTP filesystem cannot write, rename or delete
_TRANSIENT_ERRNO = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EHOSTUNREACH,
                    errno.ENETUNREACH, errno.ECONNABORTED, errno.EAGAIN,
                    errno.EREMOTEIO, errno.EBUSY}  # s3fs's 500 InternalError and 503 SlowDown
_TRANSIENT_TEXT = re.compile(r"SlowDown|Throttl|TooManyRequests|RequestTimeout|InternalError|ServiceUnavailable|"
                             r"\b50[0234]\b|Connection (reset|refused|aborted)|timed? ?out|EndpointConnectionError|"
                             r"ConnectionClosedError|Server disconnected|ServerDisconnectedError",
                             re.IGNORECASE)
_PERMANENT_TEXT = re.compile(r"AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|"
                             r"\b40[13]\b|Forbidden|Unauthorized|ExpiredToken|InvalidToken|"
                             # Azure Blob (a wrong account key, SAS or role; azure-core's 401/403 type)
                             r"AuthenticationFailed|AuthorizationFailure|AuthorizationPermissionMismatch|"
                             r"ClientAuthenticationError|"
                             # Google's token endpoint refusing a key (revoked, deleted, clock skew)
                             r"invalid_grant|RefreshError", re.IGNORECASE)


_log = get_logger("syncer")

def env_storage_options() -> dict[str, Any]:
    """``$RUNSYNC_STORAGE_OPTIONS``: a JSON object of fsspec options for remotes (e.g. an endpoint)."""
    raw = os.environ.get("RUNSYNC_STORAGE_OPTIONS")
    if not raw:
        return {}
    try:
        opts = json.loads(raw)
    except ValueError as e:
        raise RunsyncError(f"RUNSYNC_STORAGE_OPTIONS is not valid JSON ({e})") from None
    if not isinstance(opts, dict):
        raise RunsyncError("RUNSYNC_STORAGE_OPTIONS must be a JSON object")
    return opts



def redact(url: str) -> str:
    """``url`` without user:password (safe to print or store)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def is_transient(e: BaseException) -> bool:
    """Worth retrying? Backends translate their errors (s3fs turns a 500 InternalError into
    OSError(EREMOTEIO), a 503 SlowDown into OSError(EBUSY)); the original travels as the cause, and
    is consulted when the translation alone does not tell."""
    if isinstance(e, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(e).__name__}: {e}"
    if _PERMANENT_TEXT.search(text):
        return False
    if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
        return True
    if _TRANSIENT_TEXT.search(text):
        return True
    cause = e.__cause__
    return cause is not None and cause is not e and is_transient(cause)


@dataclass
class RetryPolicy:
    retries: int = 8
    timeout: float = 300.0  # give up on one operation after this many seconds of retrying
    base: float = 0.5
    cap: float = 30.0
    say: Callable[[str], None] = lambda msg: _log.warning(f"runsync: {msg}")
    # A remote this command has never reached (connection refused, name not found on its first requests)
    # gives up after this many seconds, naming the endpoint; an outage in the middle of a push keeps `timeout`.
    first_contact: float = 30.0
    endpoint: str = ""  # where requests go (a URL's host, an S3 endpoint_url), for messages; set by Remote
    local: bool = False  # a path on this machine: its errors get local advice, not credentials advice
    reached: bool = False  # some request of this command got an answer

    def run(self, what: str, fn: Callable[[], T], secret: str = "", contact: bool = True) -> T:
        """``fn()`` with retries of transient errors; ``contact``: a success means a server answered (not
        so for building a filesystem object, which sends nothing)."""
        start: float | None = None  # of the retrying: a long transfer that fails late still gets its retries
        attempt = 0
        while True:
            try:
                out = fn()
                self.reached = self.reached or contact
                return out
            except Exception as e:
                attempt += 1
                start = time.monotonic() if start is None else start
                msg = _describe(e, secret)
                if not is_transient(e):
                    raise RemoteError(f"{what}: {msg}{_hint(e, self.local)}") from None
                where = f" reaching {self.endpoint}" if self.endpoint else ""
                delay = min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + random.random())
                elapsed = time.monotonic() - start
                never = not self.reached and _unreachable(e)
                budget = min(self.timeout, self.first_contact) if never else self.timeout
                if attempt > self.retries or elapsed + delay > budget:
                    if never:
                        raise RemoteError(
                            f"{what}: {msg} (gave up after {attempt} attempts) — never reached "
                            f"{self.endpoint or 'the remote'} in {elapsed:.0f} s: check the host and port (in the URL, or for an S3-compatible "
                            "server -o client_kwargs.endpoint_url=... or $AWS_ENDPOINT_URL), that the server is up, "
                            "and that this machine has a route to it") from None
                    raise RemoteError(f"{what}: {msg} (gave up after {attempt} attempts)") from None
                self.say(f"network error ({type(e).__name__}){where}, retrying in {delay:.0f} s (attempt {attempt}; "
                         f"gives up in {max(0.0, budget - elapsed - delay):.0f} s)")
                time.sleep(delay)


def _describe(e: BaseException, secret: str) -> str:
    """The error as text, with every trace of the URL's credentials removed."""
    text = f"{type(e).__name__}: {e}"
    if secret:
        text = text.replace(secret, redact(secret))
        try:
            parts = urlsplit(secret)
            for s in (parts.password, parts.username and parts.password and f"{parts.username}:{parts.password}"):
                if s:
                    text = text.replace(s, "***")
        except ValueError:
            pass
    return _one_line(re.sub(r"://[^/@\s]+:[^/@\s]+@", "://", text))


_NOISE_LINE = re.compile(r"^(RequestId|Time):")


def _one_line(text: str) -> str:
    """A service's multi-line error (Azure's repeats itself as an XML body, with request ids and times)
    as one line a person reads: the message and its error code."""
    text = text.split("\nContent:", 1)[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE_LINE.match(ln.strip())]
    return "; ".join(lines)


_UNREACHABLE_TEXT = re.compile(r"connection refused|could not connect|cannot connect|name or service not known|"
                               r"nodename nor servname|temporary failure in name resolution|no route to host|"
                               r"network is unreachable|getaddrinfo|EndpointConnectionError", re.I)


def _unreachable(e: BaseException) -> bool:
    """Did the request fail before any server answered (refused, no such host, no route)?"""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError) or _UNREACHABLE_TEXT.search(f"{type(e).__name__}: {e}"):
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def _hint(e: BaseException, local: bool = False) -> str:
    if "HostKeyNotVerifiable" in f"{type(e).__name__}: {e}" or "Host key is not trusted" in str(e):
        return (" — the server's host key is not in your known_hosts files: check it, then add it (ssh-keyscan -p "
                "PORT HOST >> ~/.ssh/known_hosts), or pass -o known_hosts=PATH (-o known_hosts=null: no check)")
    if isinstance(e, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
        return (" — TLS certificate verification failed; if your site uses its own CA, point "
                "REQUESTS_CA_BUNDLE / SSL_CERT_FILE (and AWS_CA_BUNDLE for S3) at its certificate bundle")
    if local and isinstance(e, (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)):
        return (" — this is a local path: check that the directory exists (or can be created) and that its "
                "permissions let this user write there")
    if _PERMANENT_TEXT.search(str(e)) or isinstance(e, PermissionError):
        return " — check the credentials and permissions configured for this backend"
    return ""


_BUCKET_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl")


def _endpoint(url: str, options: dict[str, Any]) -> str:
    """Where a remote's requests go, for messages: an endpoint_url if one is configured, else the URL's host."""
    client = options.get("client_kwargs") if isinstance(options.get("client_kwargs"), dict) else {}
    configured = client.get("endpoint_url") or options.get("endpoint_url")
    if not configured and url.startswith(("s3://", "s3a://")):
        configured = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if configured:
        return redact(str(configured))
    if "://" not in url or url.startswith(("file://", "memory://")):
        return ""
    if url.split("://", 1)[0] in _BUCKET_SCHEMES:
        return ""  # the URL names a bucket or container, not a host: the service's default endpoint
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if host and parts.port else host


class Remote:
    """A root URL on some filesystem, with the few operations the syncer needs."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, policy: RetryPolicy | None = None):
        self.url = url
        self.display = redact(url)
        self.policy = policy or RetryPolicy()
        self._options = dict(storage_options or {})
        self._fs: Any = None
        self._connecting = threading.Lock()
        if "://" not in url:  # a plain path: absolute now, connected (fsspec imported) on first use
            self.url = os.path.abspath(url)
        self.policy.local = "://" not in url or url.startswith("file://")
        self.policy.endpoint = _endpoint(self.url, self._options)

    def _connect(self) -> None:
        """Build the fsspec filesystem on first use: a push with nothing to send never imports
        a backend (s3fs and friends take a noticeable time to import)."""
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        protocol = urlsplit(self.url).scheme if "://" in self.url else "file"
        quiet_network_noise()  # orphaned aiohttp task errors after a network drop: runsync reports the retry
        options = dict(self._options)
        options.update(connect_options(protocol, self.display, options,
                                       lambda what, fn: self.policy.run(what, fn, self.url),
                                       url_credentials="@" in urlsplit(self.url).netloc))

        def build() -> tuple[Any, str] | BaseException:
            try:
                return fsspec.core.url_to_fs(self.url, **options)  # type: ignore[no-any-return]
            except (ImportError, ValueError) as e:  # not a network error: said once, below
                return e
        try:
            # A backend that logs in when built (sshfs) meets the network here: a refused or reset
            # connection is retried like any transfer; a wrong password or host key is not.
            built = self.policy.run("connect", build, self.url, contact=False)
        except RemoteError as e:
            raise RemoteSetupError(f"{self.display}: cannot {e}") from None
        if isinstance(built, ImportError):
            extra = _INSTALL_HINT.get(protocol)
            hint = f"pip install 'runsync[{extra}]'" if extra else f"install the fsspec backend for {protocol}://"
            raise RemoteSetupError(f"{self.display}: no filesystem for {protocol}:// ({built}); {hint}")
        if isinstance(built, BaseException):
            raise RemoteSetupError(f"{self.display}: {_describe(built, self.url)}")
        fs, root = built
        self._root = root.rstrip("/") or root
        self._local = isinstance(fs, LocalFileSystem)
        self._connected = fs  # what tests may wrap (remote.fs = ...) is not the filesystem connected here
        protos = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self._atomic_put = any(p in _OBJECT_STORES for p in protos)
        # fsspec's memory filesystem hands every reader the one stored file object (and its position):
        # concurrent reads there go through cat_file, which copies.
        self._shared_handles = "memory" in protos
        # S3 files over one part go through s3_multipart (a window of parts with checksums, as aws s3 cp)
        self._s3 = "s3" in protos and hasattr(fs, "_call_s3")
        self._fs = fs

    @property
    def fs(self) -> Any:
        if self._fs is None:
            with self._connecting:  # worker threads may all ask first: one connection, one login
                if self._fs is None:
                    self._connect()
        return self._fs

    @fs.setter
    def fs(self, value: Any) -> None:  # tests wrap the filesystem
        self.fs  # noqa: B018 - connects
        self._fs = value

    @property
    def root(self) -> str:
        self.fs  # noqa: B018 - connects
        return self._root

    @property
    def local(self) -> bool:
        self.fs  # noqa: B018
        return self._local

    @property
    def atomic_put(self) -> bool:
        self.fs  # noqa: B018
        return self._atomic_put

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        self.fs  # noqa: B018 - connect outside the retry loop: a setup error is not retried
        return self.policy.run(f"{what} ({self.display})", fn, self.url)

    def read(self, rel: str) -> bytes | None:
        """Bytes of ``rel``, or None if it does not exist."""
        def op() -> bytes | None:
            try:
                return self.fs.cat_file(self.path(rel))  # type: ignore[no-any-return]
            except FileNotFoundError:
                return None
        return self._run(f"read {rel}", op)

    def exists(self, rel: str) -> bool:
        return self._run(f"check {rel}", lambda: bool(self.fs.exists(self.path(rel))))

    def size(self, rel: str) -> int | None:
        def op() -> int | None:
            try:
                return int(self.fs.size(self.path(rel)))
            except FileNotFoundError:
                return None
        return self._run(f"stat {rel}", op)

    def check_root(self) -> None:
        """Raise a clear error if the remote root (directory, bucket, prefix) does not exist."""
        if self._run("check the remote", lambda: bool(self.fs.exists(self.root))):
            return
        if self.read_only:  # HTTP's exists() is False on any error: ask again to learn which
            try:
                self.fs.cat_file(self.root.rstrip("/") + "/")  # the directory's index page
            except FileNotFoundError:
                pass
            except Exception as e:
                raise RemoteError(f"{self.display}: cannot read the remote ({_describe(e, self.url)}); is the "
                                  "server up, and does it list directories?") from None
        raise RemoteError(f"{self.display}: no such directory or bucket (nothing was pushed here yet, "
                          "or the name is wrong)")

    @property
    def read_only(self) -> bool:
        return urlsplit(self.url).scheme in _READ_ONLY if "://" in self.url else False

    def check_writable(self) -> None:
        """Refuse a push to a remote that cannot be written (HTTP), before anything is sent."""
        if self.read_only:
            raise RemoteSetupError(f"{self.display}: HTTP remotes are read-only (runsync reads, pulls and verifies "
                                   "them); push to the directory, NAS, bucket or SFTP server the web server serves")

    def listdir(self, rel: str = "") -> list[str]:
        """Names directly under ``rel`` (empty if it does not exist)."""
        def op() -> list[str]:
            target = self.path(rel) if rel else self.root
            # Never a cached listing: adlfs forgets only a written file's parent's listing, so a listing
            # taken before a push would lack the run directories the push created.
            self.fs.invalidate_cache(target)
            try:
                entries = self.fs.ls(target, detail=False)
            except FileNotFoundError:
                return []
            finally:
                # and none left behind: s3fs lists the parent (the bucket) when a prefix is empty, and that
                # cached listing would later hide the prefix this push creates from exists() (check_root)
                self.fs.invalidate_cache(target)
            return sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries})
        return self._run(f"list {rel or '/'}", op)

    def write(self, rel: str, data: bytes) -> None:
        """Write ``data`` at ``rel`` so that no reader ever sees a partial file."""
        self._put(rel, lambda target: self.fs.pipe_file(target, data))

    def write_stream(self, rel: str, fileobj: Any) -> None:
        """Write from a file object (read once; not retried after a partial read)."""
        import shutil

        def put(target: str) -> None:
            with self.fs.open(target, "wb") as out:
                shutil.copyfileobj(fileobj, out, 1 << 20)
        self._put(rel, put)

    def upload(self, local_path: str, rel: str, progress: Callable[[int], None] | None = None) -> None:
        """Send a local file to ``rel``; ``progress(n)`` hears how many of its bytes have arrived so far
        (from 0 again if the upload is retried)."""
        say = progress or (lambda n: None)

        def put(target: str) -> None:
            fs = self.fs
            own = fs is self._connected  # not wrapped: its own upload paths apply
            say(0)
            if own and self._s3 and os.path.getsize(local_path) > s3_multipart.PART_SIZE:
                s3_multipart.upload(fs, local_path, target, progress=say, transient=is_transient)
            elif own and self._local:
                _copy_file(local_path, target, say)
            else:
                fs.put_file(local_path, target, callback=_callback(say))
        self._put(rel, put)

    def _put(self, rel: str, put: Callable[[str], Any]) -> None:
        final = self.path(rel)
        parent = final.rsplit("/", 1)[0]

        def op() -> None:
            if not self.atomic_put:
                self.fs.makedirs(parent, exist_ok=True)
            if self.atomic_put:
                put(final)
                return
            tmp = str(tmp_name(PurePosixPath(final)))
            try:
                put(tmp)
                self.fs.mv(tmp, final)
            except BaseException:
                try:
                    self.fs.rm_file(tmp)
                except Exception:
                    pass
                raise
        self._run(f"write {rel}", op)

    def download(self, rel: str, local_path: str, progress: Callable[[int], None] | None = None) -> None:
        """Fetch ``rel`` into a local file; ``progress(n)`` as in ``upload``."""
        say = progress or (lambda n: None)

        def op() -> None:
            fs = self.fs
            say(0)
            if self._shared_handles:
                with open(local_path, "wb") as out:
                    say(out.write(fs.cat_file(self.path(rel))))
            elif fs is self._connected and self._local:
                _copy_file(self.path(rel), local_path, say)
            else:
                fs.get_file(self.path(rel), local_path, callback=_callback(say))
        self._run(f"read {rel}", op)

    def open(self, rel: str, **kw: Any) -> Any:
        """A binary file object reading ``rel`` (its own, even where the backend shares handles)."""
        fs = self.fs
        if self._shared_handles:
            import io

            return io.BytesIO(fs.cat_file(self.path(rel)))
        return fs.open(self.path(rel), "rb", **kw)

    def sha256(self, rel: str) -> str | None:
        """Content hash of a remote file (downloads it), or None if absent."""
        got = self.digest(rel)
        return None if got is None else got[0]

    def digest(self, rel: str) -> tuple[str, int] | None:
        """(content hash, size) of a remote file, from one read of it; None if absent."""
        from ..format.manifest import sha256_file

        def op() -> tuple[str, int] | None:
            try:
                # HTTP: one streamed GET (a server without Range support cannot serve blocks)
                kw = {"block_size": 0} if self.read_only else {}
                with self.open(rel, **kw) as f:
                    return sha256_file(f)
            except FileNotFoundError:
                return None
        return self._run(f"hash {rel}", op)

    def refuse_link(self, rel: str) -> None:
        """On a local-path remote, refuse ``rel`` if it or a directory above it (below the root) is a
        symbolic link: a pushed copy holds none, and following one would read files outside the remote
        (spec §12.6). Other backends have no links to follow."""
        if not self.local:
            return
        path = self.root
        for part in rel.split("/"):
            path = os.path.join(path, part)
            if os.path.islink(path):
                from ..format.errors import CorruptFileError

                raise CorruptFileError(f"{rel}: {os.path.relpath(path, self.root)} is a symbolic link; runsync "
                                       "does not follow links in a remote (replace it with the file itself)",
                                       self.display)

    def files(self, rel: str) -> dict[str, int]:
        """Regular files directly under ``rel`` → their sizes (empty if it does not exist); one listing."""
        def op() -> dict[str, int]:
            target = self.path(rel)
            self.fs.invalidate_cache(target)
            try:
                entries = self.fs.ls(target, detail=True)
            except FileNotFoundError:
                return {}
            out = {}
            for e in entries:
                name = str(e.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
                if e.get("type") == "file" and name:
                    out[name] = int(e.get("size") or 0)
            return out
        return self._run(f"list {rel}", op)

    def move(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``, replacing it: a rename on filesystems, a server-side copy (then a
        delete) on object stores; either way no reader sees a partial ``dst``."""
        def op() -> None:
            if not self.atomic_put:
                self.fs.makedirs(self.path(dst).rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(self.path(src), self.path(dst))
        self._run(f"move {src} to {dst}", op)

    def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` on the remote (server-side on object stores), replacing it."""
        def op() -> None:
            if not self.atomic_put:
                self.fs.makedirs(self.path(dst).rsplit("/", 1)[0], exist_ok=True)
            self.fs.copy(self.path(src), self.path(dst))
        self._run(f"copy {src} to {dst}", op)

    def remove(self, rel: str) -> None:
        def op() -> None:
            try:
                self.fs.rm_file(self.path(rel))
            except FileNotFoundError:
                pass
        self._run(f"remove {rel}", op)


def _callback(say: Callable[[int], None]) -> Any:
    """An fsspec callback that reports the bytes transferred so far."""
    from fsspec.callbacks import Callback

    class _Say(Callback):  # type: ignore[misc]
        def set_size(self, size: int | None) -> None:
            self.value = 0  # a backend that retries a transfer inside (gcsfs) starts it again with set_size
            super().set_size(size)

        def call(self, *args: Any, **kwargs: Any) -> None:
            say(int(self.value))
    return _Say()


def _copy_file(src: str, dst: str, say: Callable[[int], None], chunk: int = 64 << 20) -> None:
    """Copy a local file a chunk at a time, so that progress can be told: in the kernel (sendfile) on
    Linux, as shutil does, else (or if the filesystem refuses it) through a buffer."""
    kernel = sys.platform.startswith("linux") and hasattr(os, "sendfile")
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        done = 0
        while done < size:
            want = min(chunk if kernel else 8 << 20, size - done)
            n = 0
            if kernel:
                try:
                    n = os.sendfile(fout.fileno(), fin.fileno(), done, want)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV) or done:
                        raise
                    kernel = False
            if not kernel:
                fin.seek(done)
                n = fout.write(fin.read(want))
            if n == 0:
                raise OSError(f"{src} shrank while being copied")
            done += n
            say(done)
