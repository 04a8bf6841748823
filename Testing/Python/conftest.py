"""Shared pytest fixtures.

Real data (../shared/data) is found through ``--data PATH`` or the
``ONESHOTSAM_DATA`` environment variable (default: ``../shared/data`` next to
the repository); tests that need it skip with a clear message where absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Small tensors: one thread avoids the 2-thread pool collapse measured on shared
# CPUs (environment.md) and keeps decode fast.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[2]

#: a very small Med-PerSAM warping network (mechanics, not accuracy): shared by the
#: 2D method, 2D benchmark and dense follow-up tests (``from conftest import TINY_NET``)
TINY_NET = {"enc_channels": 4, "dec_channels": 8, "max_channels": 16, "n_levels": 3}
#: ``medpersam-warp`` overrides of a seconds-long 2D run on 64 x 64 images
TINY_WARP_2D = {"resolution": 64, "batch_size": 2, "net": TINY_NET}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--data", default=None,
                     help="folder with the shared real data (jsrt/, acdc/, la/, ...)")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # torch missing: the tests that need it fail on import
        pass


@pytest.fixture(scope="session")
def data_root(pytestconfig: pytest.Config) -> Path:
    """Root of the shared real data; skips the test where it is absent."""
    opt = pytestconfig.getoption("--data") or os.environ.get("ONESHOTSAM_DATA")
    root = Path(opt) if opt else REPO_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root}: pass --data PATH or set ONESHOTSAM_DATA")
    return root


@pytest.fixture(scope="session")
def slicer_session():
    """The headless Slicer (slicer-core) session shared by the Logic tests; skips where
    slicer-core is absent. ``OneShotSAM/`` is put on ``sys.path`` for ``OneShotSAMLib``."""
    pytest.importorskip("slicer")
    import sys

    module_dir = str(REPO_ROOT / "OneShotSAM")
    if module_dir not in sys.path:
        sys.path.insert(0, module_dir)
    from OneShotSAMLib.headless import bootstrap

    return bootstrap()


@pytest.fixture
def scene(slicer_session):
    """An empty MRML scene of :func:`slicer_session` (cleared again after the test)."""
    slicer_session.scene.Clear(0)
    yield slicer_session.scene
    slicer_session.scene.Clear(0)

