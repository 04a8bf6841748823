"""Intensity windowing: presets, parsing, percentiles, read-only inputs, bad values."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam import intensity as it
from oneshotsam.errors import OneShotError
from oneshotsam.types import Image2D


@pytest.mark.parametrize("text, expected", [
    ("lung", it.WindowSpec("ct", preset="lung")),
    ("CT:Lung", it.WindowSpec("ct", preset="lung")),
    ("p2sam-lung4d", it.WindowSpec("ct", preset="p2sam-lung4d")),
    ("percentile", it.WindowSpec("percentile", percentiles=(0.5, 99.5))),
    ("percentile:1,99", it.WindowSpec("percentile", percentiles=(1.0, 99.0))),
    ("percentile:2,98:nonzero", it.WindowSpec("percentile", percentiles=(2.0, 98.0), nonzero=True)),
    ("-910,590", it.WindowSpec("explicit", low=-910.0, high=590.0)),
    (" 0 , 255 ", it.WindowSpec("explicit", low=0.0, high=255.0)),
    ("auto", it.WindowSpec("auto")),
    (None, it.WindowSpec("auto")),
])
def test_parse_window(text, expected):
    spec = it.parse_window(text)
    assert spec == expected
    assert it.parse_window(spec.describe()) == spec  # describe() round-trips


@pytest.mark.parametrize("text", ["lungs", "ct:liver", "590,-910", "percentile:99,1", "1,2,3", "percentile:a,b"])
def test_parse_window_rejects(text):
    with pytest.raises(OneShotError):
        it.parse_window(text)


@pytest.mark.parametrize("preset, low, high", [
    ("lung", -1350.0, 150.0),          # W1500 / L-600
    ("mediastinum", -125.0, 225.0),    # W350 / L50
    ("abdomen", -160.0, 240.0),        # W400 / L40
    ("brain", 0.0, 80.0),              # W80 / L40
    ("p2sam-lung4d", -910.0, 590.0),
])
def test_ct_presets(preset, low, high):
    assert it.compute_window(np.zeros((2, 2), np.int16), preset) == (low, high)


@pytest.mark.parametrize("array, spec, expected", [
    (np.array([[0, 128, 255]], np.uint8), "auto", (0.0, 255.0)),
    (np.array([[False, True]]), "auto", (0.0, 1.0)),
    (np.arange(101, dtype=np.int16).reshape(1, 101), "percentile:10,90", (10.0, 90.0)),
    (np.arange(101, dtype=np.uint16).reshape(1, 101), "auto", (0.5, 99.5)),  # 16 bit -> percentile
    (np.concatenate([np.zeros(1000), np.arange(1, 102)]).astype(np.float32), "percentile:0,100:nonzero",
     (1.0, 101.0)),
    (np.full((3, 3), 7.0), "percentile", (7.0, 8.0)),  # constant image: high = low + 1
])
def test_compute_window(array, spec, expected):
    assert it.compute_window(array, spec) == pytest.approx(expected)


def test_apply_window_values_and_read_only_input():
    a = np.array([[-2000, -910, -160, 590, 3000]], np.int16)
    a.flags.writeable = False
    out = it.apply_window(a, -910, 590)
    assert out.dtype == np.float32 and not np.shares_memory(out, a)
    assert np.allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]])
    assert a[0, 0] == -2000


def test_window_once_per_volume_same_scale_for_every_slice():
    vol = np.stack([np.full((4, 4), 100.0), np.full((4, 4), 300.0)]).astype(np.float32)
    low, high = it.compute_window(vol, "percentile:0,100")
    s0, s1 = (it.apply_window(vol[k], low, high) for k in range(2))
    assert s0.max() == 0.0 and s1.min() == 1.0  # slice 0 darker than slice 1, as in the volume


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_a_user_error(bad):
    a = np.zeros((3, 3), np.float32)
    a[1, 1] = bad
    with pytest.raises(OneShotError, match="NaN or infinite"):
        it.compute_window(a, "auto")
    with pytest.raises(OneShotError, match="nan_to_num"):
        it.apply_window(a, 0, 1)


def test_bad_window_bounds():
    with pytest.raises(OneShotError):
        it.apply_window(np.zeros((2, 2)), 5, 5)
    with pytest.raises(OneShotError):
        it.WindowSpec("explicit", low=1, high=0)


def test_to_image2d_rgb_and_precomputed_window():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 51)
    img = it.to_image2d(rgb, name="x", spacing_mm=(0.5, 0.5))
    assert isinstance(img, Image2D) and img.is_rgb and img.spacing_mm == (0.5, 0.5)
    assert np.allclose(img.pixels[0, 0], (1.0, 0.0, 0.2))
    ct = np.array([[-910, 590]], np.int16)
    assert np.allclose(it.to_image2d(ct, (-910.0, 590.0)).pixels, [[0.0, 1.0]])
    assert np.allclose(it.to_image2d(ct, "p2sam-lung4d").pixels, [[0.0, 1.0]])


def test_percentile_subsampling_is_close_on_large_arrays(monkeypatch):
    monkeypatch.setattr(it, "_PERCENTILE_MAX_VALUES", 20_000)
    rng = np.random.default_rng(0)
    a = rng.normal(size=200_000).astype(np.float32)
    lo, hi = it.compute_window(a, "percentile:1,99")
    assert lo == pytest.approx(-2.326, abs=0.06) and hi == pytest.approx(2.326, abs=0.06)
