"""Med-PerSAM full method: retraining loop, encoder-call count, cancel, on tiny random SAMs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oneshotsam.errors import OneShotError  # noqa: E402
from oneshotsam.methods.medpersam.method import MedPerSAM, MedPerSAMConfig  # noqa: E402
from oneshotsam.methods.medpersam.prompts import PromptConfig  # noqa: E402
from oneshotsam.methods.medpersam.sam_stage import SamStageConfig  # noqa: E402
from oneshotsam.methods.medpersam.warp_train import WarpResult  # noqa: E402
from oneshotsam.types import Image2D  # noqa: E402

HW = (72, 64)  # non-square on purpose


@pytest.fixture(scope="module", params=["sam-tiny-test", "sam2-tiny-test"])
def backend_name(request):
    return request.param


def _backend(name, cache_size=0):
    from oneshotsam.backends.factory import create_backend
    # cache_size=0: the method itself must avoid re-encoding, not the backend's LRU
    return create_backend(name, device="cpu", random_weights=True, cache_size=cache_size)


def _scene(seed, shift=0, hw=HW):
    """Grey image with two bright blobs (labels 1 and 3) shifted by ``shift`` px."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0.0, 0.2, hw).astype(np.float32)
    lab = np.zeros(hw, np.uint8)
    lab[12 + shift:36 + shift, 8:28] = 1
    lab[40:62, 34 + shift:58 + shift] = 3
    img[lab > 0] += 0.6
    return Image2D(np.clip(img, 0, 1).astype(np.float32), name=f"img{seed}"), lab


class FakeSession:
    """Stands in for WarpSession: the reference labels shifted by the target index."""

    instances: list["FakeSession"] = []

    def __init__(self, cfg, reference, labels, targets, device="cpu", seed=0):
        self.labels = np.asarray(labels)
        self.targets = list(targets)
        self.train_calls: list[dict] = []
        self.warp_calls: list[int] = []
        self.cancelled = False
        FakeSession.instances.append(self)

    def train(self, epochs=None, pseudo_labels=None, progress=None):
        self.train_calls.append({"epochs": epochs, "pseudo": None if pseudo_labels is None
                                 else {k: np.array(v) for k, v in pseudo_labels.items()}})
        for s in range(2):
            if progress is not None and not progress(s + 1, 2, f"step {s + 1}/2"):
                self.cancelled = True
                break
        return {"steps": 2, "seconds": 0.0, "loss_first": 1.0, "loss_last": 0.5,
                "cancelled": self.cancelled, "history": []}

    def warp_target(self, index):
        self.warp_calls.append(index)
        lab = np.roll(self.labels, index, axis=0)
        vals = [0] + sorted(int(v) for v in np.unique(self.labels) if v)
        probs = np.stack([(lab == v) for v in vals]).astype(np.float32)
        return WarpResult(probs=probs, labels=lab, similarity=0.81, flow_stats={"mean_disp_px": 1.0})


def _config(rounds, mem_mb=1024.0):
    sam = SamStageConfig(prompts=PromptConfig(3, 3, 5), refine_iterations=1)
    return MedPerSAMConfig(warp={}, sam=sam, retrain_rounds=rounds, embedding_memory_mb=mem_mb)


def _data(n=3):
    ref, lab = _scene(0)
    targets = [_scene(10 + i, shift=i)[0] for i in range(n)]
    return ref, lab, targets


@pytest.mark.parametrize("rounds,mem_mb", [(2, 1024.0), (2, 0.0), (0, 1024.0)])
def test_retraining_loop_encodes_each_image_once(backend_name, rounds, mem_mb):
    be = _backend(backend_name)
    ref, lab, targets = _data(3)
    FakeSession.instances.clear()
    m = MedPerSAM(be, _config(rounds, mem_mb), device="cpu", session_factory=FakeSession)
    out = m.segment(ref, lab, targets)
    sess = FakeSession.instances[-1]
    # reference + 3 targets, each encoded once across all rounds (backend cache disabled)
    assert be.encode_calls == 1 + len(targets)
    assert out.report["sam_encoder_calls"] == 4
    # initial training, then one retraining per round with every target's pseudo-label
    assert len(sess.train_calls) == rounds + 1
    assert sess.train_calls[0]["pseudo"] is None
    for r in range(1, rounds + 1):
        assert sorted(sess.train_calls[r]["pseudo"]) == [0, 1, 2]
    assert sess.warp_calls == list(range(3)) * (rounds + 1)
    # pseudo-labels of round r are round r-1's answers (shapes / values of the reference)
    if rounds:
        assert sess.train_calls[1]["pseudo"][1].shape == HW
        assert set(np.unique(sess.train_calls[1]["pseudo"][1])) <= {0, 1, 3}
    assert not out.cancelled and len(out.results) == 3
    json.dumps(out.report)
    for r in out.results:
        assert r.labels.shape == HW and set(np.unique(r.labels)) <= {0, 1, 3}
        assert 0.0 <= r.confidence <= 1.0 and r.labels.dtype == lab.dtype
        json.dumps(r.report)
        assert r.report["round"] == rounds and r.report["rounds_completed"] == rounds + 1
        for v in ("1", "3"):
            c = r.report["classes"][v]
            assert len(c["stages"]) == 2  # 1 SAM call + 1 refinement (B.4)
            assert c["prompts"]["box_xyxy"] is not None
            assert sum(c["prompts"]["point_labels"]) == 5
    assert out.report["embedding_store"]["in_memory"] == 0  # released after the last round
    peak = out.report["embedding_store"]["peak"]
    if rounds == 0:
        assert peak == {"in_memory": 0, "on_disk": 0, "memory_mb": 0.0}  # nothing kept
    elif mem_mb == 0.0:
        assert peak["in_memory"] == 0 and peak["on_disk"] == 3  # all spilled to disk
    else:
        assert peak["in_memory"] == 3 and peak["on_disk"] == 0 and peak["memory_mb"] > 0


