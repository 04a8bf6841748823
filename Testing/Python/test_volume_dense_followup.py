"""``propagation="auto"`` with medpersam-warp: follow-ups of a densely contoured reference
(a planning contour on a contiguous run of >= 3 slices) are registered slice by slice
across visits with the 2D method (``direct``), one method call per annotated slice;
other cases keep the warp-volume engine."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.types import Volume
from oneshotsam.volume.pipeline import PropagationConfig, propagate
from oneshotsam.volume.followup import dense_followup

from conftest import TINY_NET  # noqa: E402
from volume_synth import affine, ellipsoid, sample

DENSE_CASES = [  # ref_slices, n_targets -> dense
    ([2, 3, 4], 1, True),
    ([4, 2, 3, 3], 2, True),        # order and duplicates do not matter
    ([2, 3, 4], 0, False),          # within-volume propagation: no follow-up
    ([2, 3], 1, False),             # too few slices
    ([2, 3, 5], 1, False),          # gap: not one contiguous contour
    ([3], 1, False),
]


@pytest.mark.parametrize("ref_slices,n_targets,expected", DENSE_CASES)
def test_dense_followup_rule(ref_slices, n_targets, expected):
    assert dense_followup(ref_slices, n_targets) is expected


def _case():
    aff = affine((1.0, 1.0, 2.0), (0, 0, 0))
    world = ellipsoid((16, 15, 7), (8, 6, 5))
    vol = sample(lambda p: 0.2 + 0.7 * world(p), (8, 32, 32), aff, "tiny")
    truth = (sample(world, (8, 32, 32), aff).voxels > 0.5).astype(np.uint8)
    return vol, Volume(truth, aff, "lab"), truth


@pytest.mark.parametrize("annotated,engine,calls", [("all", "method-direct", True), ("one", "warp-volume", None)])
def test_auto_engine_for_followups(annotated, engine, calls):
    torch = pytest.importorskip("torch")
    from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp

    torch.manual_seed(0)
    vol, lab, truth = _case()
    ks = [k for k in range(8) if truth[k].any()]
    assert len(ks) >= 3 and ks == list(range(ks[0], ks[-1] + 1))
    if annotated == "one":
        one = np.zeros_like(truth)
        one[ks[len(ks) // 2]] = truth[ks[len(ks) // 2]]
        lab = Volume(one, lab.ijk_to_lps, "lab")
    tiny = MedPerSAMWarp.from_preset(None, device="cpu", resolution=32, min_steps=2,
                                     max_steps=2, net=TINY_NET)
    cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu", align=False,
                            method_overrides=(("steps", 2), ("followup_steps", 2), ("resolution", 32))
                            if annotated == "one" else ())
    res = propagate(vol, lab, [vol], cfg, method=tiny if annotated == "all" else None)
    eng = res.report["engine"]
    assert eng["engine"] == engine
    out = np.asarray(res.label_volumes[0].voxels)
    assert out.shape == truth.shape
    if calls is not None:
        # no preset named: each slice pair is a "pair" situation (warp_choice), recorded
        assert eng["method_calls"] >= len(ks) and eng["preset"] == "auto"
        chosen = eng["chosen_settings"]
        assert chosen["situation"]["kind"] == "pair" and chosen["preset"] == "cpu-field"
        assert chosen["user_settings"]["resolution"] == 32
        # the merged settings of the last call and where each came from
        assert eng["settings"]["preset"] == "cpu-field"
        assert eng["settings"]["from"]["resolution"] == "user"
        per = {p["slice"]: p for p in res.report["targets"][0]["per_slice"]}
        assert all(per[k]["kind"] == "cross-visit" for k in ks)
        # the same volume as its own follow-up: an (almost) untrained warp is the identity
        assert all((out[k] == truth[k]).mean() > 0.97 for k in ks)


@pytest.mark.parametrize("extend", [False, True])
def test_followup_of_a_contour_stays_within_its_extent(extend):
    """The planning contour ends where the structure ends: slices beyond it are left
    empty (and reported) unless ``extend_beyond_contour`` asks for the outward walk."""
    torch = pytest.importorskip("torch")
    from oneshotsam.methods.medpersam.warp_method import MedPerSAMWarp

    torch.manual_seed(0)
    vol, lab, truth = _case()
    ks = [k for k in range(8) if truth[k].any()]
    outside = [k for k in range(8) if k not in ks]
    assert outside, "the synthetic structure must end inside the volume"
    # the follow-up: the structure has grown by one slice at each end
    grown = np.zeros_like(truth)
    for k in ks:
        grown[k] = truth[k]
    grown[ks[0] - 1], grown[ks[-1] + 1] = truth[ks[0]], truth[ks[-1]]
    followup = Volume(np.where(grown > 0, 0.9, 0.2).astype(np.float32), vol.ijk_to_lps, "grown")
    tiny = MedPerSAMWarp.from_preset(None, device="cpu", resolution=32, min_steps=2,
                                     max_steps=2, net=TINY_NET)
    cfg = PropagationConfig(method="medpersam-warp", window="0,1", device="cpu", align=False,
                            extend_beyond_contour=extend)
    done = []
    res = propagate(vol, lab, [followup], cfg, method=tiny,
                    progress=lambda d, t, m: done.append((d, t)) or True)
    out = np.asarray(res.label_volumes[0].voxels)
    rep = res.report["targets"][0]
    processed = {p["slice"] for p in rep["per_slice"]}
    assert done[-1][0] == done[-1][1]  # progress reaches its total either way
    if not extend:
        assert rep["beyond_contour"]["slices"] == outside
        assert processed == set(ks)
        assert not out[outside].any()
    else:
        assert "beyond_contour" not in rep
        assert {ks[0] - 1, ks[-1] + 1} <= processed  # the walk went past both ends
