"""A log() call with bad values stores every valid value, then raises LogValueError naming the rejects.

If no value of the call is valid, log() raises the original error (LogValueError
for several) and the call has no effect: the step does not advance. This holds
for every value error (unsupported types, ints beyond int64, bad keys, bad
media), not for structural errors (data not a mapping, bad step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import runsync


def _img(shape: tuple[int, ...] = (4, 4, 3), fill: int = 9) -> runsync.Image:
    return runsync.Image(np.full(shape, fill, np.uint8))


def _wide(run_dir: Path) -> pd.DataFrame:
    return runsync.open_run(run_dir).history()


def _col(wide: pd.DataFrame, key: str) -> dict[int, Any]:
    """{step: value} of ``key`` where it is set."""
    if key not in wide.columns:
        return {}
    sub = wide[["step", key]].dropna()
    return dict(zip(sub["step"].tolist(), sub[key].tolist()))


def test_logvalueerror_is_type_and_value_error() -> None:
    assert issubclass(runsync.LogValueError, TypeError)
    assert issubclass(runsync.LogValueError, ValueError)


# -- some values valid: they are stored, the step advances -------------------------------------


def test_one_bad_scalar_stores_the_rest(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"x": 0.0})
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"a": 1, "b": object(), "c": "text"})
        assert run.step == 2
        run.log({"x": 2.0})
    err = info.value
    assert "'b'" in str(err)
    assert [k for k, _ in err.errors] == ["b"]
    assert isinstance(err.errors[0][1], TypeError)
    wide = _wide(run.dir)
    assert wide.step.tolist() == [0, 1, 2]
    assert _col(wide, "a") == {1: 1} and _col(wide, "c") == {1: "text"}
    assert "b" not in wide.columns
    assert _col(wide, "x") == {0: 0.0, 2: 2.0}
    assert runsync.open_run(run.dir).summary["a"] == 1


@pytest.mark.parametrize("bad", [
    {"": 1.0},
    {"a\x00b": 1.0},
    {"x" * 300: 1.0},
    {"_private": 1.0},
    {"step": 1.0},
    {"time": 1.0},
    {"list": [1, "two"]},  # a list of numbers is a histogram (spec §5.3, since 1.3)
    {"empty_list": []},
    {"obj": object()},
    {"huge": 2**64},
    {"neg_huge": -(2**63) - 1},
    {"np_huge": np.uint64(2**63)},
    {"arr": np.zeros(3, dtype=complex)},
    {"surrogate": "\ud800"},
    {"long_text": "x" * ((1 << 20) + 1)},
])
def test_each_kind_of_bad_value_is_named_and_the_rest_stored(root: Path, bad: dict[str, Any]) -> None:
    key = next(iter(bad))
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"fine": 2.0, **bad, "also": 3})
        assert run.step == 1
    assert [k for k, _ in info.value.errors] == [key]
    assert repr(key)[:20] in str(info.value)
    wide = _wide(run.dir)
    assert _col(wide, "fine") == {0: 2.0} and _col(wide, "also") == {0: 3}
    assert wide.columns.tolist() == ["step", "time", "also", "fine"]


def test_several_bad_values_are_all_named(root: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"b1": object(), "ok": 1.5, "b2": 2**70, "nested": {"b3": ["one"], "ok2": True}})
        assert run.step == 1
    assert [k for k, _ in info.value.errors] == ["b1", "b2", "nested/b3"]
    for k in ("'b1'", "'b2'", "'nested/b3'"):
        assert k in str(info.value)
    assert isinstance(info.value.errors[0][1], TypeError) and isinstance(info.value.errors[1][1], ValueError)
    wide = _wide(run.dir)
    assert _col(wide, "ok") == {0: 1.5} and _col(wide, "nested/ok2") == {0: True}


def test_partial_call_with_explicit_step_and_commit_false(root: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError):
            run.log({"a": 1.0, "b": object()}, step=7)
        assert run.step == 8
        with pytest.raises(runsync.LogValueError):
            run.log({"c": 2.0, "d": object()}, commit=False)
        assert run.step == 8
        run.log({"e": 3.0})
    wide = _wide(run.dir)
    assert wide.step.tolist() == [7, 8]
    assert _col(wide, "a") == {7: 1.0} and _col(wide, "c") == {8: 2.0} and _col(wide, "e") == {8: 3.0}


# -- no value valid: the call has no effect ------------------------------------------------------


def test_only_bad_value_raises_original_error_and_keeps_step(root: Path) -> None:
    with runsync.init(dir=root) as run:
        run.log({"x": 1.0})
        with pytest.raises(TypeError) as info:
            run.log({"b": object()})
        assert not isinstance(info.value, runsync.LogValueError)
        assert "'b'" in str(info.value)
        assert run.step == 1
        with pytest.raises(ValueError) as info2:
            run.log({"big": 2**64})
        assert not isinstance(info2.value, runsync.LogValueError)
        assert run.step == 1
        run.log({"x": 2.0})
    wide = _wide(run.dir)
    assert wide.step.tolist() == [0, 1]
    assert _col(wide, "x") == {0: 1.0, 1: 2.0}


def test_several_bad_values_only_raise_logvalueerror_and_keep_step(root: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"b1": object(), "b2": [None]})
        assert run.step == 0
        with pytest.raises(runsync.LogValueError):
            run.log({"b1": object(), "b2": [None]}, step=5)
        assert run.step == 0
        run.log({"x": 1.0})
    assert [k for k, _ in info.value.errors] == ["b1", "b2"]
    assert _wide(run.dir).step.tolist() == [0]


def test_bad_only_call_leaves_no_row(root: Path) -> None:
    with runsync.init(dir=root) as run:
        for bad in ({"o": object()}, {"h": runsync.Histogram([np.nan])}, {"i": _img((2, 2, 7))}):
            with pytest.raises((TypeError, ValueError)):
                run.log(bad)
    view = runsync.open_run(run.dir)
    assert view.rows().num_rows == 0
    assert view.media_keys() == []


# -- structural errors: nothing stored, whatever else the call holds -------------------------------


@pytest.mark.parametrize("data,exc", [
    ([("a", 1.0)], TypeError),
    ("a", TypeError),
    (None, TypeError),
])
def test_data_not_a_mapping_raises(root: Path, data: Any, exc: type) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(exc):
            run.log(data)
        assert run.step == 0
    assert runsync.open_run(run.dir).rows().num_rows == 0


@pytest.mark.parametrize("step,exc", [(-1, ValueError), (2**63, ValueError), ("3", TypeError), (1.5, TypeError),
                                      (True, TypeError)])
def test_bad_step_stores_nothing(root: Path, step: Any, exc: type) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(exc) as info:
            run.log({"a": 1.0, "b": object()}, step=step)
        assert not isinstance(info.value, runsync.LogValueError)
        assert run.step == 0
    assert runsync.open_run(run.dir).rows().num_rows == 0


# -- the fast path -----------------------------------------------------------------------------


def test_int_overflow_on_fast_path_only_key(root: Path) -> None:
    with runsync.init(dir=root) as run:
        for i in range(50):
            run.log({"a": 1})
        with pytest.raises(ValueError, match="'a'") as info:
            run.log({"a": 2**70})
        assert not isinstance(info.value, runsync.LogValueError)
        assert run.step == 50
        with pytest.raises(ValueError, match="'a'"):
            run.log({"a": -(2**63) - 1})
        assert run.step == 50
        run.log({"a": 2**63 - 1})
        for i in range(50):
            run.log({"a": 1})
    wide = _wide(run.dir)
    assert wide.step.tolist() == list(range(101))
    assert wide["a"].tolist() == [1] * 50 + [2**63 - 1] + [1] * 50


def test_int_overflow_on_fast_path_with_other_keys(root: Path, fast: runsync.Settings) -> None:
    run = runsync.init(dir=root, settings=fast)
    try:
        for i in range(50):
            run.log({"n": i, "f": 0.5, "b": True})
        with pytest.raises(runsync.LogValueError, match="'n'") as info:
            run.log({"n": 2**70, "f": 1.5, "b": False})
        assert [k for k, _ in info.value.errors] == ["n"]
        assert run.step == 51
        for i in range(51, 2000):  # the fast path stays usable and the WAL stays readable
            run.log({"n": i, "f": 0.5, "b": True})
        live = _wide(run.dir)  # read through the live WAL tail
        assert live.step.tolist() == list(range(2000))
    finally:
        run.finish()
    wide = _wide(run.dir)
    assert _col(wide, "f")[50] == 1.5
    assert _col(wide, "b")[50] == False and _col(wide, "b")[49] == True  # nullable boolean
    assert 50 not in _col(wide, "n")
    assert [v for s, v in sorted(_col(wide, "n").items())] == [s for s in range(2000) if s != 50]


# -- media values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_media", [
    pytest.param(lambda: runsync.Histogram([np.nan, np.inf, -np.inf]), id="nan-only-histogram"),
    pytest.param(lambda: runsync.Histogram([]), id="empty-histogram"),
    pytest.param(lambda: runsync.Histogram(([1, 2], [0.0, 1.0])), id="histogram-bad-edges"),
    pytest.param(lambda: runsync.Histogram(([1, -2], [0.0, 1.0, 2.0])), id="histogram-negative-count"),
    pytest.param(lambda: runsync.Histogram(([1, 2], [0.0, 1.0, 1.0])), id="histogram-edges-not-increasing"),
    pytest.param(lambda: runsync.Histogram(["a", "b"]), id="histogram-of-strings"),
    pytest.param(lambda: _img((2, 2, 7)), id="image-hxwx7"),
    pytest.param(lambda: _img((2, 2, 2)), id="image-hxwx2"),
    pytest.param(lambda: _img((2,)), id="image-1d"),
    pytest.param(lambda: _img((2, 2, 3, 1)), id="image-4d"),
    pytest.param(lambda: _img((0, 4)), id="image-empty"),
    pytest.param(lambda: runsync.Image(np.full((2, 2), 1.5)), id="image-float-above-1"),
    pytest.param(lambda: runsync.Image(np.full((2, 2), -0.1)), id="image-float-below-0"),
    pytest.param(lambda: runsync.Image(np.full((2, 2), np.nan)), id="image-float-nan"),
    pytest.param(lambda: runsync.Image(np.zeros((2, 2), np.int64)), id="image-int64"),
    pytest.param(lambda: runsync.Image(np.zeros((2, 2), object)), id="image-object"),
    pytest.param(lambda: runsync.Image(12), id="image-of-int"),
    pytest.param(lambda: runsync.Image("/nonexistent/file.png"), id="image-missing-file"),
    pytest.param(lambda: runsync.Table(columns=["a"], rows=[[1], ["x"]]), id="table-mixed-column"),
    pytest.param(lambda: runsync.Table(columns=["a", "b"], rows=[[1]]), id="table-short-row"),
    pytest.param(lambda: runsync.Table(columns=["a", "a"], rows=[[1, 2]]), id="table-repeated-column"),
    pytest.param(lambda: runsync.Table(dataframe=pd.DataFrame({"a": [1, "x"]})), id="dataframe-mixed-column"),
    pytest.param(lambda: runsync.Text("\ud800"), id="text-surrogate"),
    pytest.param(lambda: runsync.Text(b"bytes"), id="text-of-bytes"),
    pytest.param(lambda: [runsync.Text("a"), runsync.Histogram([1.0])], id="list-of-two-kinds"),
    pytest.param(lambda: [_img(), _img((2, 2, 7))], id="list-with-one-bad-image"),
])
def test_bad_media_rest_of_step_still_logged(root: Path, bad_media: Any) -> None:
    good = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    with runsync.init(dir=root) as run:
        run.log({"loss": 1.0})
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"loss": 0.5, "bad": bad_media(), "ok_img": runsync.Image(good), "ok_txt": runsync.Text("t")})
        assert run.step == 2
        run.log({"loss": 0.25})
    assert [k for k, _ in info.value.errors] == ["bad"]
    assert "'bad'" in str(info.value)
    view = runsync.open_run(run.dir)
    assert view.media_keys() == ["ok_img", "ok_txt"]
    wide = view.history()
    assert _col(wide, "loss") == {0: 1.0, 1: 0.5, 2: 0.25}
    assert "bad" not in wide.columns
    img = view.media("ok_img")
    assert len(img) == 1 and img[0].step == 1
    np.testing.assert_array_equal(img[0].value, good)
    assert view.media("ok_txt")[0].value == "t"


@pytest.mark.parametrize("bad_media", [
    pytest.param(lambda: runsync.Histogram([np.nan]), id="nan-only-histogram"),
    pytest.param(lambda: _img((3, 3, 7)), id="image-hxwx7"),
    pytest.param(lambda: runsync.Table(columns=["a"], rows=[[1], ["x"]]), id="table-mixed-column"),
])
def test_bad_media_alone_has_no_effect(root: Path, bad_media: Any) -> None:
    with runsync.init(dir=root) as run:
        run.log({"x": 1.0})
        with pytest.raises(ValueError, match="'m'") as info:
            run.log({"m": bad_media()})
        assert not isinstance(info.value, runsync.LogValueError)
        assert run.step == 1
    view = runsync.open_run(run.dir)
    assert view.media_keys() == [] and view.history().step.tolist() == [0]
    assert not list((run.dir / "media").glob("*.parquet"))


def test_media_errors_name_every_rejected_key(root: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"h": runsync.Histogram([np.nan]), "i": _img((2, 2, 7)), "o": object(),
                     "t": runsync.Table(columns=["a"], rows=[[1], ["x"]]), "good": runsync.Text("kept")})
        assert run.step == 1
    assert [k for k, _ in info.value.errors] == ["h", "i", "o", "t"]
    assert all(isinstance(e, (TypeError, ValueError)) for _, e in info.value.errors)
    assert runsync.open_run(run.dir).media("good")[0].value == "kept"


def test_media_constructor_errors_raise_at_construction() -> None:
    with pytest.raises(TypeError):
        runsync.Text("x", caption=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        runsync.Histogram([1.0], bins=0)
    with pytest.raises(ValueError):
        runsync.Histogram([1.0], bins=10_000)
    with pytest.raises(TypeError):
        runsync.Table()
    with pytest.raises(TypeError):
        runsync.Table(columns=["a"], rows=[[1]], dataframe=pd.DataFrame({"a": [1]}))


# -- bugs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{"a": 1.0, 1: 2.0}, {"a/b": 1.0, "a": {"b": 2.0}, "c": 3.0}])
def test_malformed_mapping_stores_nothing(root: Path, data: dict) -> None:
    """Spec §5.4: a non-str key or a key repeated by flattening makes the call malformed: nothing is stored."""
    with runsync.init(dir=root) as run:
        with pytest.raises((TypeError, ValueError)):
            run.log(data)
        assert run.step == 0
        run.log({"z": 1.0})
    assert _col(_wide(run.dir), "z") == {0: 1.0}


def test_unconvertible_dataframe_is_a_value_error(root: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError, match="'t'"):
            run.log({"loss": 1.0, "t": runsync.Table(dataframe=pd.DataFrame({"z": [1 + 2j]}))})
        assert run.step == 1
    assert _col(_wide(run.dir), "loss") == {0: 1.0}


# -- values whose own methods raise, and absurd nesting (issue 10 item 7) ------------------------


class _BadFloat(float):
    def __float__(self) -> float:
        raise RuntimeError("no float for you")


class _BadShape:
    @property
    def shape(self) -> tuple[int, ...]:
        raise RuntimeError("no shape for you")


def _deep(levels: int) -> dict[str, Any]:
    d: dict[str, Any] = {"leaf": 1.0}
    for _ in range(levels):
        d = {"n": d}
    return d


@pytest.mark.parametrize(("key", "bad"), [
    ("badfloat", _BadFloat(1.0)),
    ("badshape", _BadShape()),
])
def test_a_value_whose_methods_raise_is_a_logvalueerror(root: Path, key: str, bad: Any) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"fine": 2.0, key: bad})
    assert [k for k, _ in info.value.errors] == [key]
    assert repr(key) in str(info.value)
    assert _col(_wide(run.dir), "fine") == {0: 2.0}


def test_a_dict_nested_2000_levels_is_a_logvalueerror(root: Path) -> None:
    with runsync.init(dir=root) as run:
        with pytest.raises(runsync.LogValueError) as info:
            run.log({"fine": 2.0, "deep": _deep(2000)})
    assert len(info.value.errors) == 1 and info.value.errors[0][0].startswith("deep/n/n/")
    assert _col(_wide(run.dir), "fine") == {0: 2.0}


def test_flatten_keeps_order_of_nested_keys() -> None:
    from runsync.format.values import flatten
    data = {"a": 1, "b": {"c": 2, "d": {"e": 3}, "f": 4}, "g": {}, "h": 5}
    assert list(flatten(data)) == [("a", 1), ("b/c", 2), ("b/d/e", 3), ("b/f", 4), ("h", 5)]
