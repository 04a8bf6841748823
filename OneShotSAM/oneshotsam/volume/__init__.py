"""Volume propagation: from annotated slice(s) to the whole structure, in the
reference volume and in follow-up visits.

Public API (see :mod:`oneshotsam.volume.pipeline`)::

    from oneshotsam.volume.pipeline import PropagationConfig, propagate
    from oneshotsam.volume.session import PropagationSession  # run, then update after corrections

Module map (imports only go down this list, no cycle): ``types`` (configuration,
events, result) and ``stoprule`` (absence rule) -> ``slices``, ``chain`` (outward
walk), ``followup`` (cross-visit pairing) -> ``engines`` (the slice-engine
protocol, method engine, engine choice; ``warpvol`` the warp-volume engine) ->
``jobs`` (one output volume) -> ``run`` -> ``pipeline`` (``propagate``);
``align`` registers follow-ups, ``outputs`` writes files, ``benchmark`` and
``cli`` are front ends.

Importing this package imports numpy only (no torch, SimpleITK is imported
lazily by the functions that need it).
"""

__all__ = ["pipeline"]
