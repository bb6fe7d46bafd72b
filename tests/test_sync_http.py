"""An HTTP server as a READ-ONLY remote (spec §12): runs pushed to a directory, that directory served by a
real HTTP server on 127.0.0.1, and read back through ``http://127.0.0.1:PORT/...`` with fsspec's
HTTPFileSystem (aiohttp) — verify, pull, ls, show, runs(), open_run() — and a push to it refused.

Servers (``Server``): Python's own ``http.server`` as it is (HTML index that lists dot-entries, no Range
support), a "static" server like nginx/Apache with their defaults (Range requests, an index that hides
dot-entries, so the blob store ``.runsync/`` is reachable only by direct URL), one with no directory index at
all (403 on directories, like ``autoindex off`` or a CDN), one that accepts PUT (a naive upload endpoint), and
one that answers a given path with 503 a given number of times (a flaky proxy).
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp")

from sync_util import resume_run, sha, source_files, tree_hashes

import runsync
from runsync.cli import main as cli_main
from runsync.format.manifest import MANIFEST, blob_path
from runsync.syncer import Remote, push

pytestmark = pytest.mark.timeout(60)

BIG = 6 << 20  # more than fsspec's HTTP block (5 MiB): the "static" server answers it in several ranges
IDS = ["run-a", "run-b"]


# --------------------------------------------------------------------------- the server


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.requests.append((self.command, urlsplit(self.path).path, int(code)))

    def end_headers(self) -> None:
        if self.server.ranges:
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def send_head(self) -> Any:
        srv = self.server
        path = urlsplit(self.path).path
        with srv.lock:
            fail = srv.faults.get(path, 0) > 0
            if fail:
                srv.faults[path] -= 1
        if fail:
            self.send_error(503, "injected: service unavailable")
            return None
        local = self.translate_path(self.path)
        rng = self.headers.get("Range")
        if srv.ranges and rng and os.path.isfile(local):
            return self._send_range(local, rng)
        return super().send_head()

    def _send_range(self, local: str, rng: str) -> Any:
        size = os.path.getsize(local)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        if not m or int(m[1]) >= size:
            self.send_error(416)
            return None
        start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
        with open(local, "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(local))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)

    def list_directory(self, path: str | os.PathLike[str]) -> Any:
        index = self.server.index
        if index == "stdlib":
            return super().list_directory(path)
        if index is None:
            self.send_error(403, "directory listing is off")
            return None
        # "hide-dot": like Apache's IndexIgnore .??* (and most static hosts): dot-entries are not listed
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
        links = "".join(f'<a href="{quote(n)}{"/" if os.path.isdir(os.path.join(path, n)) else ""}">'
                        f"{html.escape(n)}</a><br>\n" for n in names)
        body = f"<!DOCTYPE html><html><body><h1>Index</h1>\n{links}</body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def do_PUT(self) -> None:
        """A naive upload endpoint (only when the server accepts PUT): stores the body at the path."""
        if not self.server.accept_put:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        local = Path(self.translate_path(self.path))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing early (fsspec's exists() reads no body) is not the server's business
    requests: list[tuple[str, str, int]]
    lock: threading.Lock
    faults: dict[str, int]
    index: str | None
    ranges: bool
    accept_put: bool


@dataclass
class Server:
    """A running server: ``url`` is its root (``http://127.0.0.1:PORT``); ``requests`` every (method, path,
    status) it answered."""

    srv: _HTTPServer
    directory: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        return list(self.srv.requests)

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] not in ("GET", "HEAD")]


KINDS: dict[str, dict[str, Any]] = {
    "stdlib": {"index": "stdlib", "ranges": False},  # python -m http.server, as it is
    "static": {"index": "hide-dot", "ranges": True},  # nginx/Apache-like: Range, dot-entries not listed
}


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(directory, index=..., ranges=..., accept_put=..., faults=...)`` starts a server on 127.0.0.1
    port 0 in a thread; every server is shut down after the test."""
    started: list[_HTTPServer] = []

    def start(directory: Path, *, index: str | None = "stdlib", ranges: bool = False, accept_put: bool = False,
              faults: dict[str, int] | None = None) -> Server:
        srv = _HTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        srv.requests, srv.lock, srv.faults = [], threading.Lock(), dict(faults or {})
        srv.index, srv.ranges, srv.accept_put = index, ranges, accept_put
        threading.Thread(target=functools.partial(srv.serve_forever, poll_interval=0.05),
                         name=f"http-{srv.server_address[1]}", daemon=True).start()
        started.append(srv)
        return Server(srv, directory)

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- the runs, pushed once per module


