"""W&B's API as a drop-in (issue 15): each surface in the shape W&B's public docs show, checked on disk."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runsync
from runsync.format.meta import ConfigDoc, RunInfo, load_doc


def _view(run: runsync.Run) -> Any:
    assert run.dir is not None
    return runsync.open_run(run.dir)


@pytest.fixture(autouse=True)
def _no_wandb_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_NAME", "WANDB_NOTES", "WANDB_TAGS",
                "WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_DIR", "WANDB_SILENT", "WANDB_MODE", "WANDB_ENTITY",
                "WANDB_DISABLE_CODE", "WANDB_IGNORE_GLOBS", "RUNSYNC_RUN_ID", "RUNSYNC_RESUME", "RUNSYNC_NAME",
                "RUNSYNC_TAGS", "RUNSYNC_NOTES", "RUNSYNC_GROUP", "RUNSYNC_JOB_TYPE", "RUNSYNC_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    yield
    runsync.finish()


# -- the silent failures -------------------------------------------------------------------------


def test_config_and_summary_attribute_assignment_is_recorded(root: Path) -> None:
    run = runsync.init(dir=root, config={"lr": 0.1})
    run.config.batch_size = 64
    run.config.opt = {"name": "adam", "betas": [0.9, 0.99]}
    assert run.config["batch_size"] == 64 and run.config.batch_size == 64 and run.config.lr == 0.1
    assert getattr(run.config, "missing", "default") == "default"
    run.summary.best = 0.25
    assert run.summary["best"] == 0.25 and run.summary.best == 0.25
    run.log({"acc": 0.5})
    del run.summary.acc
    assert "acc" not in run.summary
    run.finish()
    view = _view(run)
    assert view.config == {"lr": 0.1, "batch_size": 64, "opt": {"name": "adam", "betas": [0.9, 0.99]}}
    assert view.summary == {"best": 0.25}
    assert "batch_size" not in vars(run.config) and "best" not in vars(run.summary)


def test_allow_val_change_is_an_argument_not_a_key(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RUNSYNC_SILENT")
    run = runsync.init(dir=root, config={"lr": 0.1, "epochs": 3})
    capsys.readouterr()
    run.config.update({"lr": 0.2}, allow_val_change=True)
    assert "lr" not in capsys.readouterr().err
    run.config.update({"epochs": 5})  # W&B refuses this; runsync records it and says so once
    run.config.epochs = 6
    err = capsys.readouterr().err
    assert err.count("'epochs' changed") == 1 and "allow_val_change=True" in err
    run.finish()
    assert _view(run).config == {"lr": 0.2, "epochs": 6}
    # init(allow_val_change=True) allows every change, silently
    run2 = runsync.init(dir=root, config={"lr": 0.1}, allow_val_change=True)
    capsys.readouterr()
    run2.config.lr = 0.3
    assert "changed" not in capsys.readouterr().err
    run2.finish()
    assert "allow_val_change" not in _view(run2).config


def test_resume_never_must_allow_auto(root: Path) -> None:
    with runsync.init(dir=root, id="r1") as run:
        run.log({"x": 1.0})
    with pytest.raises(runsync.RunsyncError, match=r"resume='never'.*r1 already exists"):
        runsync.init(dir=root, id="r1", resume="never")
    with pytest.raises(runsync.RunsyncError, match=r"no run missing1 in .* to continue"):
        runsync.init(dir=root, id="missing1", resume="must")
    assert not (root / "missing1").exists()
    with pytest.raises(runsync.RunsyncError, match=r"needs the id"):
        runsync.init(dir=root, resume="must")
    with pytest.raises(ValueError, match=r"'sometimes' is not one of"):
        runsync.init(dir=root, id="r1", resume="sometimes")
    for mode in ("must", "allow", "auto", True, "MUST"):
        with runsync.init(dir=root, id="r1", resume=mode) as run:
            assert run.resumed
            run.log({"x": 2.0})
    with runsync.init(dir=root, id="fresh", resume="never") as run:
        assert not run.resumed
    with runsync.init(dir=root, id="fresh2", resume="allow") as run:
        assert not run.resumed
        run.log({"x": 1.0})
    with pytest.raises(runsync.StreamClaimedError):  # False: a new run, or a new stream of an existing one
        runsync.init(dir=root, id="r1", resume=False)
    assert _view(run).history()["x"].tolist() == [1.0]
    assert runsync.open_run(root / "r1").history()["x"].tolist() == [1.0] + [2.0] * 5


def test_wandb_run_id_and_resume_from_the_environment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_RUN_ID", "slurm42")
    monkeypatch.setenv("WANDB_RESUME", "allow")
    with runsync.init(dir=root) as run:  # a SLURM job's first attempt
        assert run.id == "slurm42" and not run.resumed
        run.log({"loss": 1.0})
    with runsync.init(dir=root) as run:  # its requeued attempt continues the same run
        assert run.id == "slurm42" and run.resumed and run.step == 1
        run.log({"loss": 0.5})
    assert runsync.open_run(root / "slurm42").history()["loss"].tolist() == [1.0, 0.5]
    monkeypatch.setenv("WANDB_RESUME", "never")
    with pytest.raises(runsync.RunsyncError, match="already exists"):
        runsync.init(dir=root)
    monkeypatch.setenv("RUNSYNC_RESUME", "must")  # runsync's own variable wins
    monkeypatch.setenv("RUNSYNC_RUN_ID", "other")
    with pytest.raises(runsync.RunsyncError, match="no run other"):
        runsync.init(dir=root)
    monkeypatch.setenv("WANDB_RESUME", "perhaps")
    monkeypatch.delenv("RUNSYNC_RESUME")
    with pytest.raises(ValueError, match="WANDB_RESUME"):
        runsync.init(dir=root)


# -- module level ---------------------------------------------------------------------------------


def test_module_level_run_config_summary(root: Path) -> None:
    assert runsync.run is None
    with pytest.raises(runsync.RunsyncError, match=r"runsync.config.lr used with no active run.*runsync.init"):
        runsync.config.lr = 0.1
    with pytest.raises(runsync.RunsyncError, match=r"runsync.summary\['best'\]"):
        runsync.summary["best"]
    with pytest.raises(runsync.RunsyncError, match="no active run"):
        runsync.save("x.txt")
    with pytest.raises(runsync.RunsyncError, match="no active run"):
        runsync.define_metric("loss", summary="min")
    run = runsync.init(dir=root, config={"epochs": 2})
    assert runsync.run is run
    runsync.config.lr = 0.01
    runsync.config.update({"wd": 0.1})
    runsync.summary["best"] = 1.0
    runsync.summary.update({"final": 2.0})
    assert runsync.config.epochs == 2 and run.config["lr"] == 0.01 and run.summary["final"] == 2.0
    runsync.log({"loss": 1.0})
    runsync.finish()
    assert runsync.run is None
    with pytest.raises(runsync.RunsyncError):
        runsync.config["lr"]
    view = _view(run)
    assert view.config == {"epochs": 2, "lr": 0.01, "wd": 0.1}
    assert view.summary == {"best": 1.0, "final": 2.0, "loss": 1.0}


def test_module_level_save_alert_login_watch(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "notes.tmp").write_bytes(b"scratch")
    monkeypatch.setenv("WANDB_IGNORE_GLOBS", "*.tmp")
    assert runsync.login(key="0123456789abcdef" * 2) is True
    run = runsync.init(dir=root)
    assert runsync.save("model.pt") == ["model.pt"]
    assert runsync.save("notes.tmp") == []  # WANDB_IGNORE_GLOBS
    runsync.alert(title="loss spiked", text="loss 9.1 at step 3", level="WARN")
    runsync.watch(object(), log="all", log_freq=10)  # accepted; records nothing yet
    runsync.unwatch()
    run.log_code(".")
    run.mark_preempting()
    run.finish()
    view = _view(run)
    assert sorted(view.files()) == ["model.pt"]
    items = view.media("alerts")
    assert [i.value for i in items] == ["[WARN] loss spiked: loss 9.1 at step 3"]
    assert [i.caption for i in items] == ["loss spiked"]
    text = "\n".join(p.read_text(errors="replace") for p in run.dir.rglob("*") if p.is_file()
                     and p.suffix in (".json", ".txt", ".log"))
    assert "0123456789abcdef" not in text  # the key is never stored


def test_import_stays_lazy_and_run_is_none() -> None:
    import subprocess
    import sys

    code = ("import sys, runsync; assert runsync.run is None; "
            "print(sorted(m for m in ('pyarrow', 'numpy', 'runsync.writer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- config sources --------------------------------------------------------------------------------


class _AbslFlags:
    """What absl's FLAGS offers W&B: ``flag_values_dict()``."""

    def __init__(self, **values: Any) -> None:
        self._values = values

    def flag_values_dict(self) -> dict[str, Any]:
        return dict(self._values)


