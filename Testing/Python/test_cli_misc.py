"""The other subcommands (evaluate, weights, benchmark, propagate wiring), the
method registry and the small helpers of the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oneshotsam.cli import build_parser, main
from oneshotsam.cli_segment import jsonable, parse_overrides
from oneshotsam.errors import OneShotError
from oneshotsam.methods.registry import (METHODS, build_method, create_method, method_names,
                                         missing_backend_message, needs_backend)

SimpleITK = pytest.importorskip("SimpleITK")


def write_png(path: Path, a: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleITK.WriteImage(SimpleITK.GetImageFromArray(a), str(path))
    return path


# ----------------------------------------------------------------------------- registry
def test_registry_lists_the_four_methods() -> None:
    assert method_names() == ["p2sam", "persam", "persam-f", "medpersam", "medpersam-warp"]
    assert [n for n in METHODS if not needs_backend(n)] == ["medpersam-warp"]
    assert all(m.description for m in METHODS.values())


@pytest.mark.parametrize("name", ["p2sam", "persam", "persam-f", "medpersam"])
def test_methods_needing_sam_refuse_to_build_without_a_backend(name: str) -> None:
    with pytest.raises(OneShotError, match="--backend NAME --checkpoint PATH") as exc:
        create_method(name)
    assert "oneshotsam weights download" in str(exc.value)
    with pytest.raises(OneShotError, match="--backend"):
        build_method(name, backend_name="sam-vit-b")  # no checkpoint


def test_unknown_method_lists_the_names() -> None:
    with pytest.raises(OneShotError, match="p2sam, persam, persam-f, medpersam, medpersam-warp"):
        create_method("sam-everything")


def test_medpersam_warp_builds_without_backend() -> None:
    pytest.importorskip("torch")
    m = create_method("medpersam-warp", preset="paper", epochs=3)
    assert m.name == "medpersam-warp" and m.config.warp.epochs == 3


def test_p2sam_builds_from_tiny_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from oneshotsam.backends.tiny import save_tiny_checkpoint
    ckpt = save_tiny_checkpoint(tmp_path / "t.pt", "sam-tiny-test")
    m = build_method("p2sam", backend_name="sam-tiny-test", checkpoint=str(ckpt), device="cpu")
    assert m.name == "p2sam" and m.backend is not None


def test_missing_backend_message_suggests_the_warp_method() -> None:
    assert "medpersam-warp" in missing_backend_message("p2sam")


# ----------------------------------------------------------------------------- helpers
OVERRIDE_CASES = [
    (["epochs=2"], {"epochs": 2}),
    (["cost=cosine"], {"cost": "cosine"}),
    (["n_pos=[1, 2]", "bf16=true"], {"n_pos": [1, 2], "bf16": True}),
    (['net={"n_levels": 2}'], {"net": {"n_levels": 2}}),
    (["lr=1e-4"], {"lr": 1e-4}),
    ([], {}),
]


@pytest.mark.parametrize("items,expected", OVERRIDE_CASES)
def test_parse_overrides(items, expected) -> None:
    assert parse_overrides(items) == expected


@pytest.mark.parametrize("bad", ["epochs", "=3", "two words=1"])
def test_parse_overrides_refuses(bad) -> None:
    with pytest.raises(OneShotError, match="KEY=VALUE"):
        parse_overrides([bad])


def test_jsonable() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        a: tuple = (1, 2)

    data = {1: np.float32(0.5), "arr": np.arange(3), "nan": float("nan"), "p": Path("/x"),
            "c": C(), "n": np.int64(7), "b": np.bool_(True)}
    out = jsonable(data)
    assert out == {"1": 0.5, "arr": [0, 1, 2], "nan": None, "p": "/x", "c": {"a": [1, 2]},
                   "n": 7, "b": True}
    json.dumps(out)


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_prints_table_and_writes_json(tmp_path: Path, capsys) -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[0:4, 0:5] = 1   # 20 px
    gt[6:10, 6:10] = 2  # 16 px
    pred = gt.copy()
    pred[0:4, 0:5] = 0
    pred[0:2, 0:5] = 1  # label 1: 10 of 20 -> dice 2*10/30, iou 0.5
    write_png(tmp_path / "gt" / "a.png", gt)
    write_png(tmp_path / "pred" / "a.png", pred)
    (tmp_path / "pred" / "report.json").write_text("{}")  # ignored: not a label image
    rc = main(["evaluate", "--predictions", str(tmp_path / "pred"), "--ground-truth",
               str(tmp_path / "gt"), "--json", str(tmp_path / "eval.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "dice[1]" in out and "mean" in out
    table = json.loads((tmp_path / "eval.json").read_text())
    assert table["labels"] == [1, 2]
    assert table["per_label"]["1"]["dice"] == pytest.approx(2 / 3)
    assert table["per_label"]["1"]["iou"] == pytest.approx(0.5)
    assert table["per_label"]["2"]["dice"] == pytest.approx(1.0)
    assert table["mean"]["dice"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_evaluate_only_requested_labels(tmp_path: Path, capsys) -> None:
    gt = np.zeros((6, 6), np.uint8)
    gt[:3] = 1
    gt[3:] = 2
    write_png(tmp_path / "gt" / "a.png", gt)
    write_png(tmp_path / "pred" / "a.png", gt)
    assert main(["evaluate", "--predictions", str(tmp_path / "pred"), "--ground-truth",
                 str(tmp_path / "gt"), "--labels", "2", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["labels"] == [2]


@pytest.mark.parametrize("case", ["missing_folder", "shape_mismatch", "nothing_pairs"])
def test_evaluate_errors(tmp_path: Path, capsys, case: str) -> None:
    write_png(tmp_path / "gt" / "a.png", np.ones((6, 6), np.uint8))
    if case == "shape_mismatch":
        write_png(tmp_path / "pred" / "a.png", np.ones((5, 6), np.uint8))
    elif case == "nothing_pairs":
        write_png(tmp_path / "pred" / "zzz.png", np.ones((6, 6), np.uint8))
    rc = main(["evaluate", "--predictions", str(tmp_path / "pred"), "--ground-truth",
               str(tmp_path / "gt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err


# ----------------------------------------------------------------------------- weights
def test_weights_list(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ONESHOTSAM_CACHE", str(tmp_path))
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("sam-vit-b", "sam-vit-h", "sam2.1-hiera-tiny", "sam2.1-hiera-large"):
        assert name in out
    line_b = next(ln for ln in out.splitlines() if ln.startswith("sam-vit-b "))
    assert str(tmp_path / "sam_vit_b_01ec64.pth") in line_b
    assert str(tmp_path) in out.splitlines()[-1]


def test_weights_download_unknown_name(capsys, tmp_path: Path) -> None:
    rc = main(["weights", "download", "sam-vit-xxl", "--dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "sam-vit-b" in err and err.startswith("error: ")


def test_weights_download_from_local_server(tmp_path: Path, capsys) -> None:
    """The CLI wiring of the download: a file served on 127.0.0.1 with a known SHA-256."""
    import hashlib
    import http.server
    import threading
    payload = b"weights" * 1000
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "w.pt").write_bytes(payload)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path / "srv"), **k)

        def log_message(self, *a):  # noqa: D401
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/w.pt"
        rc = main(["weights", "download", url, "--dir", str(tmp_path / "dl"),
                   "--sha256", hashlib.sha256(payload).hexdigest()])
    finally:
        server.shutdown()
        server.server_close()
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "dl" / "w.pt").read_bytes() == payload
    assert out.strip().endswith(str(tmp_path / "dl" / "w.pt"))


# ----------------------------------------------------------------------------- parser wiring
def test_parser_has_every_subcommand() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"segment", "evaluate", "weights", "benchmark"} <= set(sub.choices)
    try:
        import oneshotsam.volume.cli  # noqa: F401
    except ModuleNotFoundError:
        return
    assert "propagate" in sub.choices
    bench = next(a for a in sub.choices["benchmark"]._actions if a.dest == "benchmark_name")
    assert {"jsrt", "acdc", "lung4d", "volume"} <= set(bench.choices)


def test_debug_flag_accepted_before_and_after_the_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["--debug", "weights", "list"]).debug is True
    assert parser.parse_args(["weights", "list", "--debug"]).debug is True
    assert parser.parse_args(["weights", "list"]).debug is False


def test_benchmark_missing_data_folder(tmp_path: Path, capsys) -> None:
    rc = main(["benchmark", "jsrt", "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2 and "--data" in err


@pytest.mark.parametrize("argv,start", [(["--start", "25", "--limit", "25"], 25), ([], None)])
def test_benchmark_acdc_start_reaches_the_runner(tmp_path: Path, monkeypatch, argv, start) -> None:
    import oneshotsam.benchmark2d as b2

    seen = {}
    monkeypatch.setattr(b2, "run_benchmark", lambda *a, **kw: seen.update(kw) or {})
    rc = main(["benchmark", "acdc", "--method", "medpersam-warp", "--data", str(tmp_path), *argv])
    assert rc == 0 and seen.get("start") == start


def test_benchmark_acdc_negative_start_is_refused(tmp_path: Path, capsys) -> None:
    rc = main(["benchmark", "acdc", "--method", "medpersam-warp", "--data", str(tmp_path),
               "--start", "-1"])
    assert rc == 2 and "--start" in capsys.readouterr().err
