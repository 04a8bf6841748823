"""Checkpoint registry, tiny checkpoint round trip and loading errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.backends import checkpoints as ck  # noqa: E402
from oneshotsam.backends.factory import BACKEND_NAMES, create_backend  # noqa: E402
from oneshotsam.backends.tiny import save_tiny_checkpoint, tiny_state_dict  # noqa: E402
from oneshotsam.errors import OneShotError  # noqa: E402


def test_registry_is_consistent():
    for name, info in ck.REGISTRY.items():
        assert name in BACKEND_NAMES and info.name == name
        assert info.url.startswith("https://dl.fbaipublicfiles.com/")
        assert info.url.endswith("/" + info.filename)
        assert info.licence == "Apache-2.0"
        assert info.sha256 is None or (len(info.sha256) == 64 and info.sha256 == info.sha256.lower())
    assert ck.REGISTRY["sam-vit-b"].sha256.startswith("ec2df627")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ONESHOTSAM_CACHE", str(tmp_path / "c"))
    assert ck.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ONESHOTSAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ck.cache_dir() == tmp_path / "x" / "oneshotsam"
    from oneshotsam.backends.factory import resolve_checkpoint

    cached = tmp_path / "x" / "oneshotsam" / "sam_vit_b_01ec64.pth"
    with pytest.raises(OneShotError, match="oneshotsam weights download sam-vit-b"):
        resolve_checkpoint("sam-vit-b")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert resolve_checkpoint("sam-vit-b") == cached  # where `oneshotsam weights download` puts it


@pytest.mark.parametrize("name", ["sam-tiny-test", "sam2-tiny-test"])
def test_tiny_checkpoint_round_trip(tmp_path, name):
    path = save_tiny_checkpoint(tmp_path / "sub" / f"{name}.pt", name, seed=3)
    raw = torch.load(path, weights_only=True)
    assert ("model" in raw) == name.startswith("sam2")  # official file layouts
    seg = create_backend(name, checkpoint=path)
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    out = seg.decode(seg.embed(img), points_xy=[[10, 10]], point_labels=[1], multimask=True)
    ref = create_backend(name, random_weights=True)  # seed 0: other weights
    sd_loaded = seg.model.state_dict()
    sd_seed3 = tiny_state_dict(name, seed=3)
    sd_seed3 = sd_seed3.get("model", sd_seed3)
    for k, v in sd_seed3.items():
        torch.testing.assert_close(sd_loaded[k], v)
    out_ref = ref.decode(ref.embed(img), points_xy=[[10, 10]], point_labels=[1], multimask=True)
    assert not np.allclose(out.low_res_logits, out_ref.low_res_logits)


@pytest.mark.parametrize("name", ["sam-vit-b", "sam2.1-hiera-tiny"])
def test_missing_checkpoint_says_how_to_download(tmp_path, name, monkeypatch):
    monkeypatch.setenv("ONESHOTSAM_CACHE", str(tmp_path))
    with pytest.raises(OneShotError, match=f"oneshotsam weights download {name}"):
        create_backend(name)
    with pytest.raises(OneShotError, match="not found"):
        create_backend(name, checkpoint=tmp_path / "nope.pth")


CORRUPT_CASES = [b"", b"not a checkpoint at all", b"PK\x03\x04" + b"\x00" * 100]


@pytest.mark.parametrize("payload", CORRUPT_CASES)
def test_corrupt_checkpoint(tmp_path, payload):
    p = tmp_path / "bad.pth"
    p.write_bytes(payload)
    with pytest.raises(OneShotError, match="corrupt"):
        create_backend("sam-tiny-test", checkpoint=p)


def test_truncated_checkpoint(tmp_path):
    good = save_tiny_checkpoint(tmp_path / "t.pt", "sam-tiny-test")
    data = good.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(OneShotError, match="corrupt"):
        create_backend("sam-tiny-test", checkpoint=bad)


def test_unsafe_pickle_rejected(tmp_path):
    p = tmp_path / "obj.pth"
    torch.save({"model": {"x": object()}}, p)  # not loadable with weights_only=True
    with pytest.raises(OneShotError):
        create_backend("sam-tiny-test", checkpoint=p)


def test_wrong_architecture(tmp_path):
    p1 = save_tiny_checkpoint(tmp_path / "s1.pt", "sam-tiny-test")
    with pytest.raises(OneShotError, match="sam-tiny-test"):
        create_backend("sam2-tiny-test", checkpoint=p1)
    p2 = save_tiny_checkpoint(tmp_path / "s2.pt", "sam2-tiny-test")
    with pytest.raises(OneShotError, match="--backend sam2-tiny-test"):
        create_backend("sam-tiny-test", checkpoint=p2)
    # a state dict of no known architecture
    p3 = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, p3)
    with pytest.raises(OneShotError, match="no known"):
        create_backend("sam-tiny-test", checkpoint=p3)


def _fake(shapes):
    return {k: torch.empty(s) for k, s in shapes.items()}


IDENTIFY_CASES = [
    ({"image_encoder.patch_embed.proj.weight": (768, 3, 16, 16)}, "sam-vit-b"),
    ({"image_encoder.patch_embed.proj.weight": (1024, 3, 16, 16)}, "sam-vit-l"),
    ({"image_encoder.patch_embed.proj.weight": (1280, 3, 16, 16)}, "sam-vit-h"),
    ({"image_encoder.trunk.patch_embed.proj.weight": (96, 3, 7, 7),
      **{f"image_encoder.trunk.blocks.{i}.norm1.weight": (96,) for i in range(12)}},
     "sam2.1-hiera-tiny"),
    ({"image_encoder.trunk.patch_embed.proj.weight": (96, 3, 7, 7),
      **{f"image_encoder.trunk.blocks.{i}.norm1.weight": (96,) for i in range(16)}},
     "sam2.1-hiera-small"),
    ({"image_encoder.trunk.patch_embed.proj.weight": (144, 3, 7, 7),
      **{f"image_encoder.trunk.blocks.{i}.norm1.weight": (144,) for i in range(48)}},
     "sam2.1-hiera-large"),
    ({"foo": (1,)}, None),
]


@pytest.mark.parametrize("shapes,expected", IDENTIFY_CASES)
def test_identify_architecture(shapes, expected):
    assert ck.identify_architecture(_fake(shapes)) == expected


def test_identify_real_sam2_tiny_config():
    """The block count of the real SAM 2.1 Hiera-T config matches the table."""
    from oneshotsam.backends.factory import build_model

    sd = build_model("sam2.1-hiera-tiny").state_dict()
    assert ck.identify_architecture(sd) == "sam2.1-hiera-tiny"
