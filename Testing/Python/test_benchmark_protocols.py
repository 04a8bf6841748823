"""The benchmark protocols (``oneshotsam benchmark jsrt-refs|jsrt-perturb|acdc-pairs|
acdc-volumes|la``) and their elastix peer, on small hand-checkable cases and tiny
synthetic data folders (no shared data needed, except the one ``-m data`` test)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.errors import OneShotError
from oneshotsam.protocols import rules, stats
from oneshotsam.protocols.perturb import KINDS, PERTURBATIONS, perturb

# itk's SWIG wrappers warn on import under Python 3.12+ / new SWIG: not ours
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute")

# ----------------------------------------------------------------------------- rules
SPREAD_CASES = [  # items, k -> expected
    (list("abcdefghij"), 3, list("adg")),
    (list("abcdefghij"), 5, list("acegi")),
    (list("abc"), None, list("abc")),
    (list("abc"), 7, list("abc")),
    (list("abc"), 1, list("a")),
]


@pytest.mark.parametrize("items,k,expected", SPREAD_CASES)
def test_spread_is_evenly_spaced_in_order(items, k, expected):
    assert rules.spread(items, k) == expected


def _film(low: float, high: float, seed: int, s: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (s, s)).round().astype(np.uint8)


def test_reference_rule_picks_the_washed_out_films_then_evenly_spaced_ids():
    # F005 is washed out (grey values 120..140), F002 next (90..170); the rest span 0..255
    spans = {i: (0, 255) for i in range(8)}
    spans.update({5: (120, 140), 2: (90, 170)})
    films = {f"F{i:03d}": _film(*spans[i], seed=i) for i in range(8)}
    ranges = {k: rules.grey_range(v) for k, v in films.items()}
    chosen = rules.choose_references(sorted(films), ranges, 4, washed=2)
    # the rest in name order: F000 F001 F003 F004 F006 F007 -> positions 0 and 3
    assert [c for c, _ in chosen] == ["F005", "F002", "F000", "F004"]
    assert chosen[0][1].startswith("washed out") and chosen[2][1].startswith("evenly spaced")
    assert [c for c, _ in rules.choose_references(sorted(films), ranges, 2, washed=1)] == ["F005", "F000"]
    with pytest.raises(OneShotError, match="--refs"):
        rules.choose_references(sorted(films), ranges, 9)


def test_grey_range_uses_the_half_percent_tails():
    a = np.full((100, 100), 100, np.uint8)
    a.flat[:40] = 255  # 0.4 % bright outliers: ignored by the 99.5th percentile
    assert rules.grey_range(a) == 0.0


GROUP_CASES = [(1, "DCM"), (20, "DCM"), (21, "HCM"), (40, "HCM"), (41, "MINF"), (60, "MINF"),
               (61, "NOR"), (80, "NOR"), (81, "ABNRV"), (100, "ABNRV")]


@pytest.mark.parametrize("number,group", GROUP_CASES)
def test_acdc_group_mapping(number, group):
    assert rules.acdc_group(number) == group
    assert rules.acdc_group(rules.patient_number(f"patient{number:03d}")) == group


@pytest.mark.parametrize("number", [0, 101])
def test_acdc_group_outside_the_range_is_refused(number):
    with pytest.raises(OneShotError):
        rules.acdc_group(number)


PATIENT_CASES = [("1-3", {1, 2, 3}), ("1,3,41", {1, 3, 41}), ("1-2, 7", {1, 2, 7}), ("", None),
                 (None, None)]


@pytest.mark.parametrize("spec,expected", PATIENT_CASES)
def test_parse_patients(spec, expected):
    assert rules.parse_patients(spec) == expected


@pytest.mark.parametrize("spec", ["a-3", "5-2", "1;2"])
def test_parse_patients_refuses_bad_specs(spec):
    with pytest.raises(OneShotError, match="--patients"):
        rules.parse_patients(spec)


def test_largest_slice_and_copy_baseline():
    from oneshotsam.protocols.la import copy_baseline

    lab = np.zeros((5, 6, 6), np.uint8)
    lab[1, 2:4, 2:4] = 1          # 4 voxels
    lab[2, 1:5, 1:5] = 1          # 16 voxels: the largest
    lab[3, 2:5, 2:5] = 1          # 9 voxels
    assert rules.largest_slice(lab, 0) == 2
    copied = copy_baseline(lab, 0, 2)
    assert [int(copied[k].sum()) for k in range(5)] == [0, 16, 16, 16, 0]  # the oracle extent 1..3


# (prediction per slice along axis 0: area of a 2x2 square or 0; truth: slices 1..3)
EXTENT_CASES = [
    ([1, 1, 1, 1, 1], [0, 1, 1, 1, 0], 2),   # beyond both ends: both end slices emptied
    ([0, 1, 1, 0, 0], [0, 1, 1, 0, 0], 0),   # stopped early: nothing added
    ([1, 0, 0, 0, 0], [0, 0, 0, 0, 0], 1),   # only outside
]


@pytest.mark.parametrize("pred_slices,kept,outside", EXTENT_CASES)
def test_within_extent_and_slices_outside(pred_slices, kept, outside):
    from oneshotsam.protocols.runner import slices_outside, within_extent

    truth = np.zeros((5, 4, 4), np.uint8)
    truth[1:4, 1:3, 1:3] = 1
    pred = np.zeros_like(truth)
    for k, on in enumerate(pred_slices):
        pred[k, 0:2, 0:2] = on
    inside = within_extent(pred, truth, 0)
    assert [int(inside[k].any()) for k in range(5)] == kept and inside.dtype == pred.dtype
    assert slices_outside(pred, truth, 0) == outside
    assert slices_outside(pred, truth, 0, inside) == outside  # with within_extent given
    # the same along another axis
    assert slices_outside(np.moveaxis(pred, 0, 2), np.moveaxis(truth, 0, 2), 2) == outside


def test_within_extent_is_per_label_value():
    from oneshotsam.protocols.runner import slices_outside, within_extent

    truth = np.array([[1, 2], [2, 2], [0, 0]], np.uint8)   # 3 slices along axis 0
    pred = np.array([[1, 1], [1, 2], [2, 0]], np.uint8)
    # value 1 is absent from slice 1 and 2 of the truth, value 2 from slice 2
    assert within_extent(pred, truth, 0).tolist() == [[1, 1], [0, 2], [0, 0]]
    assert slices_outside(pred, truth, 0) == 2
    with pytest.raises(ValueError, match="shape"):
        within_extent(pred, truth[:2], 0)


@pytest.mark.parametrize("dice,absent,expected", [
    ({"RV": 0.5, "myocardium": 0.7, "LV": 0.9}, [], 0.7),
    ({"RV": 0.0, "myocardium": 0.7, "LV": 0.9}, [1], 0.8),
    ({"RV": 0.0, "LV": 1.0}, [1, 3], None),
    ({"myocardium": 0.6}, [], 0.6),
])
def test_acdc_present_mean(dice, absent, expected):
    from oneshotsam.protocols.acdc import present_mean

    got = present_mean(dice, absent)
    assert got == pytest.approx(expected) if expected is not None else got is None


# ----------------------------------------------------------------------------- stats
MEAN_SE_CASES = [([1.0, 2.0, 3.0], 2.0, 1 / math.sqrt(3)), ([5.0], 5.0, math.nan),
                 ([], math.nan, math.nan), ([2.0, float("nan"), 4.0], 3.0, 1.0)]


@pytest.mark.parametrize("values,mean,se", MEAN_SE_CASES)
def test_mean_and_standard_error(values, mean, se):
    m, s = stats.mean_se(values)
    assert (math.isnan(m) and math.isnan(mean)) or m == pytest.approx(mean)
    assert (math.isnan(s) and math.isnan(se)) or s == pytest.approx(se)


FMT_CASES = [((0.91234,), "0.9123"), ((None,), "-"), ((float("nan"),), "-"), ((3,), "3"),
             ((np.int64(7),), "7"), (("text",), "text"), ((2.5, 1), "2.5")]


@pytest.mark.parametrize("args,text", FMT_CASES)
def test_number_formatting(args, text):
    assert stats.fmt(*args) == text


def test_mean_se_formatting_and_table():
    assert stats.fmt_pm(2.0, 1 / math.sqrt(3)) == "2.0000 +- 0.5774"
    assert stats.fmt_pm(5.0, math.nan) == "5.0000 +- -"
    t = stats.table(["a", "bb"], [[1, 0.5], ["x", None]]).splitlines()
    assert t == ["| a | bb     |", "|---|--------|", "| 1 | 0.5000 |", "| x | -      |"]
    assert stats.ratio(6.0, 3.0) == 2.0 and math.isnan(stats.ratio(1.0, 0.0))


# ----------------------------------------------------------------------------- perturbations
@pytest.mark.parametrize("kind", KINDS)
def test_perturbations_are_deterministic_uint8_and_change_the_image(kind):
    img = _film(40, 200, seed=1)
    a, b = perturb(img, kind, seed=3, key="F1"), perturb(img, kind, seed=3, key="F1")
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)


def test_perturbation_sizes():
    flat = np.full((256, 256), 100, np.uint8)
    assert np.all(perturb(flat, "brightness") == 130)                          # x 1.3
    ramp = np.tile(np.arange(50, 206, dtype=np.uint8), (8, 1))
    c = perturb(ramp, "contrast").astype(float)
    assert c.std() / ramp.std() == pytest.approx(0.7, abs=0.01)                 # 0.7 around the mean
    assert c.mean() == pytest.approx(ramp.mean(), abs=0.5)
    g = perturb(np.full((4, 4), 128, np.uint8), "gamma")
    assert np.all(g == round(255 * (128 / 255) ** 1.5))                        # gamma 1.5
    mid = np.full((256, 256), 128, np.uint8)
    n = perturb(mid, "noise", seed=0, key="x").astype(float) - 128
    assert n.std() == pytest.approx(25.5, rel=0.03) and abs(n.mean()) < 0.5     # sd 0.1 of 255
    assert not np.array_equal(perturb(mid, "noise", key="x"), perturb(mid, "noise", key="y"))
    assert not np.array_equal(perturb(mid, "noise", seed=1, key="x"), perturb(mid, "noise", key="x"))
    imp = np.zeros((21, 21), np.uint8)
    imp[10, 10] = 255
    bl = perturb(imp, "blur")
    assert np.argwhere(bl > 0).min(0).tolist() == [7, 7]                       # kernel 7 x 7
    assert np.argwhere(bl > 0).max(0).tolist() == [13, 13]
    k1 = np.exp(-np.arange(-3, 4) ** 2 / (2 * 2.0 ** 2))
    assert bl[10, 10] == round(255 * (k1[3] / k1.sum()) ** 2)                  # sigma 2
    assert set(PERTURBATIONS) == set(KINDS)
    with pytest.raises(OneShotError):
        perturb(mid, "rotation")


# ----------------------------------------------------------------------------- elastix peer
def test_grid_spacing_rule():
    from oneshotsam.peer_elastix import grid_spacing

    assert grid_spacing((512, 512), (1.0, 1.0), 32) == 16.0
    assert grid_spacing((10, 216, 256), (1.0, 1.0, 1.0), 32) == 8.0
    assert grid_spacing((100, 50), (0.5, 2.0), 25) == 4.0


def test_missing_itk_elastix_says_how_to_install(monkeypatch):
    import sys

    from oneshotsam import peer_elastix

    monkeypatch.setattr(peer_elastix, "_LOADED", {})
    monkeypatch.setitem(sys.modules, "itk", None)
    with pytest.raises(OneShotError, match="pip install itk-elastix"):
        peer_elastix.register_2d(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8), np.uint8))
    assert not peer_elastix.available()


def _elastix():
    from oneshotsam import peer_elastix

    if not peer_elastix.available():
        pytest.skip("itk-elastix is not installed (pip install itk-elastix; it is in the dev extra)")
    return peer_elastix


def _square(shape, top, left, size=24):
    img = np.full(shape, 30.0, np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[top:top + size, left:left + size] = 1
    lab[top + 8:top + 16, left + 8:left + 16] = 2
    img[lab == 1], img[lab == 2] = 200.0, 120.0
    return img, lab


def test_elastix_peer_follows_a_shifted_square():
    pe = _elastix()
    moving, mlab = _square((64, 64), 16, 16)
    fixed, flab = _square((72, 64), 22, 20)  # another grid size: labels must land on it
    res = pe.register_2d(fixed, moving, mlab)
    assert res.labels.shape == fixed.shape and res.labels.dtype == np.uint8
    assert set(np.unique(res.labels)) <= {0, 1, 2}
    from oneshotsam.evaluate import dice_iou

    d = dice_iou(res.labels, flab, [1, 2])
    assert d[1]["dice"] > 0.9 and d[2]["dice"] > 0.9
    assert res.cpu_seconds > 0 and res.threads >= 1 and res.grid_spacing == 2.25
    maps = pe.parameter_maps(pe.ElastixSettings(), fixed.shape, (1.0, 1.0))
    assert [m["Transform"] for m in maps] == [["AffineTransform"], ["BSplineTransform"]]
    assert maps[0]["Metric"] == ["AdvancedMattesMutualInformation"]
    assert all(m["MaximumNumberOfIterations"] == ["256"] for m in maps)


def test_elastix_peer_3d_and_per_slice():
    pe = _elastix()
    few = pe.ElastixSettings(affine_iterations=32, bspline_iterations=8, resolutions=2, grid_cells=4)
    mov = np.stack([_square((48, 48), 10, 10)[0]] * 4)
    lab = np.stack([_square((48, 48), 10, 10)[1]] * 4)
    fix = np.stack([_square((48, 48), 13, 12)[0]] * 4)
    res = pe.register_3d(fix, mov, lab, (2.0, 1.0, 1.0), few)
    assert res.labels.shape == fix.shape and res.labels.dtype == np.uint8
    per = pe.register_slices(fix, mov, lab, [0, 2], settings=few)
    assert sorted(per) == [0, 2] and per[2].labels.shape == (48, 48)


# ----------------------------------------------------------------------------- CLI end to end
TINY_2D = ["--preset", "paper", "--set", "resolution=64", "--set", "batch_size=2",
           "--set", 'net={"enc_channels": 4, "dec_channels": 8, "max_channels": 16, "n_levels": 3}',
           "--set", "epochs=0", "--set", "min_steps=0", "--set", "max_steps=0"]
TINY_VOLUME = ["--set", "steps=4", "--set", "followup_steps=4", "--set", "resolution=32",
               "--set", "batch=2", "--set", "aug_per_step=1", "--set", "cross_repeat=1"]


def _blobs(shift: int, low: int = 40, high: int = 200, s: int = 64):
    img = np.full((s, s), low, np.uint8)
    lab = np.zeros((s, s), np.uint8)
    lab[10 + shift:30 + shift, 8:28] = 1
    lab[10 + shift:30 + shift, 36:56] = 2
    lab[38:56, 22 + shift:42 + shift] = 3
    img[lab > 0] = high
    return img, lab


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """jsrt/ (6 films, F004 washed out), acdc/ (patients 1 and 23, 4 slices), la/ (2 volumes)."""
    cv2 = pytest.importorskip("cv2")
    sitk = pytest.importorskip("SimpleITK")
    root = tmp_path_factory.mktemp("protocol_data")
    for sub in ("images", "labels"):
        (root / "jsrt" / sub).mkdir(parents=True)
    for i in range(6):
        img, lab = _blobs(i % 3, *((100, 140) if i == 4 else (40, 200)))
        cv2.imwrite(str(root / "jsrt" / "images" / f"F{i:03d}.png"), img)
        cv2.imwrite(str(root / "jsrt" / "labels" / f"F{i:03d}.png"), lab)
    (root / "acdc").mkdir()
    ed, es = _blobs(0), _blobs(2)
    for p in (1, 23):
        edl = np.stack([ed[1]] * 3 + [np.zeros_like(ed[1])])  # ED labelled on slices 0-2
        esl = np.stack([es[1], es[1], np.zeros_like(es[1]), es[1]])
        arrays = {"ED": np.stack([ed[0]] * 4), "ED_label": edl, "ES": np.stack([es[0]] * 4),
                  "ES_label": esl}
        for k, a in arrays.items():
            sitk.WriteImage(sitk.GetImageFromArray(a.astype(np.uint8)),
                            str(root / "acdc" / f"patient{p:03d}_{k}.nii.gz"))
    (root / "la").mkdir()
    z, y, x = np.mgrid[:12, :48, :48]
    lab = (((z - 6) / 5.0) ** 2 + ((y - 24) / 12.0) ** 2 + ((x - 24) / 10.0) ** 2 <= 1).astype(np.uint8)
    for case in ("A", "B"):
        for suffix, a in (("image", 40 + 160 * lab), ("label", lab)):
            im = sitk.GetImageFromArray(a.astype(np.uint8))
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(root / "la" / f"{case}_{suffix}.nii.gz"))
    return root


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    from oneshotsam.cli import main

    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.slow
def test_cli_jsrt_refs_end_to_end(tiny_data, tmp_path, capsys):
    _elastix()
    out = tmp_path / "refs.json"
    rc, text, err = _run(["benchmark", "jsrt-refs", "--data", str(tiny_data), "--refs", "3",
                          "--targets", "3", "--peer-targets", "2", "--peer-iterations", "8",
                          "--device", "cpu", "--json", str(out), *TINY_2D], capsys)
    assert rc == 0, err
    assert "F004: washed out" in text and "| mean +- SE" in text and "elastix / method" in text
    assert "[0/3] reference F004" in err  # progress lines on stderr
    r = json.loads(out.read_text())
    assert r["references"] == ["F004", "F000", "F001"]  # washed x2 (F004, then F000 by name), spaced
    assert [x["targets"] for x in r["rows"]] == [3, 3, 3]
    assert [x["target"] for x in r["rows"][0]["per_target"]] == ["F000", "F001", "F003"]
    assert [x["target"] for x in r["rows"][0]["elastix_per_target"]] == ["F000", "F001"]
    assert r["settings"]["preset"] == "paper" and r["settings"]["overrides"]["epochs"] == 0
    assert r["rows"][0]["method_report"]["preset"] == "paper"
    assert r["peer"]["affine_iterations"] == 8 and r["summary"]["cpu_ratio_elastix_over_method"] > 0
    assert 0 < r["summary"]["mean_dice"] <= 1


@pytest.mark.slow
def test_cli_jsrt_perturb_end_to_end(tiny_data, tmp_path, capsys):
    out = tmp_path / "perturb.json"
    rc, text, err = _run(["benchmark", "jsrt-perturb", "--data", str(tiny_data), "--targets", "2",
                          "--kinds", "noise", "blur", "--no-peer", "--device", "cpu",
                          "--json", str(out), *TINY_2D], capsys)
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert r["references"] == ["F004", "F000"]
    assert [x["condition"] for x in r["rows"]] == ["clean", "targets: noise", "targets: blur",
                                                  "reference: noise", "reference: blur"]
    assert r["rows"][0]["method_drop"] == 0.0 and r["peer"] is None
    assert "elastix peer not run" in text


@pytest.mark.slow
def test_cli_acdc_pairs_end_to_end(tiny_data, tmp_path, capsys):
    _elastix()
    out = tmp_path / "pairs.json"
    rc, text, err = _run(["benchmark", "acdc-pairs", "--data", str(tiny_data), "--peer-every", "2",
                          "--peer-iterations", "8", "--device", "cpu", "--json", str(out),
                          *TINY_2D], capsys)
    assert rc == 0, err
    r = json.loads(out.read_text())
    # ED labelled on slices 0-2 of both patients; ES slice 2 empty (scored as absence)
    assert [(x["patient"], x["slice"]) for x in r["pairs"]] == [
        ("patient001", 0), ("patient001", 1), ("patient001", 2),
        ("patient023", 0), ("patient023", 1), ("patient023", 2)]
    assert [x["elastix"] is not None for x in r["pairs"]] == [True, False, True, False, True, False]
    assert [g["group"] for g in r["groups"]] == ["DCM", "HCM", "all"]
    assert r["pairs"][2]["absent_at_es"] == [1, 2, 3] and r["pairs"][2]["mean"] == 0.0
    assert r["pairs"][2]["present_mean"] is None and r["pairs"][0]["present_mean"] is not None
    assert r["groups"][-1]["present_pairs"] == 4 and "classes present at ES" in text
    assert "ABNRV = abnormal right ventricle" in text


@pytest.mark.slow
def test_cli_acdc_volumes_end_to_end(tiny_data, tmp_path, capsys):
    _elastix()
    out = tmp_path / "volumes.json"
    rc, text, err = _run(["benchmark", "acdc-volumes", "--data", str(tiny_data), "--patients", "23",
                          "--peer-iterations", "4", "--device", "cpu", "--json", str(out),
                          *TINY_2D], capsys)
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert r["patients"] == ["patient023"] and [g["group"] for g in r["groups"]] == ["HCM", "all"]
    row = r["rows"][0]
    assert set(row["dice"]) == {"RV", "myocardium", "LV"} and row["elastix"]["cpu_seconds"] > 0
    assert row["propagate"]["engine"] is not None and "copy" in row
    assert row["within_extent"]["mean"] >= row["mean"] and "within the ES extent" in text


@pytest.mark.slow
def test_cli_la_end_to_end(tiny_data, tmp_path, capsys):
    out = tmp_path / "la.json"
    rc, text, err = _run(["benchmark", "la", "--data", str(tiny_data), "--cases", "1",
                          "--device", "cpu", "--json", str(out), *TINY_VOLUME], capsys)
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert [x["case"] for x in r["rows"]] == ["A"] and r["rows"][0]["annotated_slice"] == 6
    assert r["rows"][0]["copy"]["mean"] < 1.0 and "oracle extent" in text
    row = r["rows"][0]
    assert row["within_extent"]["mean"] >= row["mean"] and row["slices_outside"] >= 0
    assert "within the true extent" in text
    assert r["settings"]["overrides"]["steps"] == 4


@pytest.mark.parametrize("argv,needle", [
    (["benchmark", "jsrt-refs", "--data", "/nowhere/at/all", "--no-peer"], "--data"),
    (["benchmark", "jsrt-refs", "--refs", "0", "--no-peer"], "--refs"),
    (["benchmark", "acdc-pairs", "--patients", "3-1", "--no-peer"], "--patients"),
])
def test_cli_user_errors(argv, needle, capsys):
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and needle in err


def test_protocol_subcommands_are_registered_with_help():
    from oneshotsam.cli import build_parser
    from oneshotsam.protocols.cli import PROTOCOLS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bench = next(a for a in sub.choices["benchmark"]._actions
                 if isinstance(a, argparse._SubParsersAction))
    assert set(PROTOCOLS) <= set(bench.choices)
    for name in PROTOCOLS:
        p = bench.choices[name]
        opts = {o for a in p._actions for o in a.option_strings}
        assert {"--data", "--json", "--device", "--preset", "--set"} <= opts
        # la has no elastix peer; corrections always runs its own peer (Fill between slices)
        assert ("--no-peer" in opts) == (name not in ("la", "corrections"))
        for a in p._actions:
            if a.option_strings:
                assert a.help and a.help.strip(), f"{name} {a.option_strings[0]} has no help"
        defaults = p.parse_args([])
        assert defaults.preset is None and defaults.overrides == []  # the method's own defaults


# ----------------------------------------------------------------------------- real data
@pytest.mark.data
@pytest.mark.slow
def test_jsrt_refs_on_the_shared_data(data_root, tmp_path, capsys):
    _elastix()
    out = tmp_path / "refs.json"
    rc, text, err = _run(["benchmark", "jsrt-refs", "--data", str(data_root), "--refs", "2",
                          "--targets", "4", "--peer-targets", "1", "--json", str(out)], capsys)
    assert rc == 0, err
    r = json.loads(out.read_text())
    films = sorted(p.stem for p in (data_root / "jsrt" / "images").glob("*.png"))
    assert len(r["rows"]) == 2 and all(x["targets"] == 4 for x in r["rows"])
    assert all(x["reference"] in films and x["chosen_as"].startswith("washed out") for x in r["rows"])
    assert all(0.0 <= x["mean_dice"] <= 1.0 and x["elastix_dice"] is not None for x in r["rows"])
    assert r["settings"]["preset"] is None and r["settings"]["overrides"] == {}
