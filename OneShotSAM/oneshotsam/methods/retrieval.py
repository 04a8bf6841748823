"""Distribution-guided retrieval (P2SAM Sec. 3.2, Eq. 3; Appendix F, Eq. 5).

Each candidate prompt set yields a target prediction; its foreground features
(grid cells where the predicted low-res logit > 0) are compared with the
reference foreground features by the exact optimal-transport cost of POT's
``ot.emd2`` with uniform weights; the candidate with the smallest cost wins.

Cost (the ``cost`` argument):
  * ``"sqeuclidean"``: squared Euclidean distance between RAW features
    (``ot.dist`` default) = the authors' code; the default.
  * ``"cosine"``: cosine distance ``1 - cos`` = the paper's Appendix F, Eq. 5
    (which writes the cosine term; a transport cost must be a distance).

Defaults follow the authors' code: every point of both sets and
``numItermax = 1e7`` (``compute_wasserstein_distance`` in their
``testing/test_utils/utils.py``). Exact EMD is roughly cubic in the number of
points (seconds at 4096 x 4096), so ``max_points`` optionally bounds both sets by
deterministic uniform-stride subsampling in raster order (an option for very
large structures, not the authors' method; docs/methods_fidelity.md).
Identical candidate sets are costed once.

This module imports numpy (POT lazily).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

COSTS = ("sqeuclidean", "cosine")
#: 0 = no subsampling (the authors' code uses every point)
DEFAULT_MAX_POINTS = 0
#: the authors' ``ot.emd2(..., numItermax=10000000)``
DEFAULT_NUM_ITERMAX = 10_000_000

__all__ = ["COSTS", "subsample_points", "ot_cost", "RetrievalResult", "retrieve"]


def subsample_points(points: np.ndarray, max_points: int | None) -> np.ndarray:
    """At most ``max_points`` rows of ``(N, C)`` ``points``, taken at a uniform
    stride (deterministic; first and last rows kept). ``None``/0 = all rows."""
    p = np.asarray(points)
    n = p.shape[0]
    if not max_points or n <= max_points:
        return p
    idx = np.unique(np.linspace(0, n - 1, int(max_points)).round().astype(np.int64))
    return p[idx]


def ot_cost(reference: np.ndarray, target: np.ndarray, cost: str = "sqeuclidean",
            max_points: int | None = DEFAULT_MAX_POINTS,
            num_itermax: int = DEFAULT_NUM_ITERMAX) -> float:
    """Exact OT cost between two uniform point clouds ``(N, C)`` and ``(M, C)``.

    Returns ``inf`` when ``target`` is empty (an empty prediction). With
    ``max_points`` > 0 each side is first subsampled to that many points (see
    :func:`subsample_points`; default 0 = all points, as the authors).
    """
    import ot  # POT, lazy

    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}; got {cost!r}")
    r = np.asarray(reference, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if t.shape[0] == 0:
        return float("inf")
    if r.shape[0] == 0:
        raise ValueError("reference feature set is empty")
    r = subsample_points(r, max_points)
    t = subsample_points(t, max_points)
    a = np.full(r.shape[0], 1.0 / r.shape[0])
    b = np.full(t.shape[0], 1.0 / t.shape[0])
    m = ot.dist(r, t, metric=cost)
    return float(ot.emd2(a, b, m, numItermax=int(num_itermax)))


@dataclass
class RetrievalResult:
    """Outcome of a retrieval.

    Attributes:
        best: index of the candidate with the smallest cost; None when every
            candidate is empty (infinite cost).
        costs: cost of every candidate (``inf`` for empty predictions).
        seconds: wall time spent on the costs.
    """

    best: int | None
    costs: list[float] = field(default_factory=list)
    seconds: float = 0.0


def retrieve(reference: np.ndarray, candidates: Sequence[np.ndarray], cost: str = "sqeuclidean",
             max_points: int | None = DEFAULT_MAX_POINTS,
             num_itermax: int = DEFAULT_NUM_ITERMAX,
             keys: Sequence[object] | None = None) -> RetrievalResult:
    """Pick the candidate whose feature set is closest to ``reference``.

    Args:
        reference: ``(N, C)`` reference foreground features.
        candidates: ``(M_i, C)`` target foreground features per candidate
            (``M_i = 0`` for an empty prediction).
        keys: optional hashable identity per candidate (e.g. the bytes of its
            cell mask): candidates with equal keys share one cost computation.
    Returns:
        :class:`RetrievalResult`; ties go to the earliest candidate.
    """
    t0 = time.perf_counter()
    costs: list[float] = []
    memo: dict[object, float] = {}
    for i, cand in enumerate(candidates):
        key = keys[i] if keys is not None else None
        if key is not None and key in memo:
            costs.append(memo[key])
            continue
        c = ot_cost(reference, cand, cost=cost, max_points=max_points, num_itermax=num_itermax)
        if key is not None:
            memo[key] = c
        costs.append(c)
    finite = [i for i, c in enumerate(costs) if np.isfinite(c)]
    best = min(finite, key=lambda i: (costs[i], i)) if finite else None
    return RetrievalResult(best, costs, time.perf_counter() - t0)
