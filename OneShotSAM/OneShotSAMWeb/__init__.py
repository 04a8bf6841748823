"""OneShotSAM in a browser: a trame-slicer front end on the Slicer module's Logic.

``oneshotsam web`` (:mod:`OneShotSAMWeb.cli`) starts it. The engine
(:mod:`oneshotsam`) does not import this package; this package imports trame,
trame-slicer and slicer-core only when the app is built (:mod:`OneShotSAMWeb.app`).
"""