def test_config_from_namespace_flags_and_nested_dicts(root: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(["--lr", "0.05"])
    run = runsync.init(dir=root, config=args, config_exclude_keys=["layers"])
    run.config.update(_AbslFlags(dropout=0.1, name="x"))
    run.config.update({"opt": {"name": "adam"}})
    run.config.update({"opt": {"eps": 1e-8}})  # nested dicts merge key by key (spec §3.2)
    run.config.setdefaults({"lr": 9.0, "warmup": 10})
    run.config.update(argparse.Namespace(seed=3), extra=True)
    with pytest.raises(TypeError, match="argparse.Namespace"):
        run.config.update(42)
    with pytest.raises(TypeError, match="got object"):
        run.config.update(object())

    @dataclasses.dataclass
    class Optim:
        momentum: float = 0.9

    run.config.update(Optim())
    run.config.update([("pairs", 1)])
    run.finish()
    assert _view(run).config == {"lr": 0.05, "dropout": 0.1, "name": "x", "opt": {"name": "adam", "eps": 1e-8},
                                 "warmup": 10, "seed": 3, "extra": True, "momentum": 0.9, "pairs": 1}
    run2 = runsync.init(dir=root, config=_AbslFlags(a=1, b=2), config_include_keys=["a"])
    run2.finish()
    assert _view(run2).config == {"a": 1}


# -- init's arguments ------------------------------------------------------------------------------


def test_init_takes_every_wandb_argument(root: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from runsync.writer import settings as settings_mod

    monkeypatch.setattr(settings_mod, "_notices", set())  # each notice once per process: start afresh
    monkeypatch.delenv("RUNSYNC_SILENT")
    monkeypatch.setenv("RUNSYNC_CONSOLE", "")  # let settings=... decide
    run = runsync.init(
        entity="vision-team", project="resnet", dir=root, id="all-args", name="baseline", notes="first try",
        tags=["baseline", "r50"], config={"lr": 0.1}, config_exclude_keys=None, config_include_keys=None,
        allow_val_change=True, group="sweep-1", job_type="train", mode="offline", force=False, anonymous="allow",
        reinit=True, resume="allow", resume_from=None, fork_from=None, save_code=True, tensorboard=False,
        sync_tensorboard=True, monitor_gym=True, magic=True,
        settings=runsync.Settings(start_method="thread", _disable_stats=True, console="off"))
    run.log({"loss": 1.0})
    run.finish()
    err = capsys.readouterr().err
    import importlib.util

    words = ["monitor_gym", "magic", "anonymous", "start_method"]
    try:
        tensorboard = importlib.util.find_spec("runsync.integrations.tensorboard") is not None
    except ImportError:
        tensorboard = False
    if not tensorboard:
        words.append("sync_tensorboard")  # accepted; said once that nothing records TensorBoard here
    for word in words:
        assert err.count(word) >= 1, word
    doc = json.loads((root / "all-args" / "run.json").read_text())
    assert {k: doc[k] for k in ("entity", "project", "name", "notes", "tags", "group", "job_type")} == {
        "entity": "vision-team", "project": "resnet", "name": "baseline", "notes": "first try",
        "tags": ["baseline", "r50"], "group": "sweep-1", "job_type": "train"}
    assert not (root / "all-args" / "console").exists()  # W&B's console="off" setting
    from runsync.writer.init_args import resolve_settings

    used = resolve_settings(runsync.Settings(_disable_stats=True, console="off", silent=True, mode="online"))
    assert used.overrides == {"system": False, "console": False, "silent": True}  # mode=online: offline
    assert resolve_settings({"console": "wrap", "flush_interval": 0.5}).settings.flush_interval == 0.5
    assert (run.entity, run.group, run.job_type, run.notes, run.tags) == (
        "vision-team", "sweep-1", "train", "first try", ("baseline", "r50"))
    assert run.path == "vision-team/resnet/all-args"


def test_run_json_before_entity_still_reads(tmp_path: Path) -> None:
    old = {"id": "old1", "name": "n", "project": "p", "created": 1.0, "tags": [], "format": "1.2"}
    (tmp_path / "run.json").write_text(json.dumps(old))
    info = load_doc(RunInfo, tmp_path / "run.json")
    assert info.entity is None and info.id == "old1"


def test_reinit(root: Path) -> None:
    first = runsync.init(dir=root)
    assert runsync.init(dir=root, reinit="return_previous") is first
    second = runsync.init(dir=root, reinit=True)  # finishes the previous run
    assert first.finished and runsync.run is second
    third = runsync.init(dir=root)  # default: a new run next to the active one
    assert not second.finished and runsync.run is third
    with pytest.raises(ValueError, match="reinit"):
        runsync.init(dir=root, reinit="sometimes")
    second.finish()
    third.finish()


# -- WANDB_* environment ---------------------------------------------------------------------------


def test_wandb_environment_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wdir"))
    monkeypatch.setenv("WANDB_PROJECT", "wproj")
    monkeypatch.setenv("WANDB_NAME", "wname")
    monkeypatch.setenv("WANDB_NOTES", "wnotes")
    monkeypatch.setenv("WANDB_TAGS", "a, b,c")
    monkeypatch.setenv("WANDB_RUN_GROUP", "wgroup")
    monkeypatch.setenv("WANDB_JOB_TYPE", "eval")
    monkeypatch.setenv("WANDB_ENTITY", "went")
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    with runsync.init() as run:
        assert run.dir is not None and run.dir.parent == tmp_path / "wdir"
        assert (run.project, run.name, run.notes, run.tags, run.group, run.job_type, run.entity, run.mode) == (
            "wproj", "wname", "wnotes", ("a", "b", "c"), "wgroup", "eval", "went", "offline")
    assert runsync.runs()["id"].tolist() == [run.id]  # readers look in WANDB_DIR too
    monkeypatch.setenv("RUNSYNC_PROJECT", "mine")  # runsync's own variable wins
    monkeypatch.setenv("RUNSYNC_DIR", str(tmp_path / "rdir"))
    with runsync.init() as run:
        assert run.project == "mine" and run.dir is not None and run.dir.parent == tmp_path / "rdir"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with runsync.init() as run:
        assert run.mode == "disabled" and run.dir is None
        run.log({"x": 1.0})


def test_wandb_mode_online_stays_offline_with_one_notice(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from runsync.writer import settings as settings_mod

    monkeypatch.setattr(settings_mod, "_notices", set())
    monkeypatch.delenv("RUNSYNC_SILENT")
    monkeypatch.setenv("WANDB_MODE", "online")
    for _ in range(2):
        with runsync.init(dir=root) as run:
            assert run.mode == "offline"
    assert capsys.readouterr().err.count("WANDB_MODE=online ignored") == 1
    monkeypatch.setenv("WANDB_SILENT", "true")
    with runsync.init(dir=root, mode="offline"):
        pass
    assert capsys.readouterr().err == ""


def test_wandb_disable_code(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runsync.writer.settings import env_switch

    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    assert env_switch("RUNSYNC_DISABLE_CODE", None, default=False) is True
    monkeypatch.setenv("RUNSYNC_DISABLE_CODE", "false")
    assert env_switch("RUNSYNC_DISABLE_CODE", None, default=False) is False


# -- log() ------------------------------------------------------------------------------------------


class _FakeTensor:
    """A stand-in for a CPU torch tensor (torch is not installed here): what runsync uses of one."""

    def __init__(self, values: Any) -> None:
        self._a = np.asarray(values, dtype=np.float32)
        self.shape = self._a.shape

    def numel(self) -> int:
        return int(self._a.size)

    def item(self) -> float:
        return float(self._a.reshape(-1)[0]) if self._a.size == 1 else float("nan")

    def detach(self) -> _FakeTensor:
        return self

    def cpu(self) -> _FakeTensor:
        return self

    def double(self) -> _FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self._a

    def is_complex(self) -> bool:
        return False

    @property
    def dtype(self) -> Any:
        return type("dtype", (), {"is_complex": False})()


_FakeTensor.__module__ = "torch"


def test_log_signature_as_wandb(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"a": 1.0}, commit=False)
        run.log({"b": 2.0}, commit=False)
        run.log()  # commits step 0
        runsync.log({"c": 3.0})  # step 1
        runsync.log({"d": 4.0}, step=10)
        runsync.log({"e": 5.0}, commit=False, sync=False)
        runsync.log()
        assert run.step == 12
    wide = _view(run).history()
    assert wide.step.tolist() == [0, 1, 10, 11]
    row0 = wide[wide.step == 0].iloc[0]
    assert row0["a"] == 1.0 and row0["b"] == 2.0
    assert wide[wide.step == 11].iloc[0]["e"] == 5.0


def test_log_tensors_arrays_and_lists(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"np0": np.float32(0.5), "np1": np.array([0.25]), "np11": np.array([[3]]),
                 "t0": _FakeTensor(1.5), "t1": _FakeTensor([2.5]), "grads": _FakeTensor(np.arange(10)),
                 "losses": [0.1, 0.2, 0.3, 0.4, 0.5], "arr": np.arange(100).reshape(10, 10)})
    view = _view(run)
    wide = view.history()
    assert wide["np0"].iloc[0] == 0.5 and wide["np1"].iloc[0] == 0.25 and wide["np11"].iloc[0] == 3
    assert wide["t0"].iloc[0] == 1.5 and wide["t1"].iloc[0] == 2.5
    hists = {k: view.media(k)[0].value for k in ("grads", "losses", "arr")}
    for key, n in (("grads", 10), ("losses", 5), ("arr", 100)):
        assert view.media(key)[0].kind == "histogram"
        assert int(hists[key].counts.sum()) == n, key


# -- define_metric ----------------------------------------------------------------------------------


def test_define_metric_summaries(root: Path) -> None:
    run = runsync.init(dir=root)
    runsync.define_metric("epoch", hidden=True)
    runsync.define_metric("loss", summary="min")
    runsync.define_metric("loss", summary="max")  # W&B adds summaries: both min and max
    run.define_metric("acc", summary="best", goal="maximize")
    run.define_metric("val/*", step_metric="epoch", summary="mean,last")
    run.define_metric("noisy", summary="none")
    run.define_metric("plain", summary="last")
    with pytest.raises(ValueError, match="needs goal"):
        run.define_metric("x", summary="best")
    with pytest.raises(ValueError, match="unknown summary median"):
        run.define_metric("x", summary="median")
    with pytest.raises(ValueError, match="goal must be"):
        run.define_metric("x", goal="up")
    losses, accs = [3.0, 1.0, 2.0], [0.2, 0.9, 0.5]
    for epoch, (loss, acc) in enumerate(zip(losses, accs)):
        runsync.log({"epoch": epoch, "loss": loss, "acc": acc, "val": {"loss": loss * 2}, "noisy": epoch,
                     "plain": epoch})
    assert run.summary["loss"] == {"min": 1.0, "max": 3.0}
    run.finish()
    view = _view(run)
    s = view.summary
    assert s["loss"] == {"min": 1.0, "max": 3.0}
    assert s["acc"] == {"best": 0.9}
    assert s["val/loss"] == {"mean": 4.0, "last": 4.0}
    assert "noisy" not in s and s["plain"] == 2 and s["epoch"] == 2
    assert view.history()["loss"].tolist() == losses  # history is untouched
    doc = load_doc(ConfigDoc, run.dir / "streams" / "main" / "config.json")
    assert doc.config == {}
    assert doc.metrics["val/*"] == {"name": "val/*", "step_metric": "epoch", "summary": ["mean", "last"],
                                    "goal": None, "hidden": False}
    assert doc.metrics["epoch"]["hidden"] is True and doc.metrics["loss"]["summary"] == ["min", "max"]


def test_define_metric_is_in_the_wal_before_any_flush(root: Path) -> None:
    """The definition is a WAL record (spec §8.3.5): a reader applying the tail sees it before config.json has it."""
    from runsync.format.layout import RunLayout
    from runsync.format.tail import stream_tails

    run = runsync.init(dir=root, settings=runsync.Settings(flush_interval=60, part_interval=60))
    run.define_metric("loss", step_metric="epoch")
    layout = RunLayout(run.dir)
    doc = ConfigDoc()
    for _inc, cols in stream_tails(layout.stream("main"), -1, parts_dir=layout.history).tails:
        doc.apply(cols.meta)
    assert doc.metrics["loss"]["step_metric"] == "epoch"
    run.finish()
    assert load_doc(ConfigDoc, layout.stream("main").config).metrics["loss"]["step_metric"] == "epoch"


# -- run attributes ---------------------------------------------------------------------------------


def test_run_attributes(root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = runsync.init(dir=root, project="p", name="n1", group="g", tags=["t"], notes="hello", id="attrs")
    assert (run.id, run.name, run.project, run.group, run.tags, run.notes) == ("attrs", "n1", "p", "g", ("t",),
                                                                              "hello")
    assert run.dir == root / "attrs"
    assert run.url == (root / "attrs").resolve().as_uri() and run.url.startswith("file://")
    assert run.get_url() == run.url
    monkeypatch.delenv("RUNSYNC_SILENT")
    run._reporter.silent = False
    run.name = "renamed"  # W&B renames; run.json is written once: said, not silently dropped
    assert "run.name = 'renamed' not recorded" in capsys.readouterr().err
    assert run.name == "n1"
    run.finish()
    assert json.loads((root / "attrs" / "run.json").read_text())["name"] == "n1"
    disabled = runsync.init(mode="disabled")
    assert disabled.url is None and disabled.dir is None
    disabled.finish()


# -- a whole training script written for W&B ----------------------------------------------------------


def test_wandb_style_training_script_runs_with_only_the_import_changed(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from conftest import env_without_runsync

    src = Path(__file__).parent / "wandb_script"
    work = tmp_path / "work"
    shutil.copytree(src, work)
    assert "import wandb" not in "\n".join(p.read_text() for p in work.glob("*.py"))
    env = env_without_runsync()
    env.update(WANDB_DIR=str(tmp_path / "wandb_runs"), WANDB_SILENT="true", WANDB_RUN_ID="script1",
               PYTHONPATH=str(Path(runsync.__file__).parent.parent))
    out = subprocess.run([sys.executable, "train.py", "--epochs", "3", "--lr", "0.05"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "wandb_runs" / "script1"
    assert f"run-dir {run_dir}" in out.stdout
    view = runsync.open_run(run_dir)
    assert view.status == "finished"
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["project"], info["entity"], info["group"], info["job_type"], info["tags"]) == (
        "wandb-style", "lab", "ablation", "train", ["baseline"])
    assert view.config == {"lr": 0.05, "epochs": 3, "batch_size": 32, "dim": 8, "optimizer": "sgd", "seed": 7}
    wide = view.history()
    per_epoch = wide.dropna(subset=["val/loss"])
    assert per_epoch["epoch"].tolist() == [0, 1, 2]
    assert wide["train/loss"].notna().sum() == 3 * 8  # 256 rows / 32 per batch, 3 epochs
    val = per_epoch["val/loss"].tolist()
    s = view.summary
    assert s["val/loss"] == {"min": min(val)} and s["best_val_loss"] == min(val)
    train = wide["train/loss"].dropna().tolist()
    assert s["train/loss"] == {"mean": pytest.approx(sum(train) / len(train)), "last": train[-1]}
    assert {"weights", "weights_hist", "val/pred"} <= set(view.media_keys())
    assert [m.kind for m in view.media("val/pred")] == ["image"] * 3
    assert [m.kind for m in view.media("weights")] == ["histogram"] * 3
    assert wide["w0"].notna().sum() == 3
    assert sorted(view.files()) == ["model.npz"]
    doc = load_doc(ConfigDoc, run_dir / "streams" / "main" / "config.json")
    assert doc.metrics["val/*"]["step_metric"] == "epoch"


def test_histogram_takes_wandbs_arguments(root: Path) -> None:
    data = np.arange(100, dtype=float)
    with runsync.init(dir=root) as run:
        run.log({"seq": runsync.Histogram(sequence=data, num_bins=10),
                 "np": runsync.Histogram(np_histogram=np.histogram(data, bins=5))})
    view = _view(run)
    seq, nph = view.media("seq")[0].value, view.media("np")[0].value
    assert len(seq.counts) == 10 and int(seq.counts.sum()) == 100
    assert nph.counts.tolist() == [20] * 5 and nph.edges.tolist() == np.histogram(data, bins=5)[1].tolist()
    with pytest.raises(ValueError, match="np_histogram"):
        runsync.Histogram()
    with pytest.raises(ValueError, match="not both"):
        runsync.Histogram([1.0], np_histogram=([1], [0.0, 1.0]))


def test_resume_auto_without_id_continues_what_the_script_left_unfinished(tmp_path: Path) -> None:
    """W&B's resume=True / "auto" with no id: a requeued job continues its crashed run; after a clean
    finish the next start is a new run; another script in the same place does not pick it up."""
    import subprocess
    import sys

    from conftest import env_without_runsync

    script = tmp_path / "job.py"
    script.write_text(
        "import sys, runsync as wandb\n"
        "run = wandb.init(dir='runs', resume=sys.argv[1] if sys.argv[1] != 'True' else True)\n"
        "print(run.id, run.resumed, run.step)\n"
        "wandb.log({'x': 1.0})\n"
        "if sys.argv[2] == 'crash':\n"
        "    raise RuntimeError('preempted')\n")
    other = tmp_path / "other.py"
    other.write_text(script.read_text())
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", PYTHONPATH=str(Path(runsync.__file__).parent.parent))

    def start(path: Path, resume: str, how: str) -> tuple[str, bool, int]:
        out = subprocess.run([sys.executable, str(path), resume, how], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == (1 if how == "crash" else 0), out.stderr
        rid, resumed, step = out.stdout.split()
        return rid, resumed == "True", int(step)

    first, resumed, _ = start(script, "auto", "crash")
    assert not resumed
    assert start(other, "auto", "ok")[0] != first  # another script: its own run
    assert start(script, "True", "crash") == (first, True, 1)
    assert start(script, "allow", "ok")[0] != first  # no id and not auto: a new run, the hint stays
    assert start(script, "auto", "ok") == (first, True, 2)  # finishes cleanly: the hint is removed
    again, resumed, _ = start(script, "auto", "ok")
    assert again != first and not resumed
    assert runsync.open_run(tmp_path / "runs" / first).history()["x"].tolist() == [1.0, 1.0, 1.0]
    assert (tmp_path / "runs" / ".resume").is_dir()  # the hints: not a run, never listed
    assert len(runsync.runs(tmp_path / "runs")) == len([p for p in (tmp_path / "runs").iterdir()
                                                        if (p / "run.json").exists()]) == 4


def test_step_metric_is_the_reports_default_x_axis(root: Path) -> None:
    """define_metric(step_metric=): the report plots the key against it by default (spec §3.2)."""
    from runsync.reader.metrics import metric_definitions
    from runsync.report.build import collect

    for rid in ("sm-a", "sm-b"):
        with runsync.init(dir=root, id=rid) as run:
            run.define_metric("val/*", step_metric="epoch")
            run.define_metric("val/acc", summary="max")  # the exact name governs val/acc: no step_metric
            for step in range(30):
                run.log({"train/loss": 1.0 / (step + 1)})
                if step % 10 == 9:
                    run.log({"epoch": step // 10, "val/loss": 0.5 / (step + 1), "val/acc": step / 30})
    assert metric_definitions(root / "sm-a")["val/*"]["step_metric"] == "epoch"
    data = collect(root)
    assert data["step_metrics"] == {"val/loss": "epoch"}
    for r in data["runs"]:
        assert "epoch" in r["history"]["x"]
    with runsync.init(dir=root, id="sm-c") as run:  # a run that plots val/loss against step: no shared default
        run.log({"val/loss": 0.1, "epoch": 0})
        run.log({"val/loss": 0.05, "epoch": 1})
    assert collect(root)["step_metrics"] == {}


def test_governing_definition_exact_then_longest_glob() -> None:
    from runsync.format.meta import governing_metric

    defs = {"*": 1, "val/*": 2, "val/loss*": 3, "val/acc": 4}
    assert [governing_metric(defs, k) for k in ("val/acc", "val/loss_x", "val/f1", "train/x")] == [4, 3, 2, 1]
    assert governing_metric({"a/*": 1}, "b") is None


def test_show_leaves_hidden_metrics_out_of_its_default_sparklines(root: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from runsync.cli import main

    with runsync.init(dir=root, id="hid") as run:
        run.define_metric("internal/*", hidden=True)
        for i in range(5):
            run.log({"loss": 1.0 / (i + 1), "internal/lr": 0.1 * i})
    assert main(["show", "hid", "--dir", str(root)]) == 0
    metrics = capsys.readouterr().out.split("\nmetrics", 1)[1]
    assert "loss" in metrics and "internal/lr" not in metrics
    assert main(["show", "hid", "--dir", str(root), "--keys", "internal/lr"]) == 0
    assert "internal/lr" in capsys.readouterr().out.split("\nmetrics", 1)[1]
