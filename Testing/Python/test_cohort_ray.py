"""``oneshotsam cohort`` on a real local Ray (one Ray for the module): same labels as
``propagate``, reruns skip, a killed worker is retried, a patient whose worker keeps dying
is listed with its error, GPU requests are declared."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cohort_synth import TINY_ARGS, make_cohort
from cohort_synth import run_cohort as _cohort

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A real, private local Ray (``address="local"``: never a cluster that RAY_ADDRESS or a
    left-over /tmp/ray/ray_current_cluster names): 2 CPUs and 1 logical GPU (scheduling
    only, nothing runs on it). RAY_AUTH_MODE, which ``ray.init`` sets, is put back after,
    and HOME is a temporary folder meanwhile: the token Ray creates for a new cluster
    (``~/.ray/auth_token``) does not outlive the module."""
    from ray._raylet import AuthenticationTokenLoader

    from oneshotsam.cohort.raylink import _set_auth_mode, auth_mode_kept

    home_before = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))
    AuthenticationTokenLoader.instance().reset_cache()  # read the token of this HOME
    try:
        with auth_mode_kept():
            # a token mode left in the environment (another test's Ray, the user's shell)
            # would make Ray look for a token in the new HOME and abort its GCS
            _set_auth_mode(None)
            yield from _started_ray()
    finally:
        if home_before is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home_before
        AuthenticationTokenLoader.instance().reset_cache()  # forget the module's token


def _started_ray():
    """Start the module's Ray, yield it, shut it down."""
    for attempt in range(3):  # Ray waits a fixed 30 s for its node: a loaded machine can miss it
        try:
            ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
                     logging_level="WARNING")
            break
        except Exception as exc:
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
    try:
        yield ray
    finally:
        ray.shutdown()


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def _files(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")
            if p.is_file() and not p.name.startswith("summary.")}


def test_two_workers_same_labels_as_propagate_and_rerun_skips(local_ray, tmp_path: Path) -> None:
    from oneshotsam.cli import main
    from oneshotsam.medio import read_label_volume

    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=2)
    out = tmp_path / "out"
    assert _cohort(m, out, "--workers", "2") == 0
    summ = _summary(out)
    assert "Ray" in summ["mode"] and [t["status"] for t in summ["targets"]] == ["done"] * 4
    pids = {t["patient"]: t["pid"] for t in summ["targets"]}
    assert os.getpid() not in pids.values()  # ran in Ray workers
    for t in summ["targets"]:
        assert t["resources"].get("CPU") == 1.0 and "GPU" not in t["resources"]
    data = tmp_path / "data"
    for pid in ("P01", "P02"):
        prop = tmp_path / "prop" / pid
        targets = sorted(str(p) for p in (data / pid).iterdir()
                         if p.name.startswith("fu") and "_gt" not in p.name)
        assert main(["propagate", "--reference-volume", str(data / pid / "ref.nii.gz"),
                     "--reference-labels", str(data / pid / "ref_label.nii.gz"), "--targets", *targets,
                     "--output-dir", str(prop), *TINY_ARGS]) == 0
        for visit, stem, suffix in (("week1", "fu1", ".nii.gz"), ("week2", "fu2", ".nrrd")):
            rep = json.loads((out / pid / f"{visit}.report.json").read_text(encoding="utf-8"))
            assert rep["command"] == "cohort" and rep["cohort"]["visit"] == visit
            labels = Path(rep["outputs"][0]["labels"])  # the target's format family, named after the visit
            assert labels.parent == out / pid and labels.name.startswith(visit) and labels.name.endswith(suffix)
            mine = read_label_volume(labels)
            [theirs_path] = [q for q in prop.iterdir() if q.name.startswith(stem) and q.name.endswith(suffix)
                             and not q.name.endswith(".seg.nrrd")]
            theirs = read_label_volume(theirs_path)
            assert np.array_equal(np.asarray(mine.voxels), np.asarray(theirs.voxels)), (pid, visit)
            assert np.allclose(mine.ijk_to_lps, theirs.ijk_to_lps)
            seg = read_label_volume(out / pid / Path(rep["outputs"][0]["segmentation"]).name)
            assert np.array_equal(np.asarray(seg.voxels), np.asarray(mine.voxels))
    before = _files(out)
    assert len(before) == 13  # 4 x (labels, seg, report) + the digest cache
    assert _cohort(m, out, "--workers", "2") == 0
    assert _files(out) == before  # nothing rewritten
    assert [t["status"] for t in _summary(out)["targets"]] == ["up-to-date"] * 4


