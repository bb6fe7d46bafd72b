"""`runsync import tensorboard` and `runsync export tensorboard` (issue 17) on event files written by the real
tensorboardX (and torch.utils.tensorboard when torch is installed), read back with TensorBoard's own loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install 'runsync[tensorboard]'")
tbx = pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed (tensorboardX)")

from convert_util import cli, cli_here, run_dirs, series, times, tree

import runsync

VALUES = [0.1 * i + 1e-9 for i in range(20)]  # not exact in float32
T0 = 1_700_000_000.123456


def _write_tbx(logdir: Path, steps: range, hparams: bool = True) -> None:
    from tensorboardX.summary import hparams as hp

    with tbx.SummaryWriter(logdir=str(logdir)) as w:
        if hparams:
            for s in hp({"lr": 0.001, "batch": 32, "opt": "adam", "wd": True}, {}):
                w._get_file_writer().add_summary(s)
        for i in steps:
            w.add_scalar("train/loss", VALUES[i], 10 * i, walltime=T0 + i)
            w.add_scalar("acc", VALUES[i] / 2, 10 * i, walltime=T0 + i)
        if 0 in steps:
            rng = np.random.default_rng(0)
            w.add_histogram("weights", rng.normal(size=1000), 0, walltime=T0)
            w.add_image("sample", rng.integers(0, 255, (8, 6, 3), dtype=np.uint8), 0, walltime=T0,
                        dataformats="HWC")
            w.add_text("note", "hello *tensorboard*", 0, walltime=T0)


def test_import_tensorboardx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs, root = tmp_path / "logs", tmp_path / "runs"
    _write_tbx(logs / "exp1", range(10))
    r = cli("import", "tensorboard", str(logs), "--dir", str(root))
    assert "imported" in r.stdout
    [run_dir] = run_dirs(root)
    view = runsync.open_run(run_dir)
    assert view.name == "exp1"
    assert view.info.source == {"kind": "tensorboard", "uri": str((logs / "exp1").resolve()),
                                "id": str((logs / "exp1").resolve())}
    assert series(view, "train/loss") == [(10 * i, float(np.float32(VALUES[i]))) for i in range(10)]
    assert series(view, "acc") == [(10 * i, float(np.float32(VALUES[i] / 2))) for i in range(10)]
    assert times(view, "acc") == [(10 * i, round((T0 + i) * 1e6)) for i in range(10)]
    assert view.config == {"lr": 0.001, "batch": 32, "opt": "adam", "wd": True}
    assert [m.kind for m in view.media("weights")] == ["histogram"]
    assert int(view.media("weights")[0].value.counts.sum()) == 1000
    [img] = view.media("sample")
    assert img.value.shape == (8, 6, 3)
    assert [m.value for m in view.media("note")] == ["hello *tensorboard*"]
    assert view.status == "finished"

    # the same source again adds nothing; a source that grew adds only its new rows
    before = tree(run_dir)
    _rc, out, _err = cli_here(capsys, "import", "tensorboard", str(logs), "--dir", str(root))
    assert "unchanged" in out and tree(run_dir) == before
    _write_tbx(logs / "exp1", range(10, 15), hparams=False)
    _rc, out, _err = cli_here(capsys, "import", "tensorboard", str(logs), "--dir", str(root))
    assert "updated" in out and " 10 new rows" in out, out
    view = runsync.open_run(run_dir)
    assert series(view, "train/loss") == [(10 * i, float(np.float32(VALUES[i]))) for i in range(15)]
    rows = view.rows(["train/loss"])
    assert rows.num_rows == 15  # no row stored twice
    assert len(view.media("weights")) == 1


def test_round_trip(root: Path, tmp_path: Path) -> None:
    """runsync → export tensorboard → import tensorboard → the same steps, float32 values, config, media."""
    with runsync.init(dir=root, name="rt", config={"lr": 0.5, "layers": 3, "act": "relu"}) as run:
        for i in range(12):
            run.log({"loss": 1.0 / (i + 1), "n": i, "ok": i % 2 == 0}, step=i * 3)
        run.log({"hist": runsync.Histogram(np.arange(100.0), bins=10),
                 "img": runsync.Image(np.full((4, 5), 200, np.uint8)), "txt": runsync.Text("done")}, step=36)
        run_id = run.id
    src = runsync.open_run(root / run_id)
    out = tmp_path / "tb"
    r = cli("export", "tensorboard", run_id, "--dir", str(root), "-o", str(out))
    assert str(out / "rt") in r.stdout
    r = cli("export", "tensorboard", run_id, "--dir", str(root), "-o", str(out), check=False)
    assert r.returncode == 1 and "already holds TensorBoard event files" in r.stderr  # never shown twice
    back_root = tmp_path / "back"
    cli("import", "tensorboard", str(out), "--dir", str(back_root))
    [back_dir] = run_dirs(back_root)
    back = runsync.open_run(back_dir)
    assert back.name == "rt"
    for key in ("loss", "n", "ok"):
        want = [(s, float(np.float32(v))) for s, v in series(src, key)]
        assert series(back, key) == want, key
        assert times(back, key) == times(src, key)
    assert back.config == {"lr": 0.5, "layers": 3, "act": "relu"}
    for key in ("hist", "img", "txt"):
        assert len(back.media(key)) == len(src.media(key)) == 1
    h0, h1 = src.media("hist")[0].value, back.media("hist")[0].value
    assert h1.counts.tolist() == h0.counts.tolist()
    assert h1.edges.astype(np.float32).tolist() == h0.edges.astype(np.float32).tolist()  # tensorboardX: float32
    grey, rgb = src.media("img")[0].value, back.media("img")[0].value  # TensorBoard images are RGB
    assert grey.shape == (4, 5) and all(np.array_equal(rgb[:, :, c], grey) for c in range(3))
    assert back.media("txt")[0].value == "done"


def test_damaged_event_file(tmp_path: Path) -> None:
    """A cut file keeps every whole record; a record failing its CRC is skipped alone; both are reported."""
    logs, root = tmp_path / "logs", tmp_path / "runs"
    _write_tbx(logs / "cut", range(10), hparams=False)
    _write_tbx(logs / "flip", range(10), hparams=False)
    [ev] = list((logs / "cut").glob("events.out.tfevents.*"))
    data = ev.read_bytes()
    ev.write_bytes(data[: len(data) - 10])  # into the last record (the text)
    [ev] = list((logs / "flip").glob("events.out.tfevents.*"))
    data = bytearray(ev.read_bytes())
    at = data.index(b"train/loss", data.index(b"train/loss") + 1)  # inside the second scalar record's data
    data[at] ^= 0xFF
    ev.write_bytes(bytes(data))
    r = cli("import", "tensorboard", str(logs), "--dir", str(root))
    assert "Traceback" not in r.stderr
    assert "cut short" in r.stdout and "1 damaged record(s) skipped (CRC mismatch)" in r.stdout, r.stdout
    cut, flip = (runsync.open_run(d) for d in sorted(run_dirs(root), key=lambda d: runsync.open_run(d).name))
    assert cut.name == "cut" and flip.name == "flip"
    want = [(10 * i, float(np.float32(VALUES[i]))) for i in range(10)]
    assert series(cut, "train/loss") == want and len(series(cut, "acc")) == 10
    assert len(cut.media("sample")) == 1 and cut.media("note") == []
    got = series(flip, "train/loss")
    assert len(got) == 9 and set(got) < set(want) and len(series(flip, "acc")) == 10
    r = cli("import", "tensorboard", str(logs), "--dir", str(root), "--strict", check=False)
    assert r.returncode == 1 and "unchanged" in r.stdout


def test_torch_tensorboard(tmp_path: Path) -> None:
    torch_tb = pytest.importorskip("torch.utils.tensorboard", reason="torch is not installed")
    logs, root = tmp_path / "logs", tmp_path / "runs"
    with torch_tb.SummaryWriter(log_dir=str(logs / "torchrun")) as w:
        for i in range(5):
            w.add_scalar("loss", VALUES[i], i, walltime=T0 + i)
        w.add_histogram("h", np.arange(10.0), 0, walltime=T0)
        w.add_text("t", "torch text", 0, walltime=T0)
    cli("import", "tensorboard", str(logs), "--dir", str(root))
    [run_dir] = run_dirs(root)
    view = runsync.open_run(run_dir)
    assert series(view, "loss") == [(i, float(np.float32(VALUES[i]))) for i in range(5)]
    assert len(view.media("h")) == 1 and view.media("t")[0].value == "torch text"


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    r = cli("import", "tensorboard", str(tmp_path / "nope"), "--dir", str(tmp_path / "runs"), check=False)
    assert r.returncode == 1 and "no such file or directory" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("import", "tensorboard", str(tmp_path / "empty"), "--dir", str(tmp_path / "runs"), check=False)
    assert r.returncode == 1 and "no TensorBoard event files" in r.stderr
