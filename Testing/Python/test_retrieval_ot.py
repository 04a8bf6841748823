"""Exact OT retrieval: closed forms, empties, and subsampling faithful to full EMD."""

from __future__ import annotations

import numpy as np
import pytest

from oneshotsam.methods.retrieval import ot_cost, retrieve, subsample_points

# (reference points, target points, cost, expected) — hand-checkable closed forms
CLOSED_FORM = [
    # two Diracs: cost = squared distance (3^2 + 4^2)
    (np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), "sqeuclidean", 25.0),
    # identical sets: 0
    (np.array([[1.0, 2.0], [5.0, 1.0]]), np.array([[5.0, 1.0], [1.0, 2.0]]), "sqeuclidean", 0.0),
    # two points each, optimal plan pairs them by position: (1 + 1) / 2
    (np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[1.0, 0.0], [9.0, 0.0]]), "sqeuclidean", 1.0),
    # one Dirac vs two: mean squared distance (4 + 16) / 2
    (np.array([[0.0]]), np.array([[2.0], [-4.0]]), "sqeuclidean", 10.0),
    # cosine distance of orthogonal vectors: 1; of parallel vectors: 0
    (np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]), "cosine", 1.0),
    (np.array([[1.0, 1.0]]), np.array([[3.0, 3.0]]), "cosine", 0.0),
]


@pytest.mark.parametrize("ref, tgt, cost, expected", CLOSED_FORM)
def test_closed_forms(ref, tgt, cost, expected):
    assert ot_cost(ref, tgt, cost=cost) == pytest.approx(expected, abs=1e-9)


def test_empty_target_is_infinite():
    assert ot_cost(np.ones((3, 4)), np.zeros((0, 4))) == float("inf")


def test_bad_cost_name():
    with pytest.raises(ValueError, match="cost must be one of"):
        ot_cost(np.ones((2, 2)), np.ones((2, 2)), cost="l1")


@pytest.mark.parametrize("n, k, expected", [
    (10, 256, list(range(10))), (5, 3, [0, 2, 4]), (100, 2, [0, 99]), (7, None, list(range(7))),
])
def test_subsample_stride(n, k, expected):
    x = np.arange(n)[:, None]
    assert subsample_points(x, k)[:, 0].tolist() == expected


def test_retrieve_picks_matching_distribution():
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 1.0, (200, 8))
    good = rng.normal(0.0, 1.0, (150, 8))
    mixed = np.concatenate([rng.normal(0.0, 1.0, (80, 8)), rng.normal(4.0, 1.0, (80, 8))])
    shifted = rng.normal(2.0, 1.0, (120, 8))
    res = retrieve(ref, [mixed, np.zeros((0, 8)), good, shifted])
    assert res.best == 2
    assert res.costs[1] == float("inf")
    assert res.costs[2] < res.costs[3] and res.costs[2] < res.costs[0]


def test_retrieve_all_empty_gives_none():
    res = retrieve(np.ones((4, 3)), [np.zeros((0, 3)), np.zeros((0, 3))])
    assert res.best is None and all(np.isinf(res.costs))


def test_retrieve_shares_equal_keys():
    ref = np.eye(3)
    res = retrieve(ref, [np.eye(3), np.zeros((2, 3)) + 5], keys=["a", "a"])
    assert res.costs[0] == res.costs[1] == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_subsampled_choice_matches_full_exact(seed):
    """Candidates like P2SAM's: nested masks over one feature field (raster
    order): core only (under), core + ring (right), core + ring + surroundings
    (over). The bounded 256-point computation must choose what full exact EMD
    chooses, and both must choose the right mask."""
    rng = np.random.default_rng(seed)
    g, c = 36, 16
    yy, xx = np.mgrid[:g, :g]
    d2 = (yy - 18) ** 2 + (xx - 18 - seed) ** 2
    core, ring = d2 < 36, (d2 >= 36) & (d2 < 121)
    mean = np.zeros((g, g, c))
    mean[core, 0] = 3.0
    mean[ring, 1] = 3.0
    field = mean + rng.normal(0, 0.4, (g, g, c))
    ref = np.concatenate([field[core][::2], field[ring]])     # another sample of the same parts
    cands = [field[core], field[core | ring], field[d2 < 200], field[d2 < 64]]
    full = retrieve(ref, cands, max_points=0)
    fast = retrieve(ref, cands, max_points=256)
    assert fast.best == full.best == 1
    assert np.argsort(fast.costs).tolist() == np.argsort(full.costs).tolist()


def test_max_points_option_costs_the_subsampled_sets():
    """The named speed option (not the authors' method, whose default is every point):
    ``max_points=256`` is exact OT on the uniform-stride subsets of both sides. Timings
    are in docs/methods_fidelity.md (no timed unit test)."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(700, 16)).astype(np.float32)
    cands = [rng.normal(size=(300 + 150 * i, 16)).astype(np.float32) for i in range(3)]
    fast = retrieve(ref, cands, max_points=256)
    sub = [subsample_points(c, 256) for c in cands]
    assert all(len(c) == 256 for c in sub)
    exact_on_subsets = retrieve(subsample_points(ref, 256), sub, max_points=0)
    assert fast.costs == pytest.approx(exact_on_subsets.costs, rel=1e-12)
    assert fast.best == exact_on_subsets.best
