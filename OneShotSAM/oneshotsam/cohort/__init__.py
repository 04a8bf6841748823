"""Cohorts: many patients, each a reference visit and follow-up visits, from a manifest.

* :mod:`.manifest`: read and check ``patient,visit,image,labels[,ground_truth]`` CSV files;
* :mod:`.state`: input hashes, per-target completion records, atomic placement of outputs;
* :mod:`.patient`: one patient's chain (reference -> each target in visit order) through
  :func:`oneshotsam.volume.pipeline.propagate` and :func:`oneshotsam.volume.outputs.write_outputs`;
* :mod:`.summary`: ``summary.csv`` / ``summary.json``;
* :mod:`.execute`: runs the patients in-process or as Ray tasks (Ray is imported only there,
  inside functions).

Importing this package costs the standard library only.
"""

__all__ = ["manifest", "state", "patient", "summary", "execute"]
