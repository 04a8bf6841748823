"""A propagation session on disk: ``oneshotsam propagate ... --update-from PREVIOUS_OUTPUT_DIR``.

A within-volume run writes :data:`STATE_FILE` next to its outputs: the version, the
configuration, the reference volume's identity (shape, grid, SHA-256 of its voxels), the
reference labels of the run, every slice's labels and record, the anchors, and the
engine's trained state (warp-volume: the network's weights, crop box and working grid;
method engines keep nothing). :func:`load_session` rebuilds a
:class:`~oneshotsam.volume.session.PropagationSession` from it without training, after
checking that the reference volume, the settings and the version are those of the saved
run (a clear :class:`OneShotError` otherwise). Torch is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import OneShotMethod
from oneshotsam.types import Volume
from oneshotsam.volume.chain import SliceOutcome
from oneshotsam.volume.types import PropagationConfig, PropagationResult

#: the session's state inside an output folder
STATE_FILE = "session.pt"
#: layout of :data:`STATE_FILE`
FORMAT = 2
#: settings that carry the corrections of an Update (may differ from the saved run)
_PER_UPDATE = ("reference_slices", "fixed_slices")


def volume_identity(vol: Volume) -> dict[str, Any]:
    """Shape, grid and SHA-256 of the voxels: what makes two volumes the same input."""
    vox = np.ascontiguousarray(np.asarray(vol.voxels))
    return {"shape_kji": [int(n) for n in vox.shape], "dtype": str(vox.dtype),
            "ijk_to_lps": [round(float(x), 6) for x in np.asarray(vol.ijk_to_lps).ravel()],
            "sha256": hashlib.sha256(vox.tobytes()).hexdigest()}


def _engine_state(engine) -> dict[str, Any]:
    from oneshotsam.volume.warpvol import WarpVolumeEngine

    if isinstance(engine, WarpVolumeEngine):
        return {"kind": "warp-volume", "box": [int(x) for x in engine.box],
                "work_hw": [int(x) for x in engine.work_hw], "values": list(engine.values),
                "stats": {str(k): list(v) for k, v in engine.stats.items()},
                "inscribed_px": {str(k): float(v) for k, v in engine.inscribed_px.items()},
                "history": [float(x) for x in engine.history]}
    return {"kind": "method"}


def save_session(session, folder: str | Path) -> Path:
    """Write the state of a finished within-volume ``session`` as ``folder/STATE_FILE``
    (a NumPy ``.npz`` read back without pickle; written to a temporary name, then
    renamed). Follow-up sessions are not saved (returns the path it would have)."""
    import os
    import tempfile

    import oneshotsam

    path = Path(folder) / STATE_FILE
    ctx = session.ctx
    if ctx is None or session.targets or session.result is None or session.result.cancelled:
        return path
    state = session.states[0]
    labels = np.asarray(session.result.label_volumes[0].voxels)
    per = session.result.report["targets"][0]["per_slice"]
    from oneshotsam.writer import jsonable

    meta = {"format": FORMAT, "version": oneshotsam.__version__, "config": ctx.cfg.to_dict(),
            "reference": volume_identity(ctx.reference), "per_slice": per,
            "anchors": {str(k): o.info.get("kind", "seed") for k, o in state.anchors.items()},
            "label_meta": ctx.label_meta or {}, "engine": _engine_state(state.engine),
            "report": {k: v for k, v in session.result.report.items() if k != "targets"}}
    arrays = {"meta": np.frombuffer(json.dumps(jsonable(meta)).encode("utf-8"), dtype=np.uint8),
              "reference_labels": ctx.ref_lab, "labels": labels}
    if meta["engine"]["kind"] == "warp-volume":
        for name, t in state.engine.net.state_dict().items():
            arrays["net." + name] = t.detach().cpu().numpy()
    fd, tmp = tempfile.mkstemp(prefix=".session-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    if not path.is_file():
        raise OneShotError(f"--update-from {folder}: no {STATE_FILE} there. Give the --output-dir of "
                           "an earlier `oneshotsam propagate` run on this volume (without --targets)")
    try:
        with np.load(path, allow_pickle=False) as z:
            blob = json.loads(z["meta"].tobytes().decode("utf-8"))
            blob["reference_labels"], blob["labels"] = z["reference_labels"], z["labels"]
            blob["net"] = {k[4:]: z[k] for k in z.files if k.startswith("net.")}
            return blob
    except Exception as e:  # noqa: BLE001 -- any unreadable file gets the same advice
        raise OneShotError(f"{path} cannot be read ({e}): run propagate again without --update-from")


def check_matches(blob: dict[str, Any], reference: Volume, config: PropagationConfig) -> None:
    """Refuse (OneShotError naming what differs) when ``blob`` was saved by another
    version, format, reference volume or settings."""
    import oneshotsam

    if blob.get("format") != FORMAT or blob.get("version") != oneshotsam.__version__:
        raise OneShotError(f"the saved run is from oneshotsam {blob.get('version')} (state format "
                           f"{blob.get('format')}), this is {oneshotsam.__version__}: run propagate "
                           "again without --update-from")
    ident = volume_identity(reference)
    diff = [k for k in ident if blob["reference"].get(k) != ident[k]]
    if diff:
        raise OneShotError(f"--reference-volume is not the volume of the saved run ({', '.join(diff)} "
                           "differ): give the same reference volume, or run without --update-from")
    now, then = config.to_dict(), dict(blob["config"])
    diff = sorted(k for k in now if k not in _PER_UPDATE and now[k] != then.get(k))
    if diff:
        raise OneShotError("the settings differ from the saved run's: " + "; ".join(
            f"{k} {then.get(k)!r} then, {now[k]!r} now" for k in diff)
            + ". Use the same settings, or run without --update-from")


def load_session(folder: str | Path, reference: Volume, config: PropagationConfig,
                 method: OneShotMethod | None = None):
    """The :class:`~oneshotsam.volume.session.PropagationSession` saved in ``folder`` (no training)."""
    import dataclasses

    from oneshotsam.progress import no_progress
    from oneshotsam.volume.align import identity_alignment
    from oneshotsam.volume.jobs import JobState
    from oneshotsam.volume.pipeline import start
    from oneshotsam.volume.session import PropagationSession

    blob = _read(Path(folder))
    check_matches(blob, reference, config)
    saved = blob["config"]
    cfg = dataclasses.replace(config, reference_slices=tuple(saved["reference_slices"] or ()) or None,
                              fixed_slices=tuple(saved["fixed_slices"]))
    meta = blob["label_meta"]
    ctx = start(reference, Volume(blob["reference_labels"], reference.ijk_to_lps, "labels", meta),
                (), cfg, no_progress, None, method)
    engine = _restore_engine(ctx, blob["engine"], blob["net"])
    n = ctx.sg.n_slices
    state = JobState(0, None, identity_alignment("within-volume propagation"), ctx.ref_stack,
                     list(range(n)), list(ctx.ref_slices), engine,
                     report={"index": 0, "name": reference.name, "skipped_outside_fov": []})
    _restore_outcomes(ctx, state, blob)
    session = PropagationSession(reference, cfg, (), method)
    report = blob["report"]
    per = blob["per_slice"]
    report["targets"] = [{**state.report, "per_slice": per,
                          "review_queue": list(report.get("review_queue", []))}]
    vol = Volume(np.asarray(blob["labels"]), reference.ijk_to_lps, reference.name, meta)
    session.ctx, session.states = ctx, [state]
    session.result = PropagationResult([vol], report, False)
    return session


def _restore_outcomes(ctx, state, blob: dict[str, Any]) -> None:
    from oneshotsam.geometry import get_slice

    labels = np.asarray(blob["labels"])
    for rec in blob["per_slice"]:
        k = int(rec["slice"])
        info = {x: y for x, y in rec.items() if x not in ("slice", "status", "confidence", "flagged")}
        state.outcomes[k] = SliceOutcome(k, np.asarray(get_slice(labels, ctx.sg.array_axis, k)),
                                         float(rec["confidence"]), bool(rec["flagged"]), rec["status"],
                                         info.get("source") if isinstance(info.get("source"), int)
                                         else None, info)
    for k, kind in blob["anchors"].items():
        o = state.outcomes[int(k)]
        o.info["kind"] = kind
        state.anchors[int(k)] = o


def _restore_engine(ctx, saved: dict[str, Any], net: dict[str, np.ndarray]):
    """The run's engine with its trained state (warp-volume) or prepared again (methods)."""
    engine = ctx.engine
    if saved["kind"] != "warp-volume":
        engine.prepare(ctx.ref_stack, ctx.ref_stack, ctx.ref_slices, ctx.ref_labels_by_slice, False,
                       lambda m: True)
        return engine
    import torch
    import torch.nn.functional as F

    from oneshotsam.methods.medpersam.losses import LossConfig, WarpLosses
    from oneshotsam.methods.medpersam.nice_trans import NetConfig, NiceTrans2D
    from oneshotsam.methods.medpersam.warp_adapt import registration_intensity

    v = engine.vcfg
    engine.ref = engine.proc = ctx.ref_stack
    engine.values = [int(x) for x in saved["values"]]
    engine.stats = {int(k): tuple(x) for k, x in saved["stats"].items()}
    engine.inscribed_px = {int(k): float(x) for k, x in saved["inscribed_px"].items()}
    engine.box = tuple(saved["box"])
    engine.work_hw = tuple(saved["work_hw"])
    r0, r1, c0, c1 = engine.box
    s = ctx.ref_stack
    a = np.stack([s.plane(k)[r0:r1, c0:c1] for k in range(s.n_slices)])[:, None]
    a = registration_intensity(a, v.intensity_percentiles)
    engine.proc_w = F.interpolate(torch.from_numpy(a).to(torch.device(engine.device)),
                                  size=engine.work_hw, mode="bilinear", align_corners=True)
    engine.ref_w, engine.ref_pos = None, {r: i for i, r in enumerate(ctx.ref_slices)}
    engine.losses = WarpLosses(LossConfig(**v.loss))
    engine.net = NiceTrans2D(NetConfig(**v.net)).to(torch.device(engine.device))
    engine.net.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in net.items()})
    engine.history = list(saved["history"])
    return engine


