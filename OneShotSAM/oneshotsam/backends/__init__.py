"""Promptable segmenters over the real ``segment_anything`` and ``sam2`` packages.

Build one with :func:`oneshotsam.backends.factory.create_backend`. Importing this
package does not import torch.
"""
