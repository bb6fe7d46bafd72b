"""Media values (images, histograms, tables, texts): what log() takes reads back equal.

Through ``open_run().media()``, through stock readers (pandas, DuckDB) on
``media/``, across resume, while the run is live, and after a kill -9.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import env_without_runsync
from PIL import Image as PILImage

import runsync

MEDIA_COLUMNS = ["stream", "seq", "step", "key", "index", "kind", "format", "caption", "meta", "sha256", "size", "data"]
START_TIMEOUT = 30.0


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _image(h: int, w: int, c: int | None, seed: int = 0) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return _rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _one(run_dir: Path, key: str) -> Any:
    items = runsync.open_run(run_dir).media(key)
    assert len(items) == 1, items
    assert not items[0].missing
    return items[0]


def _media_parts(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "media").glob("*.parquet"))


def _stored_data_cells(run_dir: Path) -> int:
    """Non-null ``data`` cells in the cover of media parts (each file read with pyarrow)."""
    return sum(pq.read_table(p, columns=["data"]).column("data").is_valid().to_pylist().count(True)
               for p in _media_parts(run_dir))


# -- images ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4), (1, 1), (1, 300, 3)])
def test_uint8_image_is_pixel_exact(root: Path, shape: tuple[int, ...]) -> None:
    a = _image(*shape[:2], shape[2] if len(shape) == 3 else None)
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(a)})
    item = _one(run.dir, "img")
    got = item.value
    assert item.kind == "image" and item.step == 0 and item.index == 0
    assert got.dtype == np.uint8
    assert got.shape == a.shape
    np.testing.assert_array_equal(got, a)
    assert item.meta["width"] == shape[1] and item.meta["height"] == shape[0]
    # The stored bytes are a PNG a stock image library opens to the same pixels.
    assert item.data[:8] == b"\x89PNG\r\n\x1a\n"
    with PILImage.open(io.BytesIO(item.data)) as im:
        np.testing.assert_array_equal(np.asarray(im), a)


def test_hxwx1_reads_back_as_grey(root: Path) -> None:
    a = _image(6, 4, 1)
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(a)})
    got = _one(run.dir, "img").value
    assert got.shape == (6, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, a[:, :, 0])


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_image_is_scaled_and_rounded(root: Path, shape: tuple[int, ...], dtype: Any) -> None:
    a = _rng(1).random(shape).astype(dtype)
    a.flat[0], a.flat[-1] = 0.0, 1.0  # the bounds are allowed
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(a)})
    got = _one(run.dir, "img").value
    want = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    want = want[:, :, 0] if shape[-1:] == (1,) else want
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # "within rounding"
    assert got.flat[0] == 0 and got.flat[-1] == 255


def test_non_contiguous_and_big_endian_arrays(root: Path) -> None:
    a = _image(5, 7, 3, seed=30)
    cases = {"transposed": a.transpose(1, 0, 2), "flipped": a[:, ::-1], "fortran": np.asfortranarray(a),
             "strided": a[::2, ::3], "bgr_view": a[..., ::-1], "grey_t": a[..., 0].T,
             "big_endian": (a / 255).astype(">f4")}
    with runsync.init(dir=root) as run:
        run.log({k: runsync.Image(v) for k, v in cases.items()})
    view = runsync.open_run(run.dir)
    for key, arr in cases.items():
        want = arr if arr.dtype == np.uint8 else np.rint(arr.astype(np.float64) * 255).astype(np.uint8)
        np.testing.assert_array_equal(view.media(key)[0].value, want, err_msg=key)


@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 3)])
def test_bool_image_is_black_and_white(root: Path, shape: tuple[int, ...]) -> None:
    a = _rng(2).random(shape) > 0.5
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(a)})
    got = _one(run.dir, "img").value
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, a.astype(np.uint8) * 255)


@pytest.mark.parametrize("mode,channels", [("L", None), ("RGB", 3), ("RGBA", 4)])
def test_pil_image_input(root: Path, mode: str, channels: int | None) -> None:
    a = _image(9, 5, channels, seed=3)
    im = PILImage.fromarray(a, mode=mode) if mode != "L" else PILImage.fromarray(a)
    assert im.mode == mode
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(im, caption="pil")})
    item = _one(run.dir, "img")
    np.testing.assert_array_equal(item.value, a)
    assert item.caption == "pil"
    assert (item.meta["width"], item.meta["height"]) == (5, 9)


def test_palette_pil_image_reads_back_as_rgb(root: Path) -> None:
    rgb = _image(8, 8, 3, seed=4)
    im = PILImage.fromarray(rgb).quantize(colors=16)
    assert im.mode == "P"
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(im)})
    got = _one(run.dir, "img").value
    assert got.dtype == np.uint8 and got.shape == (8, 8, 3)
    np.testing.assert_array_equal(got, np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("mode", ["1", "LA"])
def test_pil_modes_read_back_as_uint8_grey_rgb_or_rgba(root: Path, mode: str) -> None:
    im = PILImage.new(mode, (5, 3), 1 if mode == "1" else (10, 20))
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(im)})
    got = _one(run.dir, "img").value
    assert got.dtype == np.uint8
    assert got.ndim == 2 or got.shape[2] in (3, 4), got.shape


@pytest.mark.parametrize("suffix", [".png", ".bmp"])
def test_image_file_path_input(root: Path, tmp_path: Path, suffix: str) -> None:
    a = _image(10, 12, 3, seed=5)
    path = tmp_path / f"sample{suffix}"
    PILImage.fromarray(a).save(path)
    with runsync.init(dir=root) as run:
        run.log({"as_str": runsync.Image(str(path)), "as_path": runsync.Image(path, caption="file")})
    for key in ("as_str", "as_path"):
        item = _one(run.dir, key)
        np.testing.assert_array_equal(item.value, a)
        assert item.data[:8] == b"\x89PNG\r\n\x1a\n"  # stored as PNG whatever the input format
    assert _one(run.dir, "as_path").caption == "file"


def test_jpeg_file_is_stored_as_decoded(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    PILImage.fromarray(_image(16, 16, 3, seed=6)).save(path, quality=90)
    with PILImage.open(path) as im:
        want = np.asarray(im.convert("RGB"))
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(path)})
    np.testing.assert_array_equal(_one(run.dir, "img").value, want)


def test_image_file_overwritten_after_log_keeps_logged_content(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "sample.png"
    first, second = _image(4, 4, None, seed=7), _image(4, 4, None, seed=8)
    PILImage.fromarray(first).save(path)
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(path)})
        PILImage.fromarray(second).save(path)
    np.testing.assert_array_equal(_one(run.dir, "img").value, first)


def test_image_file_that_is_not_an_image_is_rejected_by_log(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with runsync.init(dir=root) as run:
        with pytest.raises(ValueError, match="'img'"):
            run.log({"img": runsync.Image(path)})
        assert run.step == 0


def test_image_of_a_missing_file_is_rejected(root: Path, tmp_path: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(ValueError, match="'img'"):
            run.log({"img": runsync.Image(tmp_path / "nope.png")})
        assert run.step == 0
    assert runsync.open_run(run.dir).media_keys() == []


# -- histograms, tables, texts ---------------------------------------------------------------


@pytest.mark.parametrize("bins", [1, 7, 64, 512])
def test_histogram_from_values_matches_numpy(root: Path, bins: int) -> None:
    x = _rng(9).normal(size=1000)
    x[::97] = np.nan
    x[5], x[6] = np.inf, -np.inf
    finite = x[np.isfinite(x)]
    with runsync.init(dir=root) as run:
        run.log({"w": runsync.Histogram(x, bins=bins)})
    item = _one(run.dir, "w")
    h = item.value
    want_counts, want_edges = np.histogram(finite, bins=bins)
    assert h.counts.dtype == np.int64 and h.edges.dtype == np.float64
    np.testing.assert_array_equal(h.counts, want_counts)
    np.testing.assert_array_equal(h.edges, want_edges)  # exact: the JSON keeps every float64
    assert int(h.counts.sum()) == finite.size
    assert item.kind == "histogram"


def test_histogram_default_bins_and_list_input(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"h": runsync.Histogram([1.0, 2.0, 2.0, 3.0, float("nan")])})
    h = _one(run.dir, "h").value
    want_counts, want_edges = np.histogram([1.0, 2.0, 2.0, 3.0], bins=64)
    np.testing.assert_array_equal(h.counts, want_counts)
    np.testing.assert_array_equal(h.edges, want_edges)


def test_histogram_from_counts_and_edges_is_exact(root: Path) -> None:
    counts = np.array([0, 3, 10, 2**40, 1], dtype=np.int64)
    edges = np.array([-1e300, -0.1, 0.1 + 0.2, 1.0 / 3.0, 7.5, 1e308])
    with runsync.init(dir=root) as run:
        run.log({"h": runsync.Histogram((counts, edges), caption="pre-binned")})
    item = _one(run.dir, "h")
    np.testing.assert_array_equal(item.value.counts, counts)
    assert item.value.edges.tolist() == edges.tolist()
    assert item.caption == "pre-binned"


def test_table_from_rows_and_from_dataframe_read_back_equal(root: Path) -> None:
    columns = ["name", "score", "n", "ok"]
    rows = [["a", 0.5, 1, True], ["bé ✓", -1.25, 2**40, False], ["", 1e-300, -3, True]]
    df = pd.DataFrame(rows, columns=columns)
    with runsync.init(dir=root) as run:
        run.log({"from_rows": runsync.Table(columns=columns, rows=rows, caption="r"),
                 "from_df": runsync.Table(dataframe=df)})
    by_rows = _one(run.dir, "from_rows")
    by_df = _one(run.dir, "from_df")
    assert by_rows.kind == by_df.kind == "table" and by_rows.caption == "r"
    for got in (by_rows.value, by_df.value):
        assert isinstance(got, pd.DataFrame)
        assert got.columns.tolist() == columns
        assert got.to_dict("list") == df.to_dict("list")
    pd.testing.assert_frame_equal(by_rows.value, by_df.value)


def test_table_with_index_and_nulls(root: Path) -> None:
    df = pd.DataFrame({"x": [1.0, None, 3.0], "s": ["a", None, "c"]}, index=[10, 20, 30])
    with runsync.init(dir=root) as run:
        run.log({"t": runsync.Table(dataframe=df)})
    got = _one(run.dir, "t").value
    assert got["x"].tolist()[0] == 1.0 and np.isnan(got["x"].tolist()[1]) and got["x"].tolist()[2] == 3.0
    assert got["s"].tolist()[0] == "a" and got["s"].tolist()[2] == "c" and pd.isna(got["s"].tolist()[1])


@pytest.mark.parametrize("text", ["hello", "", "héllo wörld ✓ 日本語 🎉\n\ttabs\r\nand \x00 nul", "x" * 100_000])
def test_text_round_trip(root: Path, text: str) -> None:
    with runsync.init(dir=root) as run:
        run.log({"sample": runsync.Text(text, caption="gen")})
    item = _one(run.dir, "sample")
    assert item.value == text and item.kind == "text" and item.caption == "gen"
    assert item.data == text.encode("utf-8")


# -- keys, captions, lists, history ---------------------------------------------------------


def test_list_keeps_order_and_captions(root: Path) -> None:
    imgs = [_image(3, 4, 3, seed=s) for s in range(5)]
    with runsync.init(dir=root) as run:
        run.log({"samples": [runsync.Image(a, caption=f"c{i}") for i, a in enumerate(imgs)], "loss": 0.5})
        run.log({"samples": (runsync.Text("t0"), runsync.Text("t1")), "loss": 0.25})
        run.log({"samples": [runsync.Image(imgs[4]), runsync.Image(imgs[0])]})
    items = runsync.open_run(run.dir).media("samples")
    assert [(it.step, it.index) for it in items] == [(0, i) for i in range(5)] + [(1, 0), (1, 1), (2, 0), (2, 1)]
    for i, it in enumerate(items[:5]):
        np.testing.assert_array_equal(it.value, imgs[i])
        assert it.caption == f"c{i}" and it.key == "samples" and it.stream == "main"
    assert [it.value for it in items[5:7]] == ["t0", "t1"]
    assert [it.kind for it in items] == ["image"] * 5 + ["text"] * 2 + ["image"] * 2
    np.testing.assert_array_equal(items[7].value, imgs[4])
    np.testing.assert_array_equal(items[8].value, imgs[0])
    assert items[7].caption is None


def test_media_keys_history_column_and_rows(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(_image(2, 2, None)), "loss": 1.0, "nested": {"h": runsync.Histogram([1, 2])}})
        run.log({"loss": 0.5, "t": runsync.Table(columns=["a"], rows=[[1]]), "txt": runsync.Text("x")})
    view = runsync.open_run(run.dir)
    assert view.media_keys() == ["img", "nested/h", "t", "txt"]
    assert view.media("loss") == [] and view.media("no such key") == []
    wide = view.history()
    assert wide["img"].tolist()[0] == "image" and wide["nested/h"].tolist()[0] == "histogram"
    assert wide["t"].tolist()[1] == "table" and wide["txt"].tolist()[1] == "text"
    assert wide["loss"].tolist() == [1.0, 0.5]
    rows = view.rows().to_pandas()
    media_rows = rows[rows.type == 5].sort_values("key")
    assert media_rows.key.tolist() == ["img", "nested/h", "t", "txt"]
    assert media_rows.text.tolist() == ["image", "histogram", "table", "text"]
    item = view.media("nested/h")[0]
    assert item.step == 0 and item.seq == media_rows[media_rows.key == "nested/h"].seq.iloc[0]
    assert item.time is not None


def test_explicit_step_commit_false_and_repeated_step(root: Path) -> None:
    a, b, c = (_image(3, 3, None, seed=s) for s in range(3))
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(a)}, step=10)
        run.log({"x": 1.0}, commit=False)  # step 11
        run.log({"img": runsync.Image(b)})  # step 11
        run.log({"img": runsync.Image(c)}, step=10)  # replaces step 10 (last write wins)
    items = runsync.open_run(run.dir).media("img")
    assert [it.step for it in items] == [10, 11]
    np.testing.assert_array_equal(items[0].value, c)
    np.testing.assert_array_equal(items[1].value, b)


def test_caller_mutation_after_log_does_not_leak(root: Path) -> None:
    arr = _image(4, 4, 3, seed=10)
    farr = _rng(11).random((4, 4))
    pil = PILImage.fromarray(_image(4, 4, 3, seed=12))
    values = _rng(13).normal(size=100)
    counts, edges = np.array([1, 2, 3]), np.array([0.0, 1.0, 2.0, 3.0])
    rows = [[1, "a"], [2, "b"]]
    want = {"arr": arr.copy(), "farr": np.rint(farr * 255).astype(np.uint8), "pil": np.asarray(pil).copy()}
    with runsync.init(dir=root) as run:
        run.log({"arr": runsync.Image(arr), "farr": runsync.Image(farr), "pil": runsync.Image(pil),
                 "vals": runsync.Histogram(values, bins=10), "pre": runsync.Histogram((counts, edges)),
                 "rows": runsync.Table(columns=["n", "s"], rows=rows)})
        want_hist = np.histogram(values, bins=10)
        arr[:] = 0
        farr[:] = 1.0
        pil.paste((0, 0, 0), (0, 0, 4, 4))
        values[:] = 0.0
        counts[:] = 9
        edges[:] = [5.0, 6.0, 7.0, 8.0]
        rows[0][0] = 100
        rows.append([3, "c"])
    view = runsync.open_run(run.dir)
    for key, w in want.items():
        np.testing.assert_array_equal(view.media(key)[0].value, w)
    np.testing.assert_array_equal(view.media("vals")[0].value.counts, want_hist[0])
    np.testing.assert_array_equal(view.media("vals")[0].value.edges, want_hist[1])
    assert view.media("pre")[0].value.counts.tolist() == [1, 2, 3]
    assert view.media("pre")[0].value.edges.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert view.media("rows")[0].value.to_dict("list") == {"n": [1, 2], "s": ["a", "b"]}


def test_dataframe_mutated_in_place_after_log_does_not_leak(root: Path) -> None:
    df = pd.DataFrame({"n": np.arange(5, dtype=np.int64), "x": np.linspace(0, 1, 5)})
    with runsync.init(dir=root) as run:
        run.log({"t": runsync.Table(dataframe=df)})
        df.loc[0, "n"] = 99
        df.loc[0, "x"] = 99.0
    got = _one(run.dir, "t").value
    assert got["n"].tolist() == [0, 1, 2, 3, 4]
    assert got["x"].tolist() == np.linspace(0, 1, 5).tolist()


# -- dedup ---------------------------------------------------------------------------------


def test_same_image_at_50_steps_is_stored_once(root: Path, fast: runsync.Settings) -> None:
    a = _image(32, 32, 3, seed=14)
    with runsync.init(dir=root, settings=fast.with_(part_interval=0.02, flush_interval=0.01)) as run:
        for step in range(50):
            run.log({"img": runsync.Image(a), "loss": 1.0 / (step + 1)})
            if step % 10 == 0:
                time.sleep(0.05)  # spread the items over several media parts
    assert _stored_data_cells(run.dir) == 1
    df = pd.read_parquet(run.dir / "media")
    assert len(df) == 50 and df.sha256.nunique() == 1 and df.data.notna().sum() == 1
    items = runsync.open_run(run.dir).media("img")
    assert [it.step for it in items] == list(range(50))
    for it in items:
        assert not it.missing
        np.testing.assert_array_equal(it.value, a)


def test_dedup_across_keys_and_kinds(root: Path) -> None:
    a = _image(8, 8, None, seed=15)
    with runsync.init(dir=root) as run:
        run.log({"x": runsync.Image(a), "y": [runsync.Image(a), runsync.Image(a)], "t1": runsync.Text("same"),
                 "t2": runsync.Text("same")})
    assert _stored_data_cells(run.dir) == 2
    view = runsync.open_run(run.dir)
    for it in view.media("x") + view.media("y"):
        np.testing.assert_array_equal(it.value, a)
    assert view.media("t1")[0].value == view.media("t2")[0].value == "same"


def test_dedup_across_resume(root: Path, fast: runsync.Settings) -> None:
    a, b = _image(16, 16, 3, seed=16), _image(16, 16, 3, seed=17)
    with runsync.init(dir=root, id="dedup1", settings=fast) as run:
        for _ in range(5):
            run.log({"img": runsync.Image(a)})
    with runsync.init(dir=root, id="dedup1", resume=True, settings=fast) as run2:
        for _ in range(5):
            run2.log({"img": [runsync.Image(a), runsync.Image(b)]})
    assert run2.dir == run.dir
    assert _stored_data_cells(run.dir) == 2  # a once (first incarnation), b once
    items = runsync.open_run(run.dir).media("img")
    assert [(it.step, it.index) for it in items] == [(s, 0) for s in range(5)] + [
        (s, i) for s in range(5, 10) for i in range(2)]
    for it in items:
        np.testing.assert_array_equal(it.value, b if it.index == 1 else a)


# -- live runs, stock readers ----------------------------------------------------------------


def test_live_run_media_readable_after_part_interval(root: Path, fast: runsync.Settings) -> None:
    a = _image(6, 6, 3, seed=18)
    run = runsync.init(dir=root, settings=fast)
    try:
        run.log({"img": runsync.Image(a), "txt": runsync.Text("live")})
        deadline = time.monotonic() + 10
        while not _media_parts(run.dir):
            assert time.monotonic() < deadline, "no media part within 10 s (part_interval 0.2 s)"
            time.sleep(0.02)
        view = runsync.open_run(run.dir)
        assert view.status == "running"
        np.testing.assert_array_equal(view.media("img")[0].value, a)
        assert view.media("txt")[0].value == "live"
        df = pd.read_parquet(run.dir / "media")
        assert sorted(df.key) == ["img", "txt"]
    finally:
        run.finish()


def test_pandas_reads_media_parts(root: Path) -> None:
    a = _image(5, 5, 4, seed=19)
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(a, caption="cap"), "h": runsync.Histogram([0.0, 1.0], bins=2)})
        run.log({"txt": runsync.Text("ünï")})
    df = pd.read_parquet(run.dir / "media")
    assert df.columns.tolist() == MEDIA_COLUMNS
    rows = {r.key: r for r in df.itertuples()}
    img = rows["img"]
    assert (img.kind, img.format, img.caption, img.index, img.step, img.stream) == ("image", "png", "cap", 0, 0, "main")
    assert json.loads(img.meta)["width"] == 5 and json.loads(img.meta)["height"] == 5
    assert img.size == len(img.data)
    assert hashlib.sha256(img.data).hexdigest() == img.sha256
    with PILImage.open(io.BytesIO(img.data)) as im:
        np.testing.assert_array_equal(np.asarray(im), a)
    assert rows["h"].format == "json" and json.loads(rows["h"].data) == {"counts": [1, 1], "edges": [0.0, 0.5, 1.0]}
    assert rows["txt"].format == "utf8" and rows["txt"].data == "ünï".encode()
    assert pd.isna(rows["txt"].caption)


def test_duckdb_reads_media_and_joins_history(root: Path) -> None:
    imgs = [_image(4, 4, None, seed=20 + s) for s in range(3)]
    with runsync.init(dir=root) as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1), "img": [runsync.Image(imgs[step]), runsync.Image(imgs[0])],
                     "txt": runsync.Text(f"step {step}")})
    d = run.dir
    assert duckdb.sql(f"select count(*) from '{d}/media/*.parquet'").fetchall() == [(9,)]
    got = duckdb.sql(
        f"""
        select h.step, h.key, h.text as kind, m."index", m.kind, m.format, m.sha256, m.data is not null as has_data
        from '{d}/history/*.parquet' h
        join '{d}/media/*.parquet' m using (stream, seq, key)
        where h.type = 5
        order by h.step, h.key, m."index"
        """
    ).fetchall()
    assert len(got) == 9
    assert all(kind == mkind for _s, _k, kind, _i, mkind, *_ in got)
    assert [(s, k, i) for s, k, _, i, *_ in got] == [
        (s, k, i) for s in range(3) for k, idx in (("img", (0, 1)), ("txt", (0,))) for i in idx]
    # the first image of step 0 and the second of every step are the same content: stored once
    sha0 = [r[6] for r in got if r[1] == "img" and r[3] == 1]
    assert len(set(sha0)) == 1
    assert sum(r[7] for r in got if r[6] == sha0[0]) == 1
    texts = duckdb.sql(
        f"""
        select h.step, decode(m.data) from '{d}/history/*.parquet' h
        join '{d}/media/*.parquet' m on h.stream = m.stream and h.seq = m.seq and h.key = m.key
        where h.type = 5 and m.kind = 'text' order by h.step
        """
    ).fetchall()
    assert texts == [(s, f"step {s}") for s in range(3)]


# -- many media ------------------------------------------------------------------------------


def test_many_small_media_merge_into_few_parts(root: Path) -> None:
    settings = runsync.Settings(flush_interval=0.01, part_interval=0.05, heartbeat_interval=0.5,
                                segment_size=1 << 20)
    n = 300
    with runsync.init(dir=root, settings=settings) as run:
        for step in range(n):
            a = np.full((4, 4), step % 256, np.uint8)
            a[0, 0] = step // 256
            run.log({"img": runsync.Image(a), "i": step})
            time.sleep(0.002)
    parts = _media_parts(run.dir)
    # ~300 steps over many part intervals: without merging this would be dozens of files
    assert 1 <= len(parts) <= 16, [p.name for p in parts]
    df = pd.read_parquet(run.dir / "media")
    assert len(df) == n and not df.duplicated(["stream", "seq", "key", "index"]).any()
    items = runsync.open_run(run.dir).media("img")
    assert [it.step for it in items] == list(range(n))
    for step, it in enumerate(items):
        assert not it.missing
        assert it.value[1, 1] == step % 256 and it.value[0, 0] == step // 256


# -- without pillow --------------------------------------------------------------------------


def _run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env or env_without_runsync(),
                          check=False, capture_output=True, text=True, timeout=timeout)


def test_image_without_pillow_raises_import_error_naming_the_extra(root: Path) -> None:
    # A run with an image and a text, read later by a process without pillow.
    with runsync.init(dir=root) as run:
        run.log({"img": runsync.Image(_image(2, 2, None)), "txt": runsync.Text("ok"),
                 "h": runsync.Histogram([1.0, 2.0], bins=2)})
    code = f"""
        import sys
        sys.modules["PIL"] = None
        import numpy as np
        import runsync
        try:
            runsync.Image(np.zeros((2, 2), np.uint8))
        except ImportError as e:
            assert "runsync[media]" in str(e), str(e)
        else:
            raise SystemExit("runsync.Image did not raise ImportError")
        # Other media need no pillow, and reading a run does not either (until an image is decoded).
        run = runsync.init(dir={str(root)!r})
        run.log({{"t": runsync.Text("fine"), "h": runsync.Histogram([1.0])}})
        run.finish()
        view = runsync.open_run({str(run.dir)!r})
        assert view.media("txt")[0].value == "ok"
        assert view.media("h")[0].value.counts.tolist() == [1, 1]
        item = view.media("img")[0]
        assert item.data[:4] == b"\\x89PNG"
        try:
            item.value
        except ImportError as e:
            assert "runsync[media]" in str(e), str(e)
        else:
            raise SystemExit("decoding an image without pillow did not raise ImportError")
        print("ok")
    """
    res = _run_python(code)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "ok"


def test_media_reach_disk_within_a_flush_not_a_part_interval(root: Path) -> None:
    """Spec §13.4: queued media are stored at every flush, so a kill -9 costs at most a flush interval of
    them, however long part_interval is (history rows are safe in the WAL meanwhile)."""
    settings = runsync.Settings(flush_interval=0.05, part_interval=3600.0, heartbeat_interval=3600.0)
    run = runsync.init(dir=root, id="prompt", settings=settings)
    try:
        run.log({"img": runsync.Image(np.full((4, 4), 9, np.uint8))})
        run_dir = root / "prompt"
        deadline = time.monotonic() + 10
        while not _media_parts(run_dir):
            assert time.monotonic() < deadline, "no media part within 10 s of a 0.05 s flush interval"
            time.sleep(0.02)
        assert not list((run_dir / "history").glob("*.parquet"))  # no history part was due
        [row] = pq.read_table(_media_parts(run_dir)[0]).to_pylist()
        assert row["key"] == "img" and row["data"] is not None
    finally:
        run.finish()
    assert not runsync.open_run(root / "prompt").media("img")[0].missing


# -- kill -9 ---------------------------------------------------------------------------------

CHILD = """
import os, sys, struct, time
import numpy as np
import runsync

