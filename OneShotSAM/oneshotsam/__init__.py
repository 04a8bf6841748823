"""OneShotSAM engine: one-shot medical image segmentation on top of SAM / SAM 2.

Slicer-independent. Importing this package (or any of its modules that do not
say otherwise in their docstring) must not import torch, sam2, hydra, slicer or
qt: heavy dependencies are imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
