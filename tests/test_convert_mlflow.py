"""`runsync import mlflow` and `runsync export mlflow` (issue 17) against stores written by the real mlflow package:
a file store (mlruns/), a sqlite database, and an `mlflow server` on 127.0.0.1 started here."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install 'runsync[mlflow]'")

from convert_util import cli, cli_here, run_dirs, series, times, tree
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

import runsync

T0 = 1_700_000_000_000  # ms
LOSS = [1.0 / 3 ** (i % 7) + i * 1e-13 for i in range(30)]  # float64 values float32 cannot hold


def _write(uri: str, tmp: Path, grow: bool = False) -> tuple[str, str]:
    """Two runs in experiment "exp": one finished with params, metrics, tags and an artifact; one failed."""
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("exp")
    # artifacts in tmp (a sqlite store's default artifact root is ./mlruns in the working directory)
    where = None if uri.startswith("http") else (tmp / "artifacts").as_uri()
    exp_id = exp.experiment_id if exp else c.create_experiment("exp", artifact_location=where)
    if grow:
        [r] = [r for r in c.search_runs([exp_id]) if r.info.run_name == "good"]
        c.log_batch(r.info.run_id, metrics=[Metric("loss", 0.125, T0 + 100_000, 100)])
        return r.info.run_id, ""
    r = c.create_run(exp_id, start_time=T0 - 5000, run_name="good", tags={"team": "vision", "mlflow.note.content": "n"})
    rid = r.info.run_id
    c.log_batch(rid, params=[Param("lr", "0.001"), Param("layers", "4"), Param("opt", "adam"), Param("amp", "True")],
                metrics=[Metric("loss", LOSS[i], T0 + 1000 * i, 2 * i) for i in range(30)]
                + [Metric("acc", i / 10, T0 + 1000 * i, 2 * i) for i in range(10)])
    art = tmp / "model.txt"
    art.write_text("weights")
    c.log_artifact(rid, str(art), "ckpt")
    c.set_terminated(rid, "FINISHED", end_time=T0 + 60_000)
    bad = c.create_run(exp_id, start_time=T0, run_name="bad")
    c.log_batch(bad.info.run_id, metrics=[Metric("loss", 9.0, T0, 0)])
    c.set_terminated(bad.info.run_id, "FAILED", end_time=T0 + 1000)
    return rid, bad.info.run_id


def _check(root: Path, rid: str, bad_id: str) -> None:
    good = runsync.open_run(root / rid)
    assert good.id == rid and good.name == "good" and good.info.project == "exp"
    assert good.info.source["kind"] == "mlflow" and good.info.source["id"] == rid
    assert series(good, "loss") == [(2 * i, LOSS[i]) for i in range(30)]  # bit-exact float64
    assert times(good, "loss") == [(2 * i, (T0 + 1000 * i) * 1000) for i in range(30)]
    assert good.config == {"lr": 0.001, "layers": 4, "opt": "adam", "amp": True}
    assert good.info.tags == ["team=vision"] and good.info.notes == "n"
    assert good.info.created == (T0 - 5000) / 1000
    assert good.status == "finished" and good.streams()[0]["ended"] == (T0 + 60_000) / 1000
    assert good.file_path("ckpt/model.txt").read_text() == "weights"
    bad = runsync.open_run(root / bad_id)
    assert bad.status == "failed" and series(bad, "loss") == [(0, 9.0)]


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_import_stores(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = str(tmp_path / "mlruns") if store == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    rid, bad_id = _write(uri, tmp_path)
    root = tmp_path / "runs"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # runsync sets it itself to read a file store
    r = cli("import", "mlflow", uri, "--dir", str(root))
    assert r.stdout.count("imported") == 2, r.stdout
    _check(root, rid, bad_id)
    before = {d.name: tree(d) for d in run_dirs(root)}
    _rc, out, _err = cli_here(capsys, "import", "mlflow", uri, "--dir", str(root))
    assert out.count("unchanged") == 2 and {d.name: tree(d) for d in run_dirs(root)} == before
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    _write(uri, tmp_path, grow=True)
    _rc, out, _err = cli_here(capsys, "import", "mlflow", uri, "--dir", str(root), "--experiment", "exp")
    assert f"updated {rid}: 1 new rows" in out, out
    assert runsync.open_run(root / rid).rows(["loss"]).num_rows == 31


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log = open(d / "server.log", "wb")  # noqa: SIM115 - open while the server runs
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}", "--artifacts-destination", str(d / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(d / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        # the server's own session: it and the workers it started, nothing else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)
        log.close()


def test_import_from_server(server: str, tmp_path: Path) -> None:
    rid, bad_id = _write(server, tmp_path)
    root = tmp_path / "runs"
    cli("import", "mlflow", server, "--dir", str(root), "--experiment", "exp")
    _check(root, rid, bad_id)


def test_export_to_server_is_idempotent(server: str, root: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with runsync.init(dir=root, name="exported", project="proj", config={"lr": 0.5, "net": {"depth": 3}},
                      tags=["a", "b"], notes="hello") as run:
        for i in range(25):
            run.log({"loss": LOSS[i], "step_ok": True, "phase": "train"}, step=i)
        (tmp_path / "cfg.yaml").write_text("x: 1\n")
        run.save(str(tmp_path / "cfg.yaml"), base_path=str(tmp_path), policy="now")
    rid = run.id
    r = cli("export", "mlflow", rid, "--dir", str(root), "--tracking-uri", server, "--experiment", "exported-exp")
    assert "exported" in r.stdout and "phase" in r.stdout  # the string key is named as not exported
    c = MlflowClient(tracking_uri=server)
    exp = c.get_experiment_by_name("exported-exp")
    [m] = c.search_runs([exp.experiment_id])
    assert m.info.run_name == "exported" and m.info.status == "FINISHED"
    src = runsync.open_run(root / rid)
    assert m.info.start_time == round(src.info.created * 1000)
    assert m.info.end_time == round(src.streams()[0]["ended"] * 1000)
    assert m.data.tags["runsync.run_id"] == rid and m.data.tags["mlflow.note.content"] == "hello"
    assert m.data.params == {"lr": "0.5", "net/depth": "3"}
    hist = sorted((x.step, x.value) for x in c.get_metric_history(m.info.run_id, "loss"))
    assert hist == [(i, LOSS[i]) for i in range(25)]
    assert [a.path for a in c.list_artifacts(m.info.run_id)] == ["cfg.yaml"]
    # a second export updates the same run: no new run, no repeated metric points
    with runsync.init(dir=root, id=rid, resume=True) as run2:
        run2.log({"loss": 0.01}, step=25)
    _rc, out, _err = cli_here(capsys, "export", "mlflow", rid, "--dir", str(root), "--tracking-uri", server,
                              "--experiment", "exported-exp")
    assert "updated" in out, out
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == m.info.run_id
    hist = sorted((x.step, x.value) for x in c.get_metric_history(m.info.run_id, "loss"))
    assert hist == [(i, LOSS[i]) for i in range(25)] + [(25, 0.01)]
    # round trip: MLflow → runsync again gives the same values and config
    back = tmp_path / "back"
    cli_here(capsys, "import", "mlflow", server, "--dir", str(back), "--experiment", "exported-exp")
    view = runsync.open_run(back / m.info.run_id)
    assert series(view, "loss") == series(runsync.open_run(root / rid), "loss")
    assert view.config == {"lr": 0.5, "net/depth": 3} and view.info.tags == ["a", "b"] and view.info.notes == "hello"
