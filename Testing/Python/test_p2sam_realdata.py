"""P2SAM presets on the real 4D-Lung and CVC-ClinicDB images with the tiny
random-weight SAM 1 model: the whole path runs (windowed 8-bit CT, RGB video
frames), one encode per image, reports complete. Accuracy needs real weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oneshotsam.methods.p2sam import P2SAM
from oneshotsam.types import Image2D


def _image(path):
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    a = a[..., ::-1] if a.ndim == 3 else a
    return Image2D((a.astype(np.float32) / 255.0), name=path.stem)


def _mask(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def tiny():
    from oneshotsam.backends.factory import create_backend

    return create_backend("sam-tiny-test", random_weights=True, device="cpu")


@pytest.mark.data
@pytest.mark.parametrize("preset, ref, refmask, targets", [
    ("lung4d", "lung4d/ref_image.png", "lung4d/ref_mask.png", ["lung4d/test_image.png"]),
    ("cvc", "cvc/images/01.png", "cvc/masks/01.png", ["cvc/images/02.png", "cvc/images/03.png"]),
])
def test_presets_on_real_images(data_root, tiny, preset, ref, refmask, targets):
    tiny.clear_cache()
    m = P2SAM.from_preset(preset, backend=tiny)
    calls0 = tiny.encode_calls
    res = m.segment(_image(data_root / ref), _mask(data_root / refmask),
                    [_image(data_root / t) for t in targets])
    assert tiny.encode_calls - calls0 == 1 + len(targets)
    for r, t in zip(res.results, targets):
        img = _image(data_root / t)
        assert r.labels.shape == img.shape_hw and set(np.unique(r.labels).tolist()) <= {0, 1}
        cls = r.report["classes"]["1"]
        assert len(cls["candidates"]) == len(m.config.candidates)
        if cls["chosen"] is not None:
            labs = np.asarray(cls["prompts"]["point_labels"])
            assert (labs == 1).sum() == cls["chosen"]["n_pos"]
        assert set(r.report["timings_s"]) == {"encode", "decode", "retrieval"}
    json.dumps(res.report)
