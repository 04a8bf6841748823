"""Volume propagation: from annotated slice(s) to the whole structure, in the
reference volume and in follow-up visits.

Public API (see :mod:`oneshotsam.volume.pipeline`)::

    from oneshotsam.volume.pipeline import PropagationConfig, propagate
    from oneshotsam.volume.session import PropagationSession  # run, then update after corrections

Module map (imports only go down this list, no cycle): ``types`` (configuration,
events, result) and ``stoprule`` (absence rule) -> ``slices``, ``chain`` (one
walk), ``gaps`` (anchors split the slices into gaps, walked from both ends and
fused), ``confidence`` (per-slice evidence, review queue), ``followup``
(cross-visit pairing) -> ``engines`` (the slice-engine protocol, method engine,
engine choice; ``warpvol`` the warp-volume engine) -> ``jobs`` (``within_job``,
``followup_job``: one output volume each) -> ``pipeline`` (``propagate``) ->
``session`` (``PropagationSession``: run, then Update after corrections);
``align`` registers follow-ups, ``outputs`` writes files, ``benchmark`` and
``cli`` are front ends.

Importing this package imports numpy only (no torch, SimpleITK is imported
lazily by the functions that need it).
"""

__all__ = ["pipeline"]