root, run_id, ack = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(ack, os.O_RDWR)
settings = runsync.Settings(flush_interval=0.02, part_interval=0.1, heartbeat_interval=0.5, segment_size=1 << 20)
run = runsync.init(dir=root, id=run_id, settings=settings)
i = 0
while True:
    a = np.full((8, 8), i % 256, np.uint8)
    a[0, 0] = (i // 256) % 256
    run.log({"img": [runsync.Image(a), runsync.Image(np.zeros((2, 2), np.uint8))], "txt": runsync.Text(f"s{i}"),
             "i": i})
    os.pwrite(fd, struct.pack("<q", i + 1), 0)
    i += 1
    if i % 20 == 0:
        time.sleep(0.01)
"""


def _check_item(it: Any) -> None:
    if it.key == "img":
        v = it.value
        if it.index == 0:
            assert v.shape == (8, 8) and v[1, 1] == it.step % 256 and v[0, 0] == (it.step // 256) % 256
        else:
            assert v.shape == (2, 2) and not v.any()
    else:
        assert it.value == f"s{it.step}"


def test_kill9_while_logging_media(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "media_child.py"
    script.write_text(CHILD)
    ack = tmp_path / "ack"
    ack.write_bytes(bytes(8))
    err = tmp_path / "child.stderr"
    run_id = "mediakill"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, str(script), str(root), run_id, str(ack)], env=env_without_runsync(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    run_dir = root / run_id
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # Wait until some media and history parts exist (media parts come every flush, history parts every
        # part interval) and enough calls have returned, then kill mid-stream.
        while not (len(_media_parts(run_dir)) >= 2 and list((run_dir / "history").glob("*.parquet"))
                   and int.from_bytes(ack.read_bytes()[:8], "little") >= 100):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "child too slow:\n" + err.read_text()
            time.sleep(0.01)
        time.sleep(0.13)  # kill at some point inside a part interval
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    acked = int.from_bytes(ack.read_bytes()[:8], "little")

    # Every media part is a whole Parquet file a stock reader can open.
    for p in _media_parts(run_dir):
        pq.read_table(p)
    pd.read_parquet(run_dir / "media")

    view = runsync.open_run(run_dir)
    assert view.status == "crashed"
    part_seqs = set(pd.read_parquet(run_dir / "history", columns=["seq"]).seq)
    wide = view.history()
    assert len(wide) >= acked  # every acknowledged call is there (history's promise)
    for key in ("img", "txt"):
        items = view.media(key)
        steps = sorted({it.step for it in items})
        assert steps == list(range(len(steps))) and len(steps) >= acked
        for it in items:
            if it.missing:
                assert it.value is None and it.data is None
                # A row in a history part always has its media: media parts are written first.
                assert it.seq not in part_seqs, f"{key} at step {it.step} is in a history part but its media are lost"
            else:
                _check_item(it)
        present = [it.step for it in items if not it.missing]
        assert present, f"no {key} item survived"
        # what is lost is a tail: the last written part(s) hold every earlier item
        assert present == sorted(present) and set(range(present[-1] + 1)) <= set(present)

    # Resume recovers the tail into parts; media already stored stay readable, lost ones read missing.
    before = {(it.step, it.index): it.missing for it in view.media("img")}
    with runsync.init(dir=root, id=run_id, resume=True) as run:
        run.log({"img": runsync.Image(np.full((8, 8), 7, np.uint8)), "i": -1})
    after = runsync.open_run(run_dir)
    items = after.media("img")
    assert {(it.step, it.index): it.missing for it in items if (it.step, it.index) in before} == before
    for it in items:
        if not it.missing and it.step < len(wide):
            _check_item(it)
    assert not items[-1].missing and items[-1].value[0, 0] == 7