def run_or_update(update_from: str | Path | None, output_dir: str | Path, reference: Volume,
                  labels: Volume, targets: list[Volume], config: PropagationConfig, progress):
    """``oneshotsam propagate``'s work: a first run, or with ``update_from`` an Update of the
    run saved there (corrected slices = ``config.reference_slices``, erased ones =
    ``config.fixed_slices``). Returns ``(result, session)``; everything is checked first."""
    from oneshotsam.volume.session import PropagationSession

    if update_from is None:
        session = PropagationSession(reference, config, targets)
        return session.run(labels, progress), session
    if targets:
        raise OneShotError("--update-from updates a run within the reference volume; follow-up "
                           "corrections go through the Python API (PropagationSession.update with "
                           "target_index) or the Slicer module")
    if Path(update_from).resolve() == Path(output_dir).resolve():
        raise OneShotError(f"--output-dir {output_dir} is the --update-from folder: the Update reads "
                           "it; choose a new --output-dir")
    corrected, erased = tuple(config.reference_slices or ()), tuple(config.fixed_slices)
    if not corrected and not erased:
        raise OneShotError("--update-from needs the corrected slices as --reference-slices and/or "
                           "the slices you emptied as --fixed-slices")
    session = load_session(update_from, reference, config)
    return session.update(labels, corrected, erased, progress=progress), session

__all__ = ["STATE_FILE", "save_session", "load_session", "check_matches", "volume_identity",
           "run_or_update"]
