"""TensorBoard: a SummaryWriter-only training loop also logs to the run (patch / init(sync_tensorboard=True))."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runsync

torch = pytest.importorskip("torch", reason="the 'integrations' extra is not installed (torch)")
pytest.importorskip("tensorboard", reason="the 'integrations' extra is not installed (tensorboard)")

from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from runsync.integrations import tensorboard as tb  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _unpatched() -> Iterator[None]:
    yield
    tb.unpatch()


def events(logdir: Path) -> list[Path]:
    return list(logdir.rglob("events.out.tfevents.*"))


def loop(writer: Any, steps: int = 5) -> None:
    for step in range(steps):
        writer.add_scalar("train/loss", 1.0 / (step + 1), global_step=step)
        writer.add_scalar("lr", torch.tensor(0.1), step)
    writer.add_scalars("val", {"loss": 0.5, "acc": torch.tensor([0.75])}, steps - 1)
    writer.add_histogram("weights", torch.arange(100, dtype=torch.float32), global_step=steps - 1)
    writer.add_image("sample", torch.rand(3, 4, 5), steps - 1)  # CHW
    writer.add_image("grey", np.full((4, 5), 255, dtype=np.uint8), steps - 1, dataformats="HW")
    writer.add_text("note", "hello", steps - 1)
    writer.close()


def check(view: Any, steps: int = 5) -> None:
    h = view.history()
    assert list(h.dropna(subset=["train/loss"])["step"]) == list(range(steps))
    assert h["train/loss"].iloc[-1] == pytest.approx(1.0 / steps) and h["lr"].iloc[0] == pytest.approx(0.1)
    last = h[h["step"] == steps - 1].iloc[0]
    assert last["val/loss"] == 0.5 and last["val/acc"] == 0.75
    (hist,) = view.media("weights")
    assert hist.step == steps - 1 and hist.value.counts.sum() == 100
    (img,) = view.media("sample")
    assert img.value.shape == (4, 5, 3)
    (grey,) = view.media("grey")
    assert grey.value.shape == (4, 5) and (grey.value == 255).all()
    (note,) = view.media("note")
    assert note.value == "hello"


def test_patch_logs_a_summary_writer_loop_and_keeps_the_event_files(root: Path, tmp_path: Path) -> None:
    assert tb.patch() and tb.patched()
    with runsync.init(dir=root) as run:
        loop(SummaryWriter(log_dir=str(tmp_path / "tb")))
    check(runsync.open_run(root / run.id))
    assert events(tmp_path / "tb")


def test_init_sync_tensorboard_patches(root: Path, tmp_path: Path) -> None:
    with runsync.init(dir=root, sync_tensorboard=True) as run:
        assert tb.patched()
        loop(SummaryWriter(log_dir=str(tmp_path / "tb")))
    check(runsync.open_run(root / run.id))


def test_without_a_run_the_writer_works_as_before(tmp_path: Path) -> None:
    tb.patch()
    loop(SummaryWriter(log_dir=str(tmp_path / "tb")))
    assert events(tmp_path / "tb")


def test_values_runsync_refuses_are_reported_and_the_writer_goes_on(root: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNSYNC_SILENT")
    tb.patch()
    with runsync.init(dir=root, system=False, console=False) as run:
        w = SummaryWriter(log_dir=str(tmp_path / "tb"))
        w.add_scalar("_reserved", 1.0, 0)  # a key runsync refuses (spec §5.1); TensorBoard takes it
        w.add_scalar("ok", 2.0, 0)
        w.close()
    assert "'_reserved'" in capsys.readouterr().err
    assert list(runsync.open_run(root / run.id).history()["ok"]) == [2.0]
    assert events(tmp_path / "tb")


def test_unpatch_restores_the_writer(root: Path, tmp_path: Path) -> None:
    original = SummaryWriter.add_scalar
    tb.patch()
    assert SummaryWriter.add_scalar is not original
    tb.unpatch()
    assert SummaryWriter.add_scalar is original


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="tensorboardX is not installed")
def test_tensorboardx_writer_is_patched_too(root: Path, tmp_path: Path) -> None:
    import tensorboardX

    assert "tensorboardX.writer" in tb.patch()
    with runsync.init(dir=root) as run:
        loop(tensorboardX.SummaryWriter(logdir=str(tmp_path / "tbx")))
    check(runsync.open_run(root / run.id))
    assert events(tmp_path / "tbx")