def _kill_first_worker(out: Path, killed: list[int], stop: threading.Event) -> None:
    """Kill (SIGKILL) the process that owns the first staging folder seen under ``out``."""
    while not stop.is_set() and not killed:
        for d in out.glob("*/.staging-*"):
            pid = int(d.name.rsplit("-", 2)[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.01)


def _run_with_killer(m: Path, out: Path, *extra: str) -> tuple[int, list[int]]:
    killed: list[int] = []
    stop = threading.Event()
    th = threading.Thread(target=_kill_first_worker, args=(out, killed, stop))
    th.start()
    try:
        rc = _cohort(m, out, *extra)
    finally:
        stop.set()
        th.join()
    return rc, killed


def test_worker_killed_mid_task_is_retried(local_ray, tmp_path: Path) -> None:
    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    out = tmp_path / "out"
    rc, killed = _run_with_killer(m, out, "--workers", "2", "--max-retries", "2")
    assert len(killed) == 1 and rc == 0
    summ = _summary(out)
    assert [t["status"] for t in summ["targets"]] == ["done", "done"]
    assert killed[0] not in [t["pid"] for t in summ["targets"]]  # the retry ran elsewhere
    assert not list(out.glob("*/.staging-*"))
    assert all(t["mean_dice"] > 0.5 for t in summ["targets"])


def test_patient_whose_worker_keeps_dying_is_listed_and_rerun_resumes(local_ray, tmp_path: Path,
                                                                        capsys) -> None:
    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    out = tmp_path / "out"
    rc, killed = _run_with_killer(m, out, "--workers", "2", "--max-retries", "0")
    assert len(killed) == 1 and rc == 2
    assert "target(s) failed" in capsys.readouterr().err
    rows = {t["patient"]: t for t in _summary(out)["targets"]}
    failed = [t for t in rows.values() if t["status"] == "failed"]
    assert len(failed) == 1 and "worker process died" in failed[0]["error"]
    assert [t["status"] for t in rows.values() if t is not failed[0]] == ["done"]
    csv_text = (out / "summary.csv").read_text(encoding="utf-8")
    assert "failed" in csv_text and "worker process died" in csv_text
    before = _files(out)
    assert _cohort(m, out, "--workers", "2") == 0  # resumes: only the failed patient runs
    statuses = {t["patient"]: t["status"] for t in _summary(out)["targets"]}
    assert statuses[failed[0]["patient"]] == "done" and list(statuses.values()).count("up-to-date") == 1
    after = _files(out)
    assert all(after[f] == v for f, v in before.items() if "/" + failed[0]["patient"] + "/" not in f)


def test_cuda_tasks_ask_ray_for_a_gpu(local_ray, tmp_path: Path) -> None:
    from oneshotsam.cohort.execute import RayOptions, task_options

    assert task_options(RayOptions(2, device="cuda"))["num_gpus"] == 1
    assert task_options(RayOptions(2, device="cpu"), cluster_gpus=4)["num_gpus"] == 0
    assert task_options(RayOptions(2, device="auto"), cluster_gpus=1)["num_gpus"] == 1
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    out = tmp_path / "out"
    args = ["cuda" if a == "cpu" else a for a in TINY_ARGS]
    from oneshotsam.cli import main

    rc = main(["cohort", str(m), "--output-dir", str(out), "--workers", "2", *args])
    t = _summary(out)["targets"][0]
    assert t["resources"].get("GPU") == 1.0  # Ray granted the task one (logical) GPU
    import torch

    if not torch.cuda.is_available():
        assert rc == 2 and t["status"] == "failed" and t["error"]
