"""The fixed rules of the protocols: which references, which targets, which groups.

Nothing here looks at a method's result, so no rule can be tuned to one case.

* :func:`grey_range`: the 0.5-99.5 percentile grey range of a film (narrow =
  washed out);
* :func:`choose_references`: the ``washed`` films with the narrowest grey range
  (ties: name order), then films evenly spaced in name order among the others
  (:func:`spread`, which starts with the first ID, the Med-PerSAM Table 1
  reference) until there are ``n``;
* :func:`spread`: ``k`` items evenly spaced in order, ``items[floor(i * len / k)]``
  for ``i = 0..k-1`` (every item when ``k >= len``);
* :func:`parse_patients`: ``"1-10"``, ``"1,3,5"``, ``"1-10,41"`` -> patient numbers;
* :data:`ACDC_GROUPS` / :func:`acdc_group`: ACDC pathology groups by patient number
  (Bernard et al. 2018: 1-20 DCM, 21-40 HCM, 41-60 MINF, 61-80 NOR, 81-100 ABNRV);
* :func:`largest_slice`: the slice with the largest label area (LA protocol).

Standard library + numpy.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import numpy as np

from oneshotsam.errors import OneShotError

#: (first, last patient number, short name, what it is)
ACDC_GROUPS: tuple[tuple[int, int, str, str], ...] = (
    (1, 20, "DCM", "dilated cardiomyopathy"),
    (21, 40, "HCM", "hypertrophic cardiomyopathy"),
    (41, 60, "MINF", "myocardial infarction with altered ejection fraction"),
    (61, 80, "NOR", "normal subjects"),
    (81, 100, "ABNRV", "abnormal right ventricle"),
)


def acdc_group(number: int) -> str:
    """Short name of the ACDC group of patient ``number`` (1..100)."""
    for lo, hi, name, _ in ACDC_GROUPS:
        if lo <= int(number) <= hi:
            return name
    raise OneShotError(f"ACDC patient number {number} is outside 1..100")


def patient_number(name: str) -> int:
    """``"patient023"`` -> 23."""
    m = re.search(r"(\d+)$", str(name))
    if not m:
        raise OneShotError(f"cannot read a patient number from {name!r}")
    return int(m.group(1))


def parse_patients(spec: str | None) -> set[int] | None:
    """``"1-10,41"`` -> {1..10, 41}; None / empty -> None (every patient)."""
    if spec is None or not str(spec).strip():
        return None
    out: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise OneShotError(f"--patients expects numbers and ranges like 1-10,41; got {part!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise OneShotError(f"--patients range {part!r} ends before it starts")
        out.update(range(lo, hi + 1))
    return out


def grey_range(image: np.ndarray) -> float:
    """99.5th minus 0.5th percentile of the grey values (narrow = washed out)."""
    lo, hi = np.percentile(np.asarray(image, dtype=np.float64), [0.5, 99.5])
    return float(hi - lo)


def spread(items: Sequence, k: int | None) -> list:
    """``k`` items evenly spaced in the given order (all of them when ``k`` is None
    or not smaller than their number): ``items[floor(i * len / k)]``."""
    items = list(items)
    if k is None or k >= len(items):
        return items
    if k <= 0:
        return []
    return [items[math.floor(i * len(items) / k)] for i in range(k)]


def choose_references(ids: Sequence[str], ranges: Mapping[str, float], n: int,
                      washed: int = 2) -> list[tuple[str, str]]:
    """``[(id, why)]``: the ``washed`` narrowest-grey-range films, then evenly spaced
    IDs (name order, among the rest) to make ``n``; returned in that order."""
    ids = sorted(ids)
    if n < 1 or n > len(ids):
        raise OneShotError(f"--refs must be between 1 and the number of films ({len(ids)}); got {n}")
    washed = max(0, min(int(washed), n))
    by_range = sorted(ids, key=lambda i: (ranges[i], i))[:washed]
    out = [(i, f"washed out: grey range {ranges[i]:.0f} (rank {r + 1} narrowest)")
           for r, i in enumerate(by_range)]
    rest = [i for i in ids if i not in set(by_range)]
    for i in spread(rest, n - washed):
        out.append((i, f"evenly spaced in name order (position {ids.index(i) + 1}/{len(ids)})"))
    return out


def largest_slice(labels: np.ndarray, array_axis: int = 0) -> int:
    """Index along ``array_axis`` of the slice with the most labelled voxels (first on ties)."""
    lab = np.asarray(labels) > 0
    axes = tuple(a for a in range(lab.ndim) if a != array_axis)
    return int(np.argmax(lab.sum(axis=axes)))


__all__ = ["ACDC_GROUPS", "acdc_group", "patient_number", "parse_patients", "grey_range",
           "spread", "choose_references", "largest_slice"]
