"""Helpers for the ``runsync ui`` tests: runs to serve, the server as a real subprocess, raw HTTP. Not a test module."""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

TRAIN = textwrap.dedent('''
    import math, sys, time, runsync
    settings = runsync.Settings(part_interval=0.3, flush_interval=0.05, heartbeat_interval=0.5)
    run = runsync.init(dir=sys.argv[1], id="live1", name="live", config={"lr": 0.5}, settings=settings)
    t_end = time.monotonic() + float(sys.argv[2])
    i = 0
    while time.monotonic() < t_end:
        run.log({"train/loss": math.exp(-i / 200), "epoch": i // 50})
        i += 1
        time.sleep(0.01)
    run.finish()
''')

SMALL = textwrap.dedent('''
    import math, sys, runsync
    import numpy as np
    settings = runsync.Settings(part_interval=0.2, flush_interval=0.05)
    media = sys.argv[4] == "1"
    for k in range(int(sys.argv[2])):
        run = runsync.init(dir=sys.argv[1], project="p", name=f"small-{k}", config={"lr": 10.0 ** -k, "seed": 7},
                           settings=settings)
        for i in range(int(sys.argv[3])):
            row = {"train/loss": (k + 1) * math.exp(-i / 100), "epoch": i // 100}
            if i % 50 == 0:
                row["val/acc"] = i / 1000
            if media and i % 100 == 0:
                row["samples"] = runsync.Image(np.full((8, 8, 3), i % 256, dtype=np.uint8), caption=f"step {i}")
            run.log(row)
        run.summary["best"] = k
        run.finish()
''')


RANK = textwrap.dedent('''
    import os, sys, runsync
    settings = runsync.Settings(part_interval=0.2, flush_interval=0.05)
    run = runsync.init(dir=sys.argv[1], id="ranked", name="ranked", settings=settings)
    rank = int(os.environ["RANK"])
    for i in range(100):
        run.log({"loss": 1 / (i + 1) + rank})
    run.finish()
''')


def spawn_ranks(root: Path, world: int) -> None:
    """One run ``ranked`` logged by ``world`` processes at once (RANK=0..world-1): one stream each (spec §4.5)."""
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(root)],
                              env=env({"RANK": str(r), "WORLD_SIZE": str(world)})) for r in range(world)]
    assert all(p.wait(180) == 0 for p in procs)


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the subprocesses: this checkout first, no RUNSYNC_* of the caller, quiet writer."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(RUNSYNC_SYSTEM="0", RUNSYNC_CONSOLE="0", RUNSYNC_ENVIRONMENT="0", RUNSYNC_SILENT="1", **(extra or {}))
    return e


def make_small_runs(root: Path, runs: int = 3, steps: int = 500, media: bool = False) -> None:
    """``runs`` finished runs of ``steps`` steps (train/loss, epoch, val/acc; with ``media`` an image each 100)."""
    subprocess.run([sys.executable, "-c", SMALL, str(root), str(runs), str(steps), "1" if media else "0"],
                   env=env(), check=True, timeout=300)


def clone_runs(root: Path, n: int) -> list[str]:
    """``n`` finished runs under ``root`` quickly: one made by the writer, copied with a new run.json (spec §2)."""
    tmpl_root = root.parent / (root.name + "-template")
    make_small_runs(tmpl_root, 1, 60)
    (tmpl,) = [p for p in tmpl_root.iterdir() if not p.name.startswith(".")]
    info = json.loads((tmpl / "run.json").read_text())
    ids = []
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rid = f"c{k:05d}"
        shutil.copytree(tmpl, root / rid)
        doc = dict(info, id=rid, name=f"clone-{k}", created=info["created"] + k)
        (root / rid / "run.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        ids.append(rid)
    return ids


class Server:
    """``runsync ui`` in a subprocess; its URL (token included) from the line it prints."""

    def __init__(self, proc: subprocess.Popen[str], url: str, lines: list[str]) -> None:
        self.proc, self.url, self.lines = proc, url, lines
        base = url.split("?", 1)[0]
        self.base = base
        self.host, port = base[len("http://"):].rstrip("/").rsplit(":", 1)
        self.port = int(port)

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
            ) -> tuple[int, dict[str, str], bytes]:
        """One raw request (the path is sent as given: no normalisation of '..' by a client library)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            hdrs = {"Host": f"{self.host}:{self.port}", **(headers or {})}
            for k, v in hdrs.items():
                c.putheader(k, v)
            c.endheaders()
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, _h, body = self.get(path, headers)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@contextmanager
def ui_server(source: str | Path, *args: str, extra_env: dict[str, str] | None = None,
              timeout: float = 120.0) -> Iterator[Server]:
    """Start ``runsync ui SOURCE --port 0 ARGS``; on exit stop it with SIGINT (Ctrl-C) and check it exits 0."""
    proc = subprocess.Popen([sys.executable, "-m", "runsync", "ui", str(source), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(extra_env))
    lines: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    err = proc.stderr
    threading.Thread(target=lambda: lines.extend(iter(err.readline, "")), daemon=True).start()
    url = None
    deadline = time.monotonic() + timeout
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if " at http://" in line:
            url = line.split(" at ", 1)[1].split()[0]
    if url is None:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"runsync ui printed no URL; stderr: {''.join(lines)}")
    try:
        yield Server(proc, url, lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("runsync ui did not stop on SIGINT within 30 s") from None
        assert rc == 0, f"runsync ui exited {rc} on SIGINT; stderr: {''.join(lines)}"


def wait(cond: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
