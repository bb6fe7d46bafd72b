"""``runsync ui`` over plain HTTP (issue 18 §2): the server as a real subprocess on 127.0.0.1 (and 127.0.0.2).

Token off loopback (401 without it, constant-time compare, a one-time ``?token=`` swapped for a cookie),
traversal and unknown ids rejected, request bounds, read-only, 50 concurrent clients from a second
process, an S3 source through moto, and ``key_block`` (one chart's slice of a run's block) against
the block it is cut from. The page itself in Chromium: tests/test_ui_browser.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from ui_util import clone_runs, env, make_small_runs, ui_server, wait

from runsync.report.build import series_block
from runsync.report.live import key_block

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui") / "runs"
    make_small_runs(root, 3, 500)
    return root


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


def test_index_series_media_and_read_only(runs_root: Path) -> None:
    before = _tree(runs_root)
    with ui_server(runs_root, "--interval", "0.3") as srv:
        idx = srv.json("/api/index")
        assert len(idx["runs"]) == 3 and idx["v"] >= 1
        wait(lambda: srv.json("/api/index")["pending"] == 0, 60, "every run read")
        idx = srv.json("/api/index")
        assert idx["keys"] == ["epoch", "train/loss", "val/acc"] and "epoch" in idx["xkeys"]
        assert srv.json(f"/api/index?v={idx['v']}") == {"v": idx["v"], "same": True}
        ids = [r["id"] for r in idx["runs"]]
        res = srv.json(f"/api/series?kind=history&key=train/loss&runs={','.join(ids)}")
        for rid in ids:
            block = res["runs"][rid]["block"]
            assert list(block["series"]) == ["train/loss"] and block["series"]["train/loss"]["n"] == 500
            assert sum(block["steps"]) == 499  # delta-coded step table up to the last step
        acc = srv.json(f"/api/series?kind=history&key=val/acc&runs={ids[0]}")["runs"][ids[0]]["block"]
        assert len(np.cumsum(acc["steps"])) == 10  # only the steps this key's points use
        assert srv.json(f"/api/series?kind=history&key=nope&runs={ids[0]}")["runs"][ids[0]]["block"] is None
        assert srv.json(f"/api/media?runs={ids[0]}")["runs"][ids[0]]["media"] == {}
        assert srv.json(f"/api/run/{ids[0]}")["id"] == ids[0]
        status, headers, page = srv.get("/")
        assert status == 200 and b'"live"' in page and "default-src 'none'" in headers["content-security-policy"]
        for method in ("POST", "PUT", "DELETE"):
            assert srv.get("/api/index", method=method)[0] == 405
    assert _tree(runs_root) == before  # nothing written: no listing cache, no lock, nothing


@pytest.mark.parametrize("path", [
    "/api/run/..", "/api/run/../../etc/passwd", "/api/run/%2e%2e", "/api/run/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/run/..%2F..%2Fetc%2Fpasswd", "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
    "/api/series?key=a&runs=..", "/api/series?key=a&runs=../../etc", "/api/series?key=a&runs=%2e%2e%2fx",
    "/api/series?key=a&runs=nosuchrun", "/api/media?runs=..%2f..", "/api/run/nosuchrun",
    "/api/run/C00000", "/api/series?key=a&kind=../history&runs=", "/api/run/%00",
])
def test_traversal_and_unknown_ids_rejected(runs_root: Path, path: str, server_for_paths: Any) -> None:
    status, _h, body = server_for_paths.get(path)
    assert 400 <= status < 500, (path, status)
    assert b"root:" not in body


@pytest.fixture(scope="module")
def server_for_paths(runs_root: Path) -> Any:
    with ui_server(runs_root) as srv:
        yield srv


def test_request_bounds(server_for_paths: Any) -> None:
    srv = server_for_paths
    ids = ",".join(f"r{i:04d}" for i in range(101))
    assert srv.get(f"/api/series?key=a&runs={ids}")[0] == 400  # more ids than one request may name
    assert srv.get("/api/series?key=" + "k" * 2000 + "&runs=")[0] == 400
    assert srv.get("/api/series?key=" + "k" * 20_000)[0] in (400, 414, 431)  # over aiohttp's line limit
    assert srv.get("/api/index", {"Host": "evil.example:80"})[0] == 403  # DNS rebinding: not a loopback name


def test_token_required_off_loopback(runs_root: Path) -> None:
    token = "s3cret-t0ken"
    with ui_server(runs_root, "--host", "127.0.0.2", "--token", token) as srv:
        assert srv.host == "127.0.0.2" and srv.url.endswith(f"?token={token}")
        for path in ("/", "/api/index", "/api/run/x"):
            assert srv.get(path)[0] == 401
        assert srv.get("/api/index", {"X-Runsync-Token": "s3cret-t0keN"})[0] == 401
        assert srv.get("/api/index", {"X-Runsync-Token": token})[0] == 200
        assert srv.get("/api/index", {"Authorization": f"Bearer {token}"})[0] == 200
        assert srv.get("/?token=wrong")[0] == 401
        status, headers, _ = srv.get(f"/?token={token}")
        assert status == 303 and headers["location"] == "/"  # the token leaves the address bar
        cookie = headers["set-cookie"].split(";", 1)[0]
        assert "httponly" in headers["set-cookie"].lower() and "samesite=strict" in headers["set-cookie"].lower()
        assert srv.get("/", {"Cookie": cookie})[0] == 200
        status, headers, _ = srv.get(f"//evil.example/x?token={token}")
        assert status == 303 and headers["location"] == "/evil.example/x"  # never a redirect off the server
    # no --token on another address: one is made up and printed with the URL
    with ui_server(runs_root, "--host", "127.0.0.2") as srv:
        made = srv.url.split("?token=", 1)[1]
        assert len(made) >= 24
        assert srv.get("/api/index")[0] == 401
        assert srv.get("/api/index", {"X-Runsync-Token": made})[0] == 200
    # the environment variable
    with ui_server(runs_root, "--host", "127.0.0.2", extra_env={"RUNSYNC_UI_TOKEN": "from-env"}) as srv:
        assert srv.get("/api/index", {"X-Runsync-Token": "from-env"})[0] == 200


CLIENTS = textwrap.dedent('''
    import json, sys, threading, urllib.request
    base, ids, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    results = []
    def client(k):
        for j in range(4):  # a bounded loop per client
            path = "api/index" if j % 2 == 0 else f"api/series?kind=history&key=train/loss&runs={ids}"
            try:
                with urllib.request.urlopen(base + path, timeout=120) as r:
                    json.loads(r.read())
                    results.append(r.status)
            except Exception as e:
                results.append(repr(e))
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps(results))
''')


def test_fifty_concurrent_clients(runs_root: Path, server_for_paths: Any) -> None:
    srv = server_for_paths
    ids = ",".join(r["id"] for r in srv.json("/api/index")["runs"])
    out = subprocess.run([sys.executable, "-c", CLIENTS, srv.base, ids, "50"], capture_output=True, text=True,
                         timeout=240, env=env(), check=True)
    results = json.loads(out.stdout)
    assert len(results) == 200 and all(r == 200 for r in results), [r for r in results if r != 200][:5]


def test_s3_source_through_the_verified_cache(tmp_path: Path) -> None:
    pytest.importorskip("moto.server")
    from sync_s3server import moto_s3

    s3 = moto_s3()
    src = tmp_path / "runs"
    make_small_runs(src, 2, 300)
    url = s3.fresh_url()
    extra = {**s3.env, "RUNSYNC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-m", "runsync", "push", str(src), url], env=env(extra), check=True,
                   timeout=240, capture_output=True)
    before = _tree(src)
    with ui_server(url, "--interval", "1", extra_env=extra) as srv:
        idx = srv.json("/api/index")
        assert sorted(r["name"] for r in idx["runs"]) == ["small-0", "small-1"] and idx["source"] == url
        ids = ",".join(r["id"] for r in idx["runs"])
        res = srv.json(f"/api/series?kind=history&key=train/loss&runs={ids}")
        assert all(v["block"]["series"]["train/loss"]["n"] == 300 for v in res["runs"].values())
        wait(lambda: srv.json("/api/index")["keys"] == ["epoch", "train/loss", "val/acc"], 60, "keys")
    assert _tree(src) == before and any((tmp_path / "cache").rglob("*.parquet"))  # read through the cache


def test_thousand_runs_listed_fast(tmp_path: Path) -> None:
    import time

    root = tmp_path / "runs"
    clone_runs(root, 1000)
    with ui_server(root) as srv:
        t = time.monotonic()
        idx = srv.json("/api/index")
        assert len(idx["runs"]) == 1000 and time.monotonic() - t < 2.0


def _long_table(steps: np.ndarray, values: np.ndarray, key: str = "loss") -> pa.Table:
    n = len(steps)
    return pa.table({"step": pa.array(steps, pa.int64()), "time": pa.array(steps * 1000, pa.int64()),
                     "key": pa.array([key] * n), "type": pa.array(np.full(n, 1, np.int8)),
                     "value": pa.array(values, pa.float64())})


def _points(block: dict[str, Any], key: str) -> list[tuple[int, Any]]:
    steps = np.cumsum(block["steps"])
    ser = block["series"][key]
    return list(zip(steps[np.cumsum(ser["i"])].tolist(), ser["y"]))


def test_key_block_is_the_keys_points_and_repicks() -> None:
    from runsync.format.values import ValueType

    steps = np.arange(10_000, dtype=np.int64)
    vals = np.sin(steps / 300.0)
    vals[1234] = 50.0  # a spike: re-picking must keep it
    t = pa.concat_tables([_long_table(steps, vals), _long_table(steps[::100], steps[::100] / 100.0, "epoch")])
    t = t.set_column(3, "type", pa.array(np.full(t.num_rows, int(ValueType.FLOAT), np.int8)))
    block = series_block(t, 0.0, 2000, 400_000, 1, 8)
    assert block is not None
    whole = key_block(block, "loss", 5000)
    assert whole is not None and _points(whole, "loss") == _points(block, "loss")
    assert _points(key_block(block, "epoch", 5000) or {}, "epoch") == _points(block, "epoch")
    few = key_block(block, "loss", 400)
    assert few is not None
    pts = _points(few, "loss")
    assert len(pts) <= 420 and (1234, 50) in pts and set(pts) <= set(_points(block, "loss"))
    assert key_block(block, "missing", 10) is None


def test_an_unreadable_run_is_listed_as_a_problem_the_rest_served(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_small_runs(root, 2, 100)
    bad = root / "broken1"
    (bad / "streams").mkdir(parents=True)
    (bad / "run.json").write_text("{not json")
    with ui_server(root) as srv:
        idx = srv.json("/api/index")
        assert len(idx["runs"]) == 2
        assert [e["path"] for e in idx["errors"]] == [str(bad)] and "broken1" not in {r["id"] for r in idx["runs"]}
        assert srv.get("/api/run/broken1")[0] == 404


def test_store_keeps_keys_of_every_run_and_series_of_a_bounded_few(runs_root: Path) -> None:
    from runsync.report.live import RunStore

    store = RunStore(str(runs_root), max_runs_in_memory=2)
    assert store.scan() and not store.scan()  # a second look at unchanged runs changes nothing
    ids = [r["id"] for r in store.index()["runs"]]
    assert store.pending() == ids
    first = {rid: store.data(rid) for rid in ids}
    assert sum(r.data is not None for r in store._runs.values()) == 2  # the least recently used was dropped
    idx = store.index()
    assert idx["pending"] == 0 and idx["keys"] == ["epoch", "train/loss", "val/acc"]
    v = store.version
    assert store.data(ids[0]) == first[ids[0]] and store.version == v  # read again, same data, index unchanged


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "runsync", "ui", str(tmp_path / "nope"), "--port", "0"], env=env(),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "no runs directory" in out.stderr and "Traceback" not in out.stderr
    closed = "http://127.0.0.1:9"  # nothing listens on the discard port
    extra = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_ENDPOINT_URL_S3": closed,
             "AWS_ENDPOINT_URL": closed, "AWS_DEFAULT_REGION": "us-east-1", "RUNSYNC_CACHE_DIR": str(tmp_path / "c")}
    out = subprocess.run([sys.executable, "-m", "runsync", "ui", "s3://nowhere/runs", "--port", "0"],
                         env=env(extra), capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 1 and "runsync: error:" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_served_index_carries_define_metrics_default_x_axes(tmp_path: Path) -> None:
    """As the static report does (issue 15's define_metric): a key whose runs all plot it against one
    step_metric gets it as its default x-axis in the served page's index too."""
    import runsync
    from runsync.report.live import RunStore

    run = runsync.init(dir=tmp_path)
    run.define_metric("loss", step_metric="epoch")
    for i in range(5):
        run.log({"loss": 1 / (i + 1), "epoch": i / 2})
    run.finish()
    store = RunStore(str(tmp_path))
    store.scan()
    assert store.data(run.id) is not None  # reads the run (its keys, x-axes and step_metrics)
    assert store.index()["step_metrics"] == {"loss": "epoch"}
