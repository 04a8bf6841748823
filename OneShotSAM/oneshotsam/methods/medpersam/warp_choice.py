"""Default settings of the warping model, chosen from the situation (never from a dataset).

When the user names no preset, :func:`choose_warp_settings` picks the warping
settings from what the run is: how many targets, a single pair or a cohort or a
whole volume, how large the annotated structure is in pixels, CPU or GPU. The
result carries the reasons, and every front end writes it into ``report.json``
(``chosen_settings``), so a user sees what was chosen and why.

The base settings live in ``presets/medpersam.json`` (``cpu``, ``cpu-field``,
``volume``, ``paper``); this module only picks one of them and derives the
working-grid size. The rules and the measurements behind them are in
docs/warp_adaptive.md.

Rules (first match):

==========  =====================  ==========================================================
device      situation              settings
==========  =====================  ==========================================================
cuda        any 2D run             ``paper`` (appendix B.4: 256 px, batch 32, 30 epochs)
cpu         volume propagation     ``volume`` (one network per volume, adjacent slices)
cpu         2D: a pair or cohort   ``cpu-field`` (the ``field`` model: each target's own
                                   deformation, optimised directly; 64 px grid)
==========  =====================  ==========================================================

The network presets (``cpu``: one network for a cohort, L_aug copies, converging
schedule) stay for the full Med-PerSAM method and for ``--preset cpu``.

On the CPU the working grid follows the structure. The crop around the reference
labels (their box grown by the preset's ``roi_margin`` per side) is widened, when
needed, to at least :data:`MIN_CONTEXT` of the image's long side, so a small
structure (a tumour) keeps the anatomy around it that the registration needs.
The grid side is half the crop's side (the flow is upsampled and applied to the
full-resolution labels), rounded up to a multiple of 16 and kept within the
preset's ``[min_resolution, resolution]``.

Imports the standard library and numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KINDS = ("cohort", "pair", "volume")
#: smallest crop side, as a fraction of the image's long side (docs/warp_adaptive.md:
#: the 4D-Lung tumour, box 41 px in 512 px, scored Dice 0.00 with a crop of the box +
#: 50 % per side and 0.83 with a crop of a quarter of the image)
MIN_CONTEXT = 0.25


@dataclass(frozen=True)
class Situation:
    """What a run is, as far as the default settings care.

    Attributes:
        kind: ``"cohort"`` (one reference, several 2D targets), ``"pair"`` (one
            reference, one target) or ``"volume"`` (slices of one volume, or of
            follow-up visits, through the volume warp engine).
        n_targets: target images (2D) or slices to reach (volume).
        image_hw: ``(H, W)`` of the reference image in pixels.
        structure_hw: ``(h, w)`` in pixels of the bounding box of the reference
            labels (all labels together).
        device: ``"cpu"`` or ``"cuda"``.
    """

    kind: str
    n_targets: int
    image_hw: tuple[int, int]
    structure_hw: tuple[int, int]
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Situation.kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_targets < 1:
            raise ValueError(f"Situation.n_targets must be >= 1, got {self.n_targets}")

    @classmethod
    def of_2d_run(cls, reference_labels: np.ndarray, n_targets: int, device: str) -> "Situation":
        """The situation of a 2D ``segment`` call: a pair for one target, else a cohort."""
        lab = np.asarray(reference_labels)
        return cls("pair" if n_targets == 1 else "cohort", int(n_targets),
                   tuple(int(s) for s in lab.shape[:2]), _box_hw(lab), _device(device))


@dataclass(frozen=True)
class Choice:
    """Chosen settings: ``preset`` is the base, ``settings`` what replaces its
    values (before the user's own ``--set`` overrides), ``reasons`` one line per
    decision."""

    situation: Situation
    preset: str
    settings: dict
    reasons: tuple[str, ...]

    def report(self) -> dict[str, Any]:
        """JSON-ready record for ``report.json``."""
        return {"situation": asdict(self.situation), "preset": self.preset,
                "settings": dict(self.settings), "reasons": list(self.reasons)}


def choose_warp_settings(situation: Situation) -> Choice:
    """Pick the base preset and the working grid for ``situation`` (see module doc)."""
    from oneshotsam.presets import load_preset

    s = situation
    if s.device == "cuda" and s.kind != "volume":
        return Choice(s, "paper", {}, (
            "GPU: the paper's schedule (appendix B.4: 256 px, batch 32, 30 epochs) fits its budget",))
    reasons: list[str] = []
    if s.kind == "volume":
        preset = "volume"
        reasons.append("volume: one network on the volume's adjacent slice pairs "
                       "(and the cross-visit pairs of follow-ups)")
    else:
        preset = "cpu-field"
        what = "one target" if s.kind == "pair" else f"{s.n_targets} targets"
        reasons.append(f"{what} on the CPU: each target's own deformation (affine, then affine + "
                       "displacement pyramid) is optimised directly, cropped to the structure; "
                       "as accurate as the network on pairs and cohorts at a fraction of its cost")
    base = load_preset("medpersam", preset)
    settings: dict[str, Any] = {}
    if s.kind != "volume":
        margin = base.get("roi_margin")
        if margin is not None:
            wide = context_margin(s.image_hw, s.structure_hw, float(margin))
            if wide > float(margin):
                margin = settings["roi_margin"] = round(wide, 3)
                reasons.append(f"small structure ({max(s.structure_hw)} px in {max(s.image_hw)} px): "
                               f"crop widened to {MIN_CONTEXT:g} of the image (roi_margin {margin:g})")
        res = working_resolution(s.image_hw, s.structure_hw, margin,
                                 int(base.get("min_resolution", 64)), int(base["resolution"]))
        settings["resolution"] = res
        reasons.append(f"working grid {res} px: half the side of the structure's box with its "
                       f"margin, within {base.get('min_resolution', 64)}..{base['resolution']} px")
    return Choice(s, preset, settings, tuple(reasons))


def working_resolution(image_hw: tuple[int, int], structure_hw: tuple[int, int],
                       roi_margin: float | None, low: int, high: int) -> int:
    """Side of the square working grid: half the larger side (pixels) of the
    structure's box grown by ``roi_margin`` per side (the whole image when
    ``roi_margin`` is None), clipped to the image, rounded up to a multiple of
    16 and kept within ``[low, high]``."""
    h, w = (int(x) for x in structure_hw)
    if roi_margin is None:
        side = max(image_hw)
    else:
        m = float(roi_margin)
        side = max(min(image_hw[0], h * (1 + 2 * m)), min(image_hw[1], w * (1 + 2 * m)))
    half = int(np.ceil(side / 32.0 - 0.01) * 16)  # tolerance: margins are rounded
    return int(min(high, max(low, half)))


def context_margin(image_hw: tuple[int, int], structure_hw: tuple[int, int], margin: float,
                   min_context: float = MIN_CONTEXT) -> float:
    """The larger of ``margin`` and the per-side margin (fraction of the structure
    box's larger side) that makes the crop ``min_context`` of the image's long side."""
    side = max(1, max(int(x) for x in structure_hw))
    need = min_context * max(image_hw)
    return max(float(margin), (need / side - 1.0) / 2.0)


def _box_hw(lab: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero((lab != 0).any(axis=1))
    cols = np.flatnonzero((lab != 0).any(axis=0))
    if rows.size == 0:
        return tuple(int(s) for s in lab.shape[:2])
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _device(device: str) -> str:
    from oneshotsam.devices import device_kind

    return device_kind(device)


__all__ = ["Situation", "Choice", "choose_warp_settings", "working_resolution", "context_margin",
           "KINDS", "MIN_CONTEXT"]
