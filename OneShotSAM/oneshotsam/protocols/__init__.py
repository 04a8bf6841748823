"""Benchmark protocols that cannot be tuned to one case (``oneshotsam benchmark <name>``).

Each protocol runs the one-shot method with its DEFAULT settings (no preset, no
overrides unless the user passes ``--preset`` / ``--set``) and, in the same
command on the same cases, the classical peer a user would pick instead
(elastix, :mod:`oneshotsam.peer_elastix`), so every figure is a ratio measured
side by side. See ``docs/benchmarks.md``.

* ``jsrt-refs``    several references (:mod:`.jsrt`), mean +- standard error;
* ``jsrt-perturb`` Med-PerSAM appendix D perturbations of targets / reference (:mod:`.jsrt`);
* ``acdc-pairs``   every ED -> ES slice pair of the ACDC patients (:mod:`.acdc`);
* ``acdc-volumes`` the ED labelled volume -> ES through ``propagate`` (:mod:`.acdc`);
* ``la``           one annotated slice -> the LA volume through ``propagate`` (:mod:`.la`).

Shared pieces: :mod:`.stats` (mean / SE, tables, clocks), :mod:`.rules`
(reference and subset choice, ACDC groups), :mod:`.perturb`, :mod:`.data`
(readers of the shared data), :mod:`.runner` (method and peer calls, timing,
settings). The command line is :mod:`.cli`. Numpy at import time only.
"""
