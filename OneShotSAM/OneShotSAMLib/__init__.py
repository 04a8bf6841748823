"""Helpers of the OneShotSAM Slicer module (Logic, MRML bridge, dependencies, weights).

Everything here except the Widget-facing parts of dependencies/weights uses
MRML, VTK and numpy only (no Qt), so it runs headless on ``slicer-core``.
"""
