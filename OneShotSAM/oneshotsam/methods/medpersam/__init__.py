"""Med-PerSAM (paper: ../shared/papers/med-persam.txt) split in two stages.

* warping stage (this package's ``nice_trans``, ``losses``, ``augment``,
  ``warp_train``): a NICE-Trans-style registration network trained at test time on
  the reference and the targets; ``warp_method.MedPerSAMWarp`` (registry name
  ``medpersam-warp``) answers with the warped reference labels alone;
* SAM stage (``prompts``, ``sam_stage``, ``method``): prompts from the warped
  mask, SAM refinement and retraining (registry name ``medpersam``).

Importing this package imports numpy only; torch and MONAI are imported inside
the functions that need them.
"""