def test_disk_spill_gives_same_answers():
    ref, lab, targets = _data(2)
    res = []
    for mem in (1024.0, 0.0):
        be = _backend("sam-tiny-test")
        m = MedPerSAM(be, _config(1, mem), device="cpu", session_factory=FakeSession)
        res.append(m.segment(ref, lab, targets))
    for a, b in zip(*(r.results for r in res)):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.confidence == pytest.approx(b.confidence)


@pytest.mark.parametrize("stop_message,expect_n,expect_rounds", [
    ("round 0: img11 done", 2, [0, 0]),          # during round 0: the finished prefix
    ("round 1: img10 done", 3, [1, 0, 0]),       # during round 1: newest answer of each
    ("warp retraining 1/2", 3, [0, 0, 0]),       # during retraining: round 0 answers
    ("warp training", 0, []),                    # during the initial training: nothing
])
def test_cancel_returns_finished_targets(stop_message, expect_n, expect_rounds):
    be = _backend("sam-tiny-test", cache_size=8)
    ref, lab, targets = _data(3)

    def progress(done, total, message):
        assert 0 <= done <= total
        return not message.startswith(stop_message)

    m = MedPerSAM(be, _config(2), device="cpu", session_factory=FakeSession)
    out = m.segment(ref, lab, targets, progress=progress)
    assert out.cancelled
    assert len(out.results) == expect_n
    assert [r.report["round"] for r in out.results] == expect_rounds


def test_absent_class_and_input_untouched():
    be = _backend("sam-tiny-test", cache_size=8)
    ref, lab, targets = _data(1)

    class NoHeart(FakeSession):
        def warp_target(self, index):
            w = super().warp_target(index)
            lab3 = np.where(w.labels == 3, 0, w.labels)
            return WarpResult(w.probs, lab3, w.similarity, w.flow_stats)

    lab0 = lab.copy()
    out = MedPerSAM(be, _config(0), device="cpu", session_factory=NoHeart).segment(ref, lab, targets)
    r = out.results[0]
    assert 3 in r.absent and not np.any(r.labels == 3)
    assert r.report["classes"]["3"]["warped_absent"] and r.report["classes"]["3"]["stages"] == []
    np.testing.assert_array_equal(lab, lab0)


def test_bad_input_messages():
    be = _backend("sam-tiny-test", cache_size=8)
    ref, lab, targets = _data(1)
    m = MedPerSAM(be, _config(0), device="cpu", session_factory=FakeSession)
    with pytest.raises(OneShotError, match="empty"):
        m.segment(ref, np.zeros_like(lab), targets)
    with pytest.raises(OneShotError, match="Image2D"):
        m.segment(ref, lab, [np.zeros(HW, np.float32)])
    with pytest.raises(OneShotError, match="SAM model"):
        MedPerSAM(None)
    with pytest.raises(OneShotError, match="unknown medpersam setting"):
        MedPerSAM.from_preset("paper", backend=be, no_such_setting=1)
    assert m.segment(ref, lab, []).results == []


def test_from_preset_paper_and_overrides():
    be = _backend("sam-tiny-test", cache_size=8)
    m = MedPerSAM.from_preset("paper", backend=be, device="cpu", n_points=3, retrain_rounds=1)
    assert m.config.sam.prompts.n_points == 3 and m.config.retrain_rounds == 1
    assert m.config.sam.refine_iterations == 1 and m.config.sam.prompts.erode_kernel == 7
    assert m.config.warp.epochs == 30 and m.config.warp.retrain_epochs == 10
    sz = MedPerSAM.from_preset("shenzhen-paper", backend=be, device="cpu")
    assert sz.config.sam.prompts.bilateral and sz.config.sam.prompts.n_points == 10


@pytest.mark.slow
def test_real_warp_session_multiclass_end_to_end(backend_name):
    """Tiny real WarpSession + tiny real SAM: 1 retraining round, 2 classes."""
    be = _backend(backend_name)
    ref, lab, targets = _data(2)
    warp = {"net": {"enc_channels": 4, "dec_channels": 4, "n_levels": 2, "max_channels": 8},
            "resolution": 32, "batch_size": 2, "epochs": 1, "retrain_epochs": 1,
            "min_steps": 1, "max_steps": 2}
    cfg = MedPerSAMConfig(warp=warp, sam=SamStageConfig(prompts=PromptConfig(3, 3, 5)),
                          retrain_rounds=1)
    out = MedPerSAM(be, cfg, device="cpu").segment(ref, lab, targets)
    assert not out.cancelled and len(out.results) == 2
    assert be.encode_calls == 3
    assert [t["round"] for t in out.report["warp_training"]] == [0, 1]
    assert all(t["steps"] >= 1 for t in out.report["warp_training"])
    for r in out.results:
        assert r.labels.shape == HW and set(np.unique(r.labels)) <= {0, 1, 3}
        assert 0.0 <= r.report["warp_similarity"] <= 1.0
