"""One-shot segmentation methods (P2SAM, PerSAM, Med-PerSAM, Med-PerSAM warp-only).

Use :func:`oneshotsam.methods.registry.create_method` to build one by name.
"""
