"""The writer's lifecycle and surroundings: modes, environment, sequencing, threads, summary, config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import runsync
from runsync.writer.names import new_id
from runsync.writer.run import current as current_run
from conftest import env_without_runsync


def _run_py(code: str, cwd: Path, env: dict[str, str] | None = None, silent: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
    e = env_without_runsync()
    if silent:
        e["RUNSYNC_SILENT"] = "1"
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def _all_files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# -- disabled mode -------------------------------------------------------------------


def _exercise_full_api(run: runsync.Run) -> None:
    run.log({"loss": 0.5, "nested": {"a": 1}})
    run.log({"loss": 0.4}, step=10)
    run.log({"acc": 0.9}, commit=False)
    run.log({"text": "hello", "none": None})
    _ = run.step
    run.summary["best"] = 0.1
    assert run.summary["best"] == 0.1
    assert "best" in run.summary and len(run.summary) >= 1 and dict(run.summary)["best"] == 0.1
    del run.summary["best"]
    assert "best" not in run.summary
    run.config["lr"] = 0.01
    run.config.update({"batch": 32}, layers=np.int64(4))
    assert run.config["lr"] == 0.01 and run.config["batch"] == 32 and dict(run.config)["layers"] == 4
    assert run.config.as_dict()["layers"] == 4
    runsync.log({"module": 1.0})
    assert current_run() is run
    assert isinstance(run.id, str) and isinstance(run.name, str) and run.project
    repr(run)


@pytest.mark.parametrize("via_env", [False, True])
def test_disabled_mode_full_api_and_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "runs"
    kw: dict = {}
    if via_env:
        monkeypatch.setenv("RUNSYNC_MODE", "disabled")  # and no dir: ./runs would be the default
    else:
        kw = dict(mode="disabled", dir=target)

    run = runsync.init(project="p", config={"lr": 0.1, "np": np.float32(0.5)}, **kw)
    assert run.mode == "disabled"
    assert run.config["lr"] == 0.1
    _exercise_full_api(run)
    run.finish()
    run.finish()  # idempotent
    assert run.finished
    assert current_run() is None
    with pytest.raises(runsync.RunFinishedError):
        run.log({"loss": 1.0})

    with runsync.init(id="fixed-id", **kw) as run2:
        assert run2.id == "fixed-id"
        _exercise_full_api(run2)
    assert run2.finished
    with runsync.init(**kw):
        runsync.log({"a": 1})
        runsync.finish()
    with pytest.raises(runsync.RunsyncError):
        runsync.log({"a": 1})

    assert _all_files(tmp_path) == [], "disabled mode must not create files or directories"


# -- environment ---------------------------------------------------------------------


def test_runsync_dir_used_when_dir_not_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "from-env"
    monkeypatch.setenv("RUNSYNC_DIR", str(target))
    with runsync.init() as run:
        run.log({"a": 1.0})
    assert run.dir == target / run.id
    assert (target / run.id / "run.json").is_file()
    assert not (tmp_path / "runs").exists()
    # an explicit dir beats the environment
    explicit = tmp_path / "explicit"
    with runsync.init(dir=explicit) as run2:
        run2.log({"a": 1.0})
    assert run2.dir == explicit / run2.id
    assert sorted(p.name for p in target.iterdir()) == [run.id]


def test_runsync_project_sets_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSYNC_PROJECT", "from-env")
    with runsync.init(dir=root) as run:
        run.log({"a": 1.0})
    assert run.project == "from-env"
    assert json.loads((run.dir / "run.json").read_text())["project"] == "from-env"
    assert runsync.open_run(run.dir).info.project == "from-env"
    with runsync.init(dir=root, project="explicit") as run2:
        pass
    assert json.loads((run2.dir / "run.json").read_text())["project"] == "explicit"


def test_runsync_silent_prints_nothing(tmp_path: Path) -> None:
    code = f"""
        import runsync
        run = runsync.init(dir={str(tmp_path / 'runs')!r}, config={{"lr": 0.1}})
        for s in range(100):
            run.log({{"loss": 1.0 / (s + 1), "note": "x"}})
        run.summary["best"] = 1.0
        run.finish()
        with runsync.init(dir={str(tmp_path / 'runs')!r}) as r2:
            r2.log({{"a": 1}})
    """
    r = _run_py(code, cwd=tmp_path, env={"RUNSYNC_SILENT": "1"})
    assert r.returncode == 0
    assert r.stdout == ""
    assert r.stderr == ""

    loud = _run_py(code.replace("runs'", "runs2'"), cwd=tmp_path, silent=False)
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout == ""
    run_dirs = list((tmp_path / "runs2").iterdir())
    assert len(run_dirs) == 2
    for d in run_dirs:
        info = json.loads((d / "run.json").read_text())
        assert any(info["id"] in line and info["name"] in line for line in loud.stderr.splitlines()), loud.stderr


@pytest.mark.parametrize("pandas_imported", [
    False,
    True,
])
def test_run_left_open_is_finished_at_exit(tmp_path: Path, pandas_imported: bool) -> None:
    r = _run_py(
        f"""
        {"import pandas" if pandas_imported else ""}
        import runsync
        run = runsync.init(id="atexit", dir={str(tmp_path / 'runs')!r})
        for s in range(100):
            run.log({{"x": float(s)}})
        # no finish(): README says runs are finished at exit
        """,
        cwd=tmp_path,
    )
    assert r.returncode == 0
    view = runsync.open_run(tmp_path / "runs" / "atexit")
    assert view.history()["x"].tolist() == [float(s) for s in range(100)]
    assert (r.stdout, r.stderr) == ("", ""), "RUNSYNC_SILENT=1 means no output at all"
    assert view.status == "finished"
    assert not list((tmp_path / "runs" / "atexit" / "streams" / "main").glob("wal.*"))


def test_invalid_runsync_mode_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNSYNC_MODE", "onlien")
    with pytest.raises(ValueError, match="RUNSYNC_MODE") as info:
        runsync.init(dir=tmp_path / "runs")
    assert "onlien" in str(info.value)
    assert _all_files(tmp_path) == []


# -- sequencing ------------------------------------------------------------------------


def test_several_runs_one_after_another(root: Path) -> None:
    runsync.finish()  # whatever an earlier test left current
    ids = []
    for i in range(3):
        run = runsync.init(dir=root, config={"i": i})
        assert current_run() is run
        runsync.log({"i": i, "v": float(i)})
        run.log({"v": i + 0.5})
        runsync.finish()
        assert run.finished
        assert current_run() is None
        ids.append(run.id)
    for i in range(3, 5):
        with runsync.init(dir=root, config={"i": i}) as run:
            runsync.log({"i": i, "v": float(i)})
            run.log({"v": i + 0.5})
        assert run.finished and current_run() is None
        ids.append(run.id)
    assert len(set(ids)) == 5

    with pytest.raises(runsync.RunsyncError, match="init"):
        runsync.log({"x": 1.0})
    runsync.finish()  # no run: a no-op

    for i, rid in enumerate(ids):
        view = runsync.open_run(root / rid)
        assert view.status == "finished"
        assert view.config == {"i": i}
        wide = view.history()
        assert wide.step.tolist() == [0, 1]
        assert wide["v"].tolist() == [float(i), i + 0.5]
        assert wide["i"].tolist()[0] == i


def test_module_level_log_targets_the_latest_run(root: Path) -> None:
    a = runsync.init(dir=root, stream="a", id="two-open")
    b = runsync.init(dir=root, stream="b", id="two-open")
    runsync.log({"x": 1.0})  # goes to b, the current run
    a.log({"y": 2.0})
    runsync.finish()  # finishes b only
    assert b.finished and not a.finished
    a.finish()
    view = runsync.open_run(root / "two-open")
    rows = view.rows().to_pylist()
    assert {(r["stream"], r["key"]) for r in rows} == {("b", "x"), ("a", "y")}


def test_log_is_thread_safe(root: Path, fast: runsync.Settings) -> None:
    n_threads, n_calls = 8, 5000
    run = runsync.init(dir=root, settings=fast.with_(segment_size=256 << 10))
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for s in range(n_calls):
                if s % 2:  # fast path
                    run.log({f"t{t}/v": s * 10 + t}, step=s)
                elif s % 10:  # fast path, another schema
                    run.log({f"t{t}/f": s + t / 10, f"t{t}/v": s * 10 + t}, step=s)
                else:  # slow path: strings go into generic records
                    run.log({f"t{t}/f": s + t / 10, f"t{t}/v": s * 10 + t, f"t{t}/s": f"{t}-{s}"}, step=s)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    run.finish()
    assert errors == []

    df = pd.read_parquet(run.dir / "history")
    n_v = n_threads * n_calls
    n_f = n_threads * n_calls // 2
    n_s = n_threads * n_calls // 10
    assert len(df) == n_v + n_f + n_s
    assert df.seq.nunique() == n_threads * n_calls  # one seq per log() call
    for t in range(n_threads):
        v = df[df.key == f"t{t}/v"].sort_values("step")
        assert v.step.tolist() == list(range(n_calls))
        assert v.int.tolist() == [s * 10 + t for s in range(n_calls)]
        f = df[df.key == f"t{t}/f"].sort_values("step")
        assert f.value.tolist() == [s + t / 10 for s in range(0, n_calls, 2)]
        txt = df[df.key == f"t{t}/s"].sort_values("step")
        assert txt.text.tolist() == [f"{t}-{s}" for s in range(0, n_calls, 10)]
        # a thread's calls keep their order
        assert v.seq.is_monotonic_increasing
    wide = runsync.open_run(run.dir).history()
    assert len(wide) == n_calls
    assert wide[[f"t{t}/v" for t in range(n_threads)]].notna().all().all()


# -- summary and config ---------------------------------------------------------------


def test_manual_summary_sticks(root: Path, fast: runsync.Settings) -> None:
    run = runsync.init(dir=root, settings=fast)
    run.log({"loss": 9.0, "acc": 0.1, "gone": 1})
    run.summary["loss"] = 0.1
    run.log({"loss": 5.0, "acc": 0.2})
    run.log({"loss": 4.0, "acc": 0.3})
    assert run.summary["loss"] == 0.1
    assert run.summary["acc"] == 0.3
    assert run.summary["gone"] == 1
    del run.summary["gone"]
    assert "gone" not in run.summary
    with pytest.raises(KeyError):
        del run.summary["never"]
    run.summary["note"] = "by hand"
    live = runsync.open_run(run.dir).summary
    assert live["loss"] == 0.1 and live["acc"] == 0.3 and "gone" not in live
    run.finish()

    expected = {"loss": 0.1, "acc": 0.3, "note": "by hand"}
    assert runsync.open_run(run.dir).summary == expected
    doc = json.loads((run.dir / "streams" / "main" / "summary.json").read_text())
    assert doc["values"] == expected
    assert "loss" in doc["manual"] and "acc" not in doc["manual"]


def test_config_updates_are_visible(root: Path) -> None:
    cfg = {"lr": 1e-3, "np_f": np.float32(0.5), "np_i": np.int64(7), "np_b": np.bool_(True),
           "opt": {"name": "adam", "betas": (0.9, 0.999)}}
    run = runsync.init(dir=root, config=cfg)
    run.config["x"] = 1
    run.config.update({"y": np.float64(2.5), "opt": {"eps": 1e-8}}, z="s")
    assert run.config["x"] == 1
    with pytest.raises(TypeError):
        del run.config["x"]
    run.log({"a": 1.0})
    run.finish()

    expected = {"lr": 1e-3, "np_f": 0.5, "np_i": 7, "np_b": True,
                "opt": {"name": "adam", "betas": [0.9, 0.999], "eps": 1e-8}, "x": 1, "y": 2.5, "z": "s"}
    got = runsync.open_run(run.dir).config
    assert got == expected
    assert type(got["np_f"]) is float and type(got["np_i"]) is int and type(got["np_b"]) is bool
    assert type(got["y"]) is float
    raw = (run.dir / "streams" / "main" / "config.json").read_text()
    stored = json.loads(raw)["config"]
    assert stored == expected
    assert type(stored["np_i"]) is int and type(stored["np_b"]) is bool


# -- names and ids ------------------------------------------------------------------------


def test_names_and_ids(root: Path) -> None:
    made = []
    for _ in range(3):
        with runsync.init(dir=root) as run:
            assert re.match(r"^[a-z]+-[a-z]+-\d+$", run.name), run.name
            assert re.match(r"^[a-z0-9]{8}$", run.id), run.id
        made.append(run.id)
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for bad in ["UPPER", "a/b", "", "-lead", "with space", "x" * 65, "dot.ted", "../up"]:
        with pytest.raises(ValueError):
            runsync.init(dir=root, id=bad)
    assert sorted(p.name for p in root.iterdir()) == sorted(made)  # invalid ids created nothing


def test_status_running_then_finished(root: Path, fast: runsync.Settings) -> None:
    run = runsync.init(dir=root, settings=fast)
    run.log({"a": 1.0})
    view = runsync.open_run(run.dir)
    assert view.status == "running"
    assert view.streams()[0]["state"] == "running"
    assert view.history()["a"].tolist() == [1.0]  # the live tail is readable
    run.finish()
    assert view.status == "finished"
    assert runsync.open_run(run.dir).status == "finished"


# -- offline isolation ------------------------------------------------------------------------


def test_offline_opens_no_socket_and_imports_no_network_client(tmp_path: Path) -> None:
    code = f"""
        import json, socket, sys
        used = []
        _init, _connect = socket.socket.__init__, socket.socket.connect
        def init(self, *a, **k):
            used.append(("socket", repr(a)))
            return _init(self, *a, **k)
        def connect(self, *a, **k):
            used.append(("connect", repr(a)))
            return _connect(self, *a, **k)
        socket.socket.__init__ = init
        socket.socket.connect = connect

        import runsync
        run = runsync.init(dir={str(tmp_path / 'runs')!r}, config={{"lr": 0.1}})
        for s in range(2000):
            run.log({{"loss": 1.0 / (s + 1), "note": "n"}})
        run.summary["best"] = 0.5
        run.finish()
        view = runsync.open_run(run.dir)
        assert view.status == "finished"
        view.history(format="arrow")
        runsync.runs({str(tmp_path / 'runs')!r})
        mods = [m for m in ("requests", "urllib3", "http.client", "fsspec") if m in sys.modules]
        print(json.dumps({{"used": used, "mods": mods}}))
    """
    r = _run_py(code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"used": [], "mods": []}


def test_nothing_written_outside_the_run_root(tmp_path: Path) -> None:
    home, tmp, cwd, root = (tmp_path / n for n in ("home", "tmp", "cwd", "runs"))
    for d in (home, tmp, cwd, root):
        d.mkdir()
    code = f"""
        import runsync
        with runsync.init(dir={str(root)!r}, config={{"a": 1}}) as run:
            for s in range(3000):
                run.log({{"loss": float(s), "text": "t" + str(s)}})
            run.summary["x"] = 1
        print(run.dir)
    """
    env = {"HOME": str(home), "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp),
           "PYTHONDONTWRITEBYTECODE": "1"}
    for k in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[k] = str(home / k.lower())  # would show up inside HOME
    r = _run_py(code, cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    assert _all_files(home) == []
    assert _all_files(tmp) == []
    assert _all_files(cwd) == []
    run_dir = Path(r.stdout.strip())
    assert run_dir.parent == root and runsync.open_run(run_dir).status == "finished"