@dataclass
class Pushed:
    root: Path  # the source runs
    www: Path  # the served directory; the pushed copy is www/runs
    big: bytes  # the content of run-a's saved checkpoint

    @property
    def remote_dir(self) -> Path:
        return self.www / "runs"


def _write_run(root: Path, run_id: str, steps: int, saved: Path | None = None) -> None:
    run = runsync.init(dir=root, id=run_id, config={"lr": 0.1, "id": run_id})
    for s in range(steps):
        run.log({"loss": 1.0 / (s + 1), "acc": s / steps, "note": f"s{s}"})
        if s % 10 == 0:  # media parts (spec §13.2)
            run.log({"hist": runsync.Histogram(np.arange(s + 5.0)), "txt": runsync.Text(f"{run_id} at {s}")})
    if saved is not None:
        run.save(str(saved), policy="now", base_path=saved.parent)  # a saved file: a blob on the remote (spec §12.1.1)
    run.summary["best"] = 0.5
    run.finish()


@contextlib.contextmanager
def _quiet_env() -> Iterator[None]:
    """conftest's autouse environment, for module-scoped fixtures (which run outside it)."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RUNSYNC_MODE", "RUNSYNC_DIR", "RUNSYNC_PROJECT", "RUNSYNC_STREAM", "RANK", "WORLD_SIZE"):
            mp.delenv(var, raising=False)
        mp.setenv("RUNSYNC_SILENT", "1")
        for var in ("RUNSYNC_SYSTEM", "RUNSYNC_CONSOLE", "RUNSYNC_ENVIRONMENT"):
            mp.setenv(var, "off")
        yield


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """run-a (a 6 MiB saved file, media, resumed after a first push so that its replaced documents are
    committed as blobs under .runsync/, spec §12.1.2) and run-b, pushed to a local directory."""
    base = tmp_path_factory.mktemp("http")
    root, www = base / "runs", base / "www"
    root.mkdir()
    big = os.urandom(BIG)
    (base / "ckpt.bin").write_bytes(big)
    with _quiet_env():
        _write_run(root, "run-a", 40, saved=base / "ckpt.bin")
        _write_run(root, "run-b", 12)
        remote = Remote(str(www / "runs"))
        assert push(root, remote).failures == []
        resume_run(root, "run-a", steps=6)
        res = push(root, remote)
        assert res.failures == [] and res.runs_pushed == 1
    assert (www / "runs" / blob_path(sha(big))).is_file()
    status = (root / "run-a" / "streams" / "main" / "status.json").read_bytes()
    assert (www / "runs" / blob_path(sha(status))).is_file(), "run-a's status.json is committed as a blob"
    yield Pushed(root, www, big)


def _manifest_files(p: Pushed) -> int:
    return sum(len(json.loads((p.remote_dir / r / MANIFEST).read_bytes())["files"]) for r in IDS)


def cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return rc, out, err


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["stream", "seq"]).reset_index(drop=True)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNSYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RUNSYNC_STORAGE_OPTIONS", raising=False)
    return tmp_path / "cache"


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("kind", list(KINDS))
def test_verify(kind: str, pushed: Pushed, serve: Callable[..., Server], capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(pushed.www, **KINDS[kind])
    url = f"{server.url}/runs"
    rc, out, err = cli(capsys, "verify", url)
    assert rc == 0 and "2 runs" in out and "OK" in out, (out, err)
    rc, out, err = cli(capsys, "verify", url, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] is True and doc["runs"] == 2 and doc["files"] == _manifest_files(pushed), doc
    got = server.requests
    # the blob store was read by direct URL: the big saved file and run-a's replaced documents
    assert ("GET", f"/runs/{blob_path(sha(pushed.big))}", 200) in got
    if kind == "static":
        assert not [r for r in got if r[0] == "GET" and r[1].rstrip("/") == "/runs/.runsync"], \
            "nothing needed the blob store's directory listing"
        assert not [r for r in got if r[2] == 206], "files are hashed from one streamed GET each (no Range)"
        index = Remote(url).listdir()
        assert ".runsync" not in index and set(IDS) <= set(index), index  # the server really hides it


@pytest.mark.parametrize("kind", list(KINDS))
def test_pull_is_byte_identical(kind: str, pushed: Pushed, serve: Callable[..., Server], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(pushed.www, **KINDS[kind])
    url, dest = f"{server.url}/runs", tmp_path / "pulled"
    rc, out, err = cli(capsys, "pull", url, dest, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["failures"] == [] and doc["runs"] == 2, (out, err)
    assert doc["files"] == _manifest_files(pushed) and doc["skipped"] == 0
    assert sorted(p.name for p in dest.iterdir()) == IDS
    for run_id in IDS:
        assert tree_hashes(dest / run_id, skip=lambda rel: rel == MANIFEST) == source_files(pushed.root / run_id)
        assert (dest / run_id / MANIFEST).read_bytes() == (pushed.remote_dir / run_id / MANIFEST).read_bytes()
    pulled = runsync.open_run(dest / "run-a")
    assert pulled.file_path("ckpt.bin").read_bytes() == pushed.big
    rc, out, err = cli(capsys, "pull", url, dest, "--json")  # again: everything is already here
    doc = json.loads(out)
    assert rc == 0 and doc["files"] == 0 and doc["skipped"] == _manifest_files(pushed), doc


@pytest.mark.parametrize("kind", list(KINDS))
def test_ls_show_runs_and_open_run(kind: str, pushed: Pushed, serve: Callable[..., Server], cache: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(pushed.www, **KINDS[kind])
    url = f"{server.url}/runs"
    rc, out, err = cli(capsys, "ls", url)
    assert rc == 0 and "run-a" in out and "run-b" in out, (out, err)
    rc, out, err = cli(capsys, "show", "run-b", "--dir", url)
    assert rc == 0 and "run-b" in out and "finished" in out, (out, err)
    rc, out, err = cli(capsys, "runs", url, "--where", "steps > 20", "--json")
    assert rc == 0 and [r["id"] for r in json.loads(out)["runs"]] == ["run-a"], (out, err)
    table = runsync.runs(url)
    assert sorted(table["id"]) == IDS
    assert set(table["status"]) == {"finished"}

    for run_id in IDS:
        view, local = runsync.open_run(f"{url}/{run_id}"), runsync.open_run(pushed.root / run_id)
        assert view.status == local.status == "finished"
        pd.testing.assert_frame_equal(view.history(), local.history())
        assert _sorted(view.history(wide=False)).equals(_sorted(local.history(wide=False)))
        assert view.documents() == local.documents()
        assert view.summary == local.summary and view.config == local.config
        assert [(m.step, m.value) for m in view.media("txt")] == [(m.step, m.value) for m in local.media("txt")]
    view = runsync.open_run(f"{url}/run-a")
    assert view.history()["step"].max() == runsync.open_run(pushed.root / "run-a").history()["step"].max()
    assert view.file_path("ckpt.bin").read_bytes() == pushed.big
    assert str(view.path).startswith(str(cache)), "read through the cache in $RUNSYNC_CACHE_DIR"


def test_server_without_directory_index(pushed: Pushed, serve: Callable[..., Server], tmp_path: Path,
                                        cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server that lists no directory (403): runs named by id are still read, every file by direct URL."""
    server = serve(pushed.www, index=None, ranges=True)
    url = f"{server.url}/runs"
    view = runsync.open_run(f"{url}/run-a")
    pd.testing.assert_frame_equal(view.history(), runsync.open_run(pushed.root / "run-a").history())
    assert view.file_path("ckpt.bin").read_bytes() == pushed.big
    rc, out, err = cli(capsys, "verify", url, "--run", "run-a", "--run", "run-b")
    assert rc == 0 and "2 runs" in out and "OK" in out, (out, err)
    assert "lists no directories" in out, out  # unlisted files (spec §12.6) could not be looked for
    rc, out, err = cli(capsys, "pull", url, tmp_path / "dest", "--run", "run-b")
    assert rc == 0, (out, err)
    assert tree_hashes(tmp_path / "dest" / "run-b", skip=lambda rel: rel == MANIFEST) == \
        source_files(pushed.root / "run-b")
    refused_listing = re.compile(r"^/runs/run-[ab]/history/?$")  # verify asking for what no manifest names
    assert not [r for r in server.requests if r[2] not in (200, 206, 404) and not refused_listing.match(r[1])], \
        server.requests
    # Discovering runs needs a listing: a clear error, not a traceback and not an empty "OK".
    for argv in (["ls", url], ["verify", url]):
        rc, out, err = cli(capsys, *argv)
        assert rc == 1 and "runsync: error:" in err and url in err, (argv, out, err)


