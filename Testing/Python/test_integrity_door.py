"""Data integrity at the door, 2D and 3D: each bad input gives exit status 2, one
line ``error: ...`` saying what to do, and nothing written (no output folder, no
temporary folder); the Slicer Logic refuses the same in-memory inputs with the
same messages (real MRML, slicer-core).

Table of cases: ``(id, command, how to spoil the inputs, words the message must hold)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from oneshotsam.cli import main

SimpleITK = pytest.importorskip("SimpleITK")


def _write(path: Path, array: np.ndarray) -> Path:
    """Write with SimpleITK (NaN/Inf survive in .mha, not in .nii here)."""
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(array), str(path), path.suffix == ".gz")
    return path


def _volume(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(100.0, 20.0, (8, 32, 32)).astype(np.float32)


def _labels() -> np.ndarray:
    lab = np.zeros((8, 32, 32), np.uint8)
    lab[4, 10:22, 10:22] = 1
    return lab


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    yy, xx = np.mgrid[0:48, 0:48]
    disc = (yy - 24) ** 2 + (xx - 24) ** 2 <= 100
    (tmp_path / "t").mkdir()
    return {
        "vol": _write(tmp_path / "vol.nii.gz", _volume()),
        "lab": _write(tmp_path / "lab.nii.gz", _labels()),
        "img": _write(tmp_path / "img.png", np.where(disc, 200, 40).astype(np.uint8)),
        "mask": _write(tmp_path / "mask.png", disc.astype(np.uint8)),
        "target": _write(tmp_path / "t" / "t1.png", np.where(disc, 190, 50).astype(np.uint8)),
        "out": tmp_path / "work" / "out",
        "tmp": tmp_path,
    }


def _propagate(f, **over) -> list[str]:
    a = {"--reference-volume": f["vol"], "--reference-labels": f["lab"], "--output-dir": f["out"],
         "--window": "0,200", "--device": "cpu"}
    a.update(over)
    return ["propagate", "--quiet"] + [str(x) for kv in a.items() for x in kv if x is not None]


def _segment(f, **over) -> list[str]:
    a = {"--method": "medpersam-warp", "--reference-image": f["img"], "--reference-mask": f["mask"],
         "--targets": f["target"], "--output-dir": f["out"], "--device": "cpu"}
    a.update(over)
    return ["segment", "--quiet"] + [str(x) for kv in a.items() for x in kv if x is not None]


def _nan_volume(f):
    v = _volume()
    v[3, 5, 5] = np.nan
    return _propagate(f, **{"--reference-volume": _write(f["tmp"] / "nan.mha", v)})


def _nan_target(f):
    v = _volume(1)
    v[2, 1, 1] = np.inf  # MetaImage keeps Inf (the NIfTI writer here does not)
    return _propagate(f, **{"--targets": _write(f["tmp"] / "inf_t.mha", v)})


def _nan_image(f):
    a = np.where(np.eye(48, dtype=bool), 0.5, 0.2).astype(np.float32)
    a[3, 3] = np.nan
    return _segment(f, **{"--targets": _write(f["tmp"] / "nan.mha", a), "--window": "0,1"})


def _seg_nrrd_truncated(f):
    import slicerio  # noqa: F401 - the reader of .seg.nrrd

    lab = np.random.default_rng(0).integers(0, 4, (8, 32, 32)).astype(np.uint8)  # a long payload
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(lab), str(f["tmp"] / "lab.seg.nrrd"), True)
    return _propagate(f, **{"--reference-labels": _truncate(f["tmp"] / "lab.seg.nrrd")})


def _big_label_png(f):
    m = np.zeros((48, 48), np.int32)
    m[20:28, 20:28] = 70000
    return _segment(f, **{"--reference-mask": _write(f["tmp"] / "big.nii", m)})


CASES: list[tuple[str, Callable[[dict], list[str]], tuple[str, ...]]] = [
    ("truncated .nii.gz volume", lambda f: _propagate(f, **{"--reference-volume": _truncate(f["vol"])}),
     ("truncated or damaged", "copy the file again")),
    ("truncated .nii.gz labels", lambda f: _propagate(f, **{"--reference-labels": _truncate(f["lab"])}),
     ("truncated or damaged",)),
    ("truncated .seg.nrrd labels", _seg_nrrd_truncated, ("truncated or damaged",)),
    ("truncated .nii.gz 2D target", lambda f: _segment(f, **{"--targets": _truncate(
        _write(f["tmp"] / "t2.nii.gz", np.random.default_rng(2).integers(0, 255, (48, 48), np.uint8)))}),
     ("truncated or damaged",)),
    ("not gzip at all", lambda f: _propagate(f, **{"--reference-volume": _rename_garbage(f)}),
     ("truncated or damaged",)),
    ("NaN voxels in the reference volume", _nan_volume, ("NaN/Inf", "replace them")),
    ("Inf voxels in a follow-up volume", _nan_target, ("NaN/Inf", "replace them")),
    ("NaN pixels in a 2D target", _nan_image, ("NaN/Inf", "replace them")),
    ("constant volume", lambda f: _propagate(f, **{"--reference-volume": _write(
        f["tmp"] / "flat.nii.gz", np.full((8, 32, 32), 7.0, np.float32))}), ("constant", "right file")),
    ("constant 2D target", lambda f: _segment(f, **{"--targets": _write(
        f["tmp"] / "flat.png", np.full((48, 48), 9, np.uint8))}), ("constant", "right file")),
    ("label value too large for PNG", _big_label_png, ("does not fit", "renumber")),
    ("bad --set value (propagate)", lambda f: _propagate(f, **{"--set": "steps=abc"}),
     ("steps", "expects a number")),
    ("negative --set value (segment)", lambda f: _segment(f, **{"--set": "epochs=-3"}),
     ("epochs", ">= 0")),
    ("bad stop-rule value", lambda f: _propagate(f, **{"--stop-min-area-ratio": "-0.5"}),
     ("stop_min_area_ratio", ">= 0")),
]


def _rename_garbage(f) -> Path:
    p = f["tmp"] / "garbage.nii.gz"
    p.write_bytes(b"this is not a gzip stream at all" * 10)
    return p


def _check_refused(tmp: Path, out: Path, rc: int, err: str, words: tuple[str, ...]) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "unexpected" not in err and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()
    assert not [p for p in tmp.rglob(".oneshotsam-*")]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_at_the_door(files, capsys, case) -> None:
    _, build, words = case
    argv = build(files)
    capsys.readouterr()
    rc = main(argv)
    _check_refused(files["tmp"], files["out"], rc, capsys.readouterr().err, words)


@pytest.mark.parametrize("command", ["segment", "propagate"])
def test_missing_cuda_is_a_user_error(files, capsys, command) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    argv = (_segment if command == "segment" else _propagate)(files, **{"--device": "cuda"})
    rc = main(argv)
    _check_refused(files["tmp"], files["out"], rc, capsys.readouterr().err, ("no usable CUDA GPU",))


def test_truncated_gzip_is_detected_where_simpleitk_zero_fills(files) -> None:
    """The measured trap: SimpleITK reads a half-truncated .nii.gz without an error."""
    from oneshotsam.errors import OneShotError
    from oneshotsam.medio import read_volume

    big = _write(files["tmp"] / "big.nii.gz", np.random.default_rng(0).normal(
        0, 1, (40, 64, 64)).astype(np.float32))
    data = big.read_bytes()
    big.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(OneShotError, match="truncated or damaged"):
        read_volume(big)


# ------------------------------------------------------------------ Slicer Logic
MODULE_DIR = Path(__file__).resolve().parents[2] / "OneShotSAM"




def _logic_error(session, voxels: np.ndarray | None, target_voxels: np.ndarray | None = None,
                 **params: str) -> tuple[str, int, int]:
    """Run the Logic on a synthetic case whose volume (or follow-up) voxels are replaced;
    returns (message, nodes before, nodes after)."""
    import slicer.util

    from oneshotsam.errors import OneShotError
    from OneShotSAMLib import parameters as P
    from OneShotSAMLib.logic import OneShotSAMLogic
    from OneShotSAMLib.synthetic import make_case

    scene = session.scene
    scene.Clear(0)
    case = make_case(scene, annotated=(6,))
    targets = ()
    if voxels is not None:
        slicer.util.updateVolumeFromArray(case.volume_node, voxels)
    if target_voxels is not None:
        follow = make_case(scene, annotated=(), name="visit2", seed=3)
        slicer.util.updateVolumeFromArray(follow.volume_node, target_voxels)
        targets = (follow.volume_node,)
    logic = OneShotSAMLogic(scene)
    node = logic.parameter_node()
    P.set_inputs(node, case.volume_node, case.segmentation_node, targets)
    P.write_settings(node, P.RunSettings(segment_ids=(case.segment_id,),
                                         target_mode="volumes" if targets else "self"))
    for k, v in params.items():
        node.SetParameter(k, v)
    before = scene.GetNumberOfNodes()
    with pytest.raises(OneShotError) as err:
        logic.run()
    return str(err.value), before, scene.GetNumberOfNodes()


def _shape(session) -> tuple[int, int, int]:
    from OneShotSAMLib.synthetic import make_case

    session.scene.Clear(0)
    return tuple(make_case(session.scene, annotated=(6,)).truth_kji.shape)


def test_logic_refuses_the_same_inputs_with_the_same_messages(slicer_session) -> None:
    from oneshotsam import integrity, settings
    from OneShotSAMLib.messages import for_slicer
    from oneshotsam.errors import OneShotError

    shape = _shape(slicer_session)
    nan = np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)
    nan[1, 2, 3] = np.nan
    flat = np.full(shape, 7.0, np.float32)
    cases = [
        (dict(voxels=nan), lambda: integrity.check_finite(nan, "NAME")),
        (dict(voxels=flat), lambda: integrity.check_not_constant(flat, "NAME")),
        (dict(voxels=None, target_voxels=flat), lambda: integrity.check_not_constant(flat, "NAME")),
        (dict(voxels=None, MethodOverrides='{"steps": "abc"}'),
         lambda: settings.propagation_config({}, overrides={"steps": "abc"})),
        (dict(voxels=None, StopMinAreaRatio="-0.5"),
         lambda: settings.propagation_config({"stop_min_area_ratio": "-0.5"})),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append((dict(voxels=None, Device="cuda"), lambda: settings.check_device("cuda")))
    for kwargs, cli_check in cases:
        message, before, after = _logic_error(slicer_session, **kwargs)
        with pytest.raises(OneShotError) as cli:
            cli_check()
        expected = for_slicer(str(cli.value))  # flags named as the module's settings
        if "NAME" in expected:  # the Logic names the volume node, the CLI the file
            head, tail = expected.split("NAME", 1)
            assert message.endswith(tail) and message.startswith(head), (message, expected)
        else:
            assert message == expected
        assert after == before, (kwargs.keys(), message)  # refused before any node was created
