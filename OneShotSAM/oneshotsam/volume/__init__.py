"""Volume propagation: from annotated slice(s) to the whole structure, in the
reference volume and in follow-up visits.

Public API (see :mod:`oneshotsam.volume.pipeline`)::

    from oneshotsam.volume.pipeline import PropagationConfig, propagate

Importing this package imports numpy only (no torch, SimpleITK is imported
lazily by the functions that need it).
"""

__all__ = ["pipeline"]
