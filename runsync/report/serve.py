"""``runsync ui``: the report's page, served live from a runs directory or a remote, read-only.

Built on aiohttp (the ``ui`` extra): asyncio, so many open pages polling at
once cost no thread each, and it is already what fsspec's HTTP remotes use.

Routes (GET and HEAD only; everything else is 405):

- ``/`` — the page: ``html.render`` of a boot blob that says where to fetch
  data (``report.js`` switches to fetching when it sees ``live``);
- ``/api/index[?v=N]`` — the runs table and chart keys (``live.RunStore.index``);
  ``{"v": N, "same": true}`` when nothing changed since version N;
- ``/api/series?kind=history|system&key=K&runs=ID,ID…`` — one chart's data;
- ``/api/media?runs=ID,ID…`` — the media items of runs, as the report embeds them;
- ``/api/run/ID`` — one run's record.

Security: the server binds 127.0.0.1 unless told otherwise; on any other
address an access token is required, compared in constant time and sent as the
``X-Runsync-Token`` header, ``Authorization: Bearer``, or once as ``/?token=``,
which is swapped for an HttpOnly cookie by a redirect that drops it from the
address bar. Without a token only a loopback ``Host`` is answered (so a web
page cannot reach the server through DNS rebinding). Runs are named by ids
checked against the run-id pattern and the last scan, never by path; requests
are bounded in size, ids per request and requests in flight; nothing writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from ..format.errors import RunsyncError
from .html import render
from .live import RunStore

__all__ = ["LOCAL_HOSTS", "TOKEN_ENV", "UiOptions", "make_app", "needs_token", "serve"]

TOKEN_ENV = "RUNSYNC_UI_TOKEN"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # served without a token
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_IDS = 100  # runs per request
MAX_KEY = 1024  # characters of a metric key in a request
MAX_IN_FLIGHT = 64  # data requests being served at once; more wait (up to _WAIT s), then get 503
_WAIT = 30.0
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UiOptions:
    """How the server runs: the token (None: loopback only), seconds between scans and between page polls."""

    def __init__(self, token: str | None = None, interval: float = 2.0, poll: float | None = None,
                 select: int = 20) -> None:
        self.token = token
        self.interval = interval
        self.poll = poll if poll is not None else max(1.0, interval)
        self.select = select  # runs drawn when the page opens (the newest); the rest are listed


def needs_token(host: str) -> bool:
    """Every address but 127.0.0.1 (and its names) needs a token: others may be reachable by other users."""
    return host not in LOCAL_HOSTS


def _json(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    resp = web.Response(text=body, status=status, content_type="application/json")
    resp.enable_compression()
    return resp


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _ids(request: web.Request, store: RunStore) -> list[str] | web.Response:
    raw = request.query.get("runs", "")
    ids = [i for i in raw.split(",") if i]
    if len(ids) > MAX_IDS:
        return _error(400, f"at most {MAX_IDS} runs per request")
    for i in ids:
        if not store.has(i):
            return _error(404, f"no run {i[:80]!r} here")
    return ids


def make_app(store: RunStore, opts: UiOptions) -> web.Application:
    """The aiohttp application serving ``store`` (see the module docstring)."""
    token = opts.token.encode("utf-8") if opts.token else None
    # Cookies are kept per host, not per port: servers with different tokens on one host need different names.
    cookie = "runsync_ui_" + hashlib.sha256(token).hexdigest()[:12] if token else ""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runsync-ui")
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    index_cache: dict[str, Any] = {"v": None, "body": None}

    def token_ok(given: str | None) -> bool:
        return token is not None and given is not None and hmac.compare_digest(given.encode("utf-8"), token)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _error(405, "read-only: only GET and HEAD")
        if token is not None:
            once = request.query.get("token")
            if once is not None:
                if not token_ok(once):
                    return _error(401, "wrong token")
                # the same path without the query; "/" + lstrip: never "//host", which would leave the server
                moved = web.HTTPSeeOther(location="/" + request.rel_url.path.lstrip("/"))
                moved.set_cookie(cookie, once, httponly=True, samesite="Strict", path="/")
                return moved
            auth = request.headers.get("Authorization", "")
            given = (request.headers.get("X-Runsync-Token")
                     or (auth[7:] if auth.lower().startswith("bearer ") else None)
                     or request.cookies.get(cookie))
            if not token_ok(given):
                return _error(401, "this server needs its access token: open the URL `runsync ui` printed "
                                   "(…/?token=…), or send the X-Runsync-Token header")
        else:
            host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") \
                else (request.host or "").split("]")[0] + "]"
            if host not in _LOOPBACK_NAMES:
                return _error(403, "this server answers only on 127.0.0.1 / localhost (start it with --token "
                                   "to serve other addresses)")
        if request.path.startswith("/api/"):
            try:
                await asyncio.wait_for(gate.acquire(), _WAIT)
            except asyncio.TimeoutError:
                return _error(503, "busy: try again")
            try:
                resp = await handler(request)
            finally:
                gate.release()
            resp.headers["Cache-Control"] = "no-store"
        else:
            resp = await handler(request)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = _CSP
        return resp

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def page(_request: web.Request) -> web.Response:
        boot = {"format": 1, "title": store.title, "live": {
            "index": "api/index", "series": "api/series", "media": "api/media",
            "poll": opts.poll, "select": opts.select, "max_ids": MAX_IDS}}
        resp = web.Response(text=render(boot, served=True), content_type="text/html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def index(request: web.Request) -> web.Response:
        since = request.query.get("v")
        if since is not None and since == str(store.version):
            return _json({"v": store.version, "same": True})
        if index_cache["v"] != store.version:
            data = await run(store.index)
            index_cache["v"], index_cache["body"] = data["v"], json.dumps(
                data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        resp = web.Response(text=index_cache["body"], content_type="application/json")
        resp.enable_compression()
        return resp

    async def series(request: web.Request) -> web.Response:
        kind = request.query.get("kind", "history")
        key = request.query.get("key")
        if kind not in ("history", "system"):
            return _error(400, "kind must be history or system")
        if not key or len(key) > MAX_KEY:
            return _error(400, f"key: 1 to {MAX_KEY} characters")
        ids = _ids(request, store)
        if isinstance(ids, web.Response):
            return ids
        return _json({"kind": kind, "key": key, "runs": await run(store.series, kind, key, ids)})

    async def media(request: web.Request) -> web.Response:
        ids = _ids(request, store)
        if isinstance(ids, web.Response):
            return ids
        out: dict[str, Any] = {}
        for rid in ids:
            got = await run(store.media, rid)
            if got is not None:
                out[rid] = {"rv": got[0], "media": got[1]}
        return _json({"runs": out})

    async def one_run(request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        if not store.has(rid):
            return _error(404, f"no run {rid[:80]!r} here")
        entry = next((e for e in store.index()["runs"] if e["id"] == rid or e["path"].endswith(rid)), None)
        return _json(entry) if entry is not None else _error(404, f"no run {rid[:80]!r} here")

    async def not_found(_request: web.Request) -> web.Response:
        return _error(404, "not found")

    async def on_cleanup(_app: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app = web.Application(middlewares=[guard], client_max_size=1024)
    app.router.add_get("/", page)
    app.router.add_get("/api/index", index)
    app.router.add_get("/api/series", series)
    app.router.add_get("/api/media", media)
    app.router.add_get("/api/run/{id}", one_run)
    app.router.add_route("*", "/{tail:.*}", not_found)
    app.on_cleanup.append(on_cleanup)
    return app


class _Scanner(threading.Thread):
    """Keeps the store current: a scan every ``interval`` s, and runs not read yet read in between."""

    def __init__(self, store: RunStore, interval: float, on_error: Callable[[str], None]) -> None:
        super().__init__(name="runsync-ui-scan", daemon=True)
        self.store, self.interval, self.on_error = store, interval, on_error
        self.stop = threading.Event()
        self._failing = False

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.store.scan()
                if self._failing:
                    self.on_error("the source is readable again")
                self._failing = False
            except (RunsyncError, OSError) as e:
                if not self._failing:
                    self.on_error(f"cannot list runs: {e} (the page keeps the last listing; retrying)")
                self._failing = True
            # Read runs not read yet (newest first), but scan again at least every interval: live runs first.
            until = time.monotonic() + self.interval
            for rid in self.store.pending():
                if self.stop.is_set() or time.monotonic() > until:
                    break
                self.store.data(rid)
            self.stop.wait(max(0.0, until - time.monotonic()))


def serve(source: str, host: str = "127.0.0.1", port: int = 6006, opts: UiOptions | None = None,
          on_ready: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> int:
    """Serve ``source`` until SIGINT or SIGTERM; 0 then. Raises RunsyncError for a source that cannot be listed."""
    opts = opts or UiOptions()
    log = log or (lambda _m: None)
    if needs_token(host) and not opts.token:
        opts.token = secrets.token_urlsafe(24)
    store = RunStore(source)
    store.scan()  # lists the runs before the first page asks (and fails here for a bad source)
    scanner = _Scanner(store, opts.interval, log)
    app = make_app(store, opts)

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=256)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise RunsyncError(f"cannot listen on {host}:{port}: {e.strerror or e} (pick another --port)") from e
        addr = runner.addresses[0]
        name = socket.getfqdn() if str(addr[0]) in ("0.0.0.0", "::") else str(addr[0])  # all interfaces: a name
        shown = f"[{name}]" if ":" in name else name
        url = f"http://{shown}:{addr[1]}/" + (f"?token={opts.token}" if opts.token else "")
        scanner.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(url)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            scanner.stop.set()
            await runner.cleanup()

    asyncio.run(main())
    scanner.join(timeout=5)
    return 0