def test_reader_follows_a_later_push(serve: Callable[..., Server], tmp_path: Path, cache: Path) -> None:
    root, www = tmp_path / "runs", tmp_path / "www"
    root.mkdir()
    _write_run(root, "run-f", 8)
    assert push(root, Remote(str(www / "runs"))).failures == []
    server = serve(www, **KINDS["static"])
    url = f"{server.url}/runs"
    first = runsync.open_run(f"{url}/run-f").history()
    pd.testing.assert_frame_equal(first, runsync.open_run(root / "run-f").history())
    resume_run(root, "run-f", steps=5)  # the run grows; a new push to the served directory; the reader follows
    assert push(root, Remote(str(www / "runs"))).failures == []
    view = runsync.open_run(f"{url}/run-f")
    assert view.history()["step"].max() == first["step"].max() + 5
    pd.testing.assert_frame_equal(view.history(), runsync.open_run(root / "run-f").history())
    assert sorted(runsync.runs(url)["id"]) == ["run-f"]


# --------------------------------------------------------------------------- writing is refused


def test_push_to_http_is_refused_up_front(pushed: Pushed, serve: Callable[..., Server], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """HTTP remotes are read-only: `runsync push` (and a bundle push) says so before any request, exit 1."""
    src = tmp_path / "src"
    shutil.copytree(pushed.root, src, ignore=shutil.ignore_patterns(".runsync"))
    (tmp_path / "www" / "empty").mkdir(parents=True)
    server = serve(tmp_path / "www")
    url = f"{server.url}/empty"
    for target in (url, f"{serve(pushed.www).url}/runs"):
        rc, out, err = cli(capsys, "push", src, target)
        assert rc == 1, (out, err)
        assert "read-only" in err and "Traceback" not in err and "retrying" not in err, err
    assert server.writes() == [] and server.requests == []
    assert list((tmp_path / "www").rglob("*")) == [tmp_path / "www" / "empty"]


@pytest.mark.parametrize("accept_put", [False, True], ids=["put-refused", "put-accepted"])
def test_push_to_http_says_it_is_read_only(accept_put: bool, pushed: Pushed, serve: Callable[..., Server],
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    shutil.copytree(pushed.root, src, ignore=shutil.ignore_patterns(".runsync"))
    (tmp_path / "www" / "empty").mkdir(parents=True)
    server = serve(tmp_path / "www", accept_put=accept_put)
    url = f"{server.url}/empty"
    rc, out, err = cli(capsys, "push", src, url, "--retries", "0")
    assert rc == 1, (out, err)
    assert server.writes() == [], "nothing is sent to a read-only remote"
    assert list((tmp_path / "www").rglob("*")) == [tmp_path / "www" / "empty"]
    assert "read-only" in err and "FAILED" not in err, err  # said once, as an error, not per run


def test_transient_error_does_not_hide_a_run(pushed: Pushed, serve: Callable[..., Server],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(pushed.www, faults={f"/runs/run-b/{MANIFEST}": 1})
    rc, out, err = cli(capsys, "verify", f"{server.url}/runs")
    assert ("GET", f"/runs/run-b/{MANIFEST}", 503) in server.requests
    assert rc == 1 or "2 runs" in out, (out, err)


@pytest.mark.parametrize("case", ["connection-refused", "listing-forbidden"])
def test_check_root_says_what_went_wrong(case: str, pushed: Pushed, serve: Callable[..., Server],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if case == "listing-forbidden":
        url = f"{serve(pushed.www, index=None).url}/runs"
    else:
        server = serve(pushed.www)
        url = f"{server.url}/runs"
        server.srv.shutdown()
        server.srv.server_close()  # the port is closed now
    rc, out, err = cli(capsys, "verify", url, "--retries", "0")
    assert rc == 1, (out, err)
    assert "no such directory" not in err, err


# --------------------------------------------------------------------------- larger files, newest run


@pytest.fixture(scope="module")
def pushed_large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """(source root, served directory, content) of run-l with a 16 MiB saved file (three fsspec HTTP blocks)."""
    base = tmp_path_factory.mktemp("http-large")
    big = os.urandom(16 << 20)
    (base / "big.bin").write_bytes(big)
    with _quiet_env():
        _write_run(base / "runs", "run-l", 3, saved=base / "big.bin")
        assert push(base / "runs", Remote(str(base / "www" / "runs"))).failures == []
    return base / "runs", base / "www", big


@pytest.mark.parametrize("kind", list(KINDS))
def test_large_file_pull_and_open_run(kind: str, pushed_large: tuple[Path, Path, bytes],
                                      serve: Callable[..., Server], tmp_path: Path, cache: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, www, big = pushed_large
    url = f"{serve(www, **KINDS[kind]).url}/runs"
    rc, out, err = cli(capsys, "pull", url, tmp_path / "dest")
    assert rc == 0, (out, err)
    assert tree_hashes(tmp_path / "dest" / "run-l", skip=lambda rel: rel == MANIFEST) == \
        source_files(root / "run-l")
    assert runsync.open_run(f"{url}/run-l").file_path("big.bin").read_bytes() == big


@pytest.mark.parametrize("kind", [
    "static",
    "stdlib",
])
def test_large_file_verify(kind: str, pushed_large: tuple[Path, Path, bytes], serve: Callable[..., Server],
                           capsys: pytest.CaptureFixture[str]) -> None:
    _root, www, _big = pushed_large
    url = f"{serve(www, **KINDS[kind]).url}/runs"
    rc, out, err = cli(capsys, "verify", url)
    assert rc == 0 and "1 runs" in out and "OK" in out, (out, err)


def test_show_latest_on_a_remote(serve: Callable[..., Server], tmp_path: Path, cache: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    _write_run(root, "run-z", 3)  # the older run has the id that sorts last
    time.sleep(0.05)
    _write_run(root, "run-a", 3)
    assert push(root, Remote(str(tmp_path / "www" / "runs"))).failures == []
    rc, out, err = cli(capsys, "show", "latest", "--dir", root)
    assert rc == 0 and "(id run-a)" in out, (out, err)  # locally: the newest
    rc, out, err = cli(capsys, "show", "latest", "--dir", f"{serve(tmp_path / 'www').url}/runs")
    assert rc == 0 and "(id run-a)" in out, (out, err)


def test_reading_a_server_that_is_down_fails_in_seconds(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reader is a person waiting: connection refused fails after a few quick retries, with the reason."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(runsync.RunsyncError, match="(?i)connect|refused"):
        runsync.open_run(f"http://127.0.0.1:{port}/runs/run-a")
    assert time.monotonic() - t0 < 30
    rc, out, err = cli(capsys, "ls", f"http://127.0.0.1:{port}/runs")
    assert rc != 0 and "Traceback" not in err and "127.0.0.1" in err, err
