"""``runsync push --watch``, the login-node daemon (issue 18 §1): a run training in a subprocess while the
daemon pushes it; rows reach the remote before the run ends and stock pandas reads them there; SIGTERM exits 0;
after the run finishes the remote verifies and equals the source; a remote that goes away and comes back is one
line each way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ui_util import wait

import runsync

TRAIN = textwrap.dedent('''
    import sys, time, runsync
    settings = runsync.Settings(part_interval=0.3, flush_interval=0.05)
    run = runsync.init(dir=sys.argv[1], id="live1", settings=settings)
    t_end = time.monotonic() + float(sys.argv[2])
    i = 0
    while time.monotonic() < t_end:
        run.log({"loss": 1.0 / (i + 1), "i": i})
        i += 1
        time.sleep(0.002)
    run.finish()
''')


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
    e.update(RUNSYNC_SYSTEM="0", RUNSYNC_CONSOLE="0", RUNSYNC_ENVIRONMENT="0", **(extra or {}))
    return e


def _daemon(src: Path, remote: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runsync", "push", "--watch", str(src), remote, "--interval", "0.3",
                             "--retries", "1", "--timeout", "3", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env))


def _stop(p: subprocess.Popen[str]) -> tuple[str, str]:
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return out, err


def _rows(path: str, **kw: Any) -> int:
    try:
        return len(pd.read_parquet(path, **kw))
    except (FileNotFoundError, OSError, ValueError):
        return 0


def test_live_run_reaches_a_local_remote_while_it_trains(tmp_path: Path) -> None:
    src, remote = tmp_path / "runs", tmp_path / "remote"
    src.mkdir()
    train = subprocess.Popen([sys.executable, "-c", TRAIN, str(src), "6"], env=_env(), stderr=subprocess.PIPE,
                             text=True)
    daemon = _daemon(src, str(remote), "--json")
    try:
        seen = wait(lambda: _rows(str(remote / "live1" / "history")), 30, "rows on the remote")
        assert train.poll() is None, "rows must reach the remote before the run ends"
        assert seen > 0
        assert train.wait(60) == 0, train.stderr.read() if train.stderr else ""
        status = remote / "live1" / "streams" / "main" / "status.json"
        wait(lambda: status.exists() and json.loads(status.read_text())["state"] == "finished", 30,
              "the final commit")
    finally:
        if train.poll() is None:
            train.kill()
        out, err = _stop(daemon)
    passes = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert passes and all("runs_pushed" in p for p in passes)
    assert sum(p["runs_pushed"] for p in passes) >= 2  # live, then final
    v = subprocess.run([sys.executable, "-m", "runsync", "verify", str(remote)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    local = runsync.open_run(src / "live1").history()
    pd.testing.assert_frame_equal(runsync.open_run(remote / "live1").history(), local)
    assert _rows(str(remote / "live1" / "history")) == _rows(str(src / "live1" / "history"))


def test_quiet_when_nothing_changes_and_one_line_per_pass_that_pushed(tmp_path: Path) -> None:
    src, remote = tmp_path / "runs", tmp_path / "remote"
    subprocess.run([sys.executable, "-c", TRAIN, str(src), "0.3"], env=_env(), check=True, timeout=120)
    daemon = _daemon(src, str(remote))
    try:
        wait(lambda: (remote / "live1" / "manifest.json").exists(), 30, "the first push")
        time.sleep(1.5)  # several passes over an unchanged tree
    finally:
        _out, err = _stop(daemon)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("runsync: pushing ")
    pushed = [ln for ln in lines if " pushed " in ln]
    assert len(pushed) == 1 and "pushed 1 runs" in pushed[0], err
    assert "unchanged" not in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto(port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    wait(up, 30, "moto server")
    import boto3
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="watch")
    return p


def test_s3_outage_is_one_line_down_and_one_line_back(tmp_path: Path) -> None:
    pytest.importorskip("moto.server")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL": endpoint}
    src = tmp_path / "runs"
    subprocess.run([sys.executable, "-c", TRAIN, str(src), "0.3"], env=_env(), check=True, timeout=120)
    server = _moto(port)
    daemon = _daemon(src, "s3://watch/runs", env=env)
    lines: list[str] = []
    assert daemon.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(daemon.stderr.readline, "")), daemon=True)
    reader.start()
    opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    try:
        wait(lambda: _rows("s3://watch/runs/live1/history", storage_options=opts), 60, "the first push to S3")
        server.terminate()
        server.wait(30)
        wait(lambda: any("unreachable" in ln for ln in lines), 90, "the daemon to notice the outage")
        time.sleep(2)  # more failing passes: still one line
        server = _moto(port)  # back, but empty: the daemon pushes the run again
        wait(lambda: _rows("s3://watch/runs/live1/history", storage_options=opts), 90, "the push after the outage")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
        reader.join(10)
        server.terminate()
        server.wait(30)
    err = "".join(lines)
    down = [ln for ln in err.splitlines() if "unreachable" in ln]
    back = [ln for ln in err.splitlines() if "reachable again" in ln]
    assert len(down) == 1 and len(back) == 1, err
    assert "127.0.0.1" in down[0] or "s3://watch/runs" in down[0]
    assert "Traceback" not in err and "retrying in" not in err


def test_live_run_reaches_s3_while_it_trains(tmp_path: Path) -> None:
    """The S3 half of issue 18 §1's test: moto in server mode on 127.0.0.1, stock pandas reading through s3fs."""
    pytest.importorskip("moto.server")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL": endpoint}
    opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    src = tmp_path / "runs"
    src.mkdir()
    server = _moto(port)
    train = subprocess.Popen([sys.executable, "-c", TRAIN, str(src), "8"], env=_env(), stderr=subprocess.PIPE,
                             text=True)
    daemon = _daemon(src, "s3://watch/runs", "--json", env=env)
    try:
        seen = wait(lambda: _rows("s3://watch/runs/live1/history", storage_options=opts), 60, "rows on S3")
        assert train.poll() is None, "rows must reach the remote before the run ends"
        assert seen > 0
        assert train.wait(60) == 0, train.stderr.read() if train.stderr else ""
        import s3fs
        fs = s3fs.S3FileSystem(**opts)

        def finished() -> bool:
            fs.invalidate_cache()
            try:
                return bool(json.loads(fs.cat("watch/runs/live1/streams/main/status.json"))["state"] == "finished")
            except (FileNotFoundError, ValueError, KeyError):
                return False
        wait(finished, 60, "the final commit on S3")
        out, _err = _stop(daemon)
        passes = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert passes and sum(p["runs_pushed"] for p in passes) >= 2  # live, then final
        v = subprocess.run([sys.executable, "-m", "runsync", "verify", "s3://watch/runs"], capture_output=True,
                           text=True, env=_env(env), timeout=120)
        assert v.returncode == 0, v.stdout + v.stderr
        key = ["stream", "step", "key", "seq"]
        local = pd.read_parquet(src / "live1" / "history").sort_values(key).reset_index(drop=True)
        remote = pd.read_parquet("s3://watch/runs/live1/history", storage_options=opts)
        remote = remote.sort_values(key).reset_index(drop=True)
        assert len(local) > 0
        pd.testing.assert_frame_equal(remote, local[remote.columns.tolist()])
        assert runsync.open_run(src / "live1").history()["loss"].notna().sum() == len(local) // 2
    finally:
        if train.poll() is None:
            train.kill()
        if daemon.poll() is None:
            daemon.kill()
        server.terminate()
        server.wait(30)
