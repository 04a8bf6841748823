"""Cohorts: many patients, each a reference visit and follow-up visits, from a manifest.

* :mod:`.manifest`: read and check ``patient,visit,image,labels[,ground_truth]`` CSV files;
* :mod:`.state`: input hashes, per-target completion records, atomic placement of outputs;
* :mod:`.patient`: one patient's chain (reference -> each target in visit order) through
  :func:`oneshotsam.volume.pipeline.propagate` and :func:`oneshotsam.volume.outputs.write_outputs`;
* :mod:`.summary`: ``summary.csv`` / ``summary.json``;
* :mod:`.lock`: one run per output folder (``OUT/.cohort.lock``);
* :mod:`.preflight`: ground-truth grids checked before the work, the files the summary
  names checked after it;
* :mod:`.raylink`: a private local Ray, or exactly the cluster ``--address`` names (token
  authentication included);
* :mod:`.execute`: runs the patients in-process or as Ray tasks (Ray is imported only there
  and in :mod:`.raylink`, inside functions).

Importing this package costs the standard library only.
"""

__all__ = ["manifest", "state", "patient", "summary", "lock", "preflight", "raylink", "execute"]
