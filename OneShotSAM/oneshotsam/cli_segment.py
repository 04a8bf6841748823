"""``oneshotsam segment``: one annotated reference -> label images for every target.

Order of work (so that nothing is written half-way):

1. cheap checks: method, backend + checkpoint (message says how to download),
   ``--set`` overrides, output folder;
2. read and validate EVERY input (:mod:`oneshotsam.cli_inputs`);
3. build the method (loads weights) and run it on all target images at once
   (volumes contribute one 2D image per slice);
4. write all outputs into a temporary folder beside ``--output-dir``, then move
   each file into ``--output-dir`` (``os.replace``, atomic per file). Any error
   or Ctrl-C before step 4 ends leaves ``--output-dir`` untouched.

Outputs: ``<target stem>_oneshotsam<format-family suffix>`` per target (PNG for
PNG/JPG inputs, else the input's format, with its geometry; volumes written back
as volumes) with the reference's label values, and ``report.json``; never over a
file the run read (checked before the work).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from oneshotsam.cli_inputs import Reference, Source, expand_targets, load_image_source, load_reference
from oneshotsam.errors import OneShotError
from oneshotsam.methods.base import RunResult
from oneshotsam.progress import ConsoleProgress
from oneshotsam.settings import check_device, check_method_overrides, parse_overrides
from oneshotsam.writer import (check_not_inputs, check_output_dir, jsonable, staged_output,
                               write_json_atomic)

__all__ = ["run", "parse_overrides", "check_model_args", "jsonable", "write_json_atomic",
           "write_outputs"]

REPORT_NAME = "report.json"
_DISTRIBUTIONS = ("oneshotsam", "numpy", "torch", "torchvision", "segment-anything", "sam2",
                  "monai", "pot", "scikit-learn", "SimpleITK", "opencv-python-headless")


# ----------------------------------------------------------------------------- helpers
def check_model_args(method: str, backend: str | None, checkpoint: str | None) -> str | None:
    """Backend/checkpoint sanity before any heavy work; returns the checkpoint path to use.

    Without ``--checkpoint`` the backend's official file in the per-user cache
    (where ``oneshotsam weights download NAME`` puts it) is used when present.
    Raises OneShotError saying how to download the weights otherwise.
    """
    from oneshotsam.methods.registry import missing_backend_message, needs_backend
    if not needs_backend(method):
        return None
    if backend is None:
        raise OneShotError(missing_backend_message(method))
    from oneshotsam.backends.checkpoints import REGISTRY
    from oneshotsam.backends.factory import canonical_name, resolve_checkpoint
    if checkpoint is None and canonical_name(backend) not in REGISTRY:
        raise OneShotError(missing_backend_message(method))
    return str(resolve_checkpoint(backend, checkpoint))


def versions() -> dict[str, str]:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def method_config(method: Any) -> Any:
    for attr in ("config", "cfg"):
        cfg = getattr(method, attr, None)
        if cfg is not None:
            return jsonable(cfg)
    return None


def resolved_settings(method: Any) -> dict[str, Any] | None:
    """The method's merged settings and where each came from
    (:class:`oneshotsam.presets.ResolvedSettings`, after the run: a method that
    chooses from the situation records that call's choice); None when it has none."""
    settings = getattr(method, "settings", None)
    return settings.report() if settings is not None else None


# ----------------------------------------------------------------------------- outputs
def _label_dtype(values: list[int]) -> type:
    top = max(values) if values else 0
    return np.uint8 if top <= 255 else (np.uint16 if top <= 65535 else np.int32)


def _check_result_labels(labels: np.ndarray, shape_hw: tuple[int, int], name: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != tuple(shape_hw):
        raise RuntimeError(f"method returned labels of shape {lab.shape} for {name} "
                           f"of shape {shape_hw}")
    return lab


def write_outputs(sources: list[Source], run: RunResult, ref: Reference, tmp: Path,
                  formats: tuple[str, ...] | None = None) -> list[dict]:
    """Write one label file per target source into ``tmp`` (volumes: one per format of
    ``formats`` when given, :mod:`oneshotsam.label_outputs`); per-target report entries."""
    from oneshotsam import medio
    from oneshotsam.geometry import set_slice, volume_like
    dtype = _label_dtype(ref.values)
    entries: list[dict] = []
    pos = 0
    for src in sources:
        results = run.results[pos: pos + len(src.images)]
        pos += len(src.images)
        name = src.output_name
        per_image = [{
            "image": img.name,
            **({"slice_index": int(k)} if src.kind == "volume" else {}),
            "confidence": float(r.confidence),
            "class_confidence": {str(v): float(c) for v, c in r.class_confidence.items()},
            "absent": [int(v) for v in r.absent],
            "labelled_pixels": {str(v): int(np.count_nonzero(np.asarray(r.labels) == v))
                                for v in ref.values},
            "report": jsonable(r.report),
        } for img, r, k in zip(src.images, results, src.slice_indices or [None] * len(results))]
        if src.kind == "image":
            lab = _check_result_labels(results[0].labels, src.images[0].shape_hw, name)
            medio.write_label_image_like(lab.astype(dtype), src.raw, tmp / name)
            if name.lower().endswith(".png"):  # values 1, 2, ... look black: a colour overlay beside
                from oneshotsam.preview import preview_name, write_preview
                write_preview(src.images[0].pixels, lab, tmp / preview_name(name))
        else:
            assert src.volume is not None and src.array_axis is not None
            vox = np.zeros(src.volume.shape_kji, dtype=dtype)
            for img, r, k in zip(src.images, results, src.slice_indices):
                lab = _check_result_labels(r.labels, img.shape_hw, img.name)
                set_slice(vox, src.array_axis, k, lab.astype(dtype))
            meta = {"segments": ref.segments_meta} if ref.segments_meta else {}
            labels = volume_like(src.volume, vox, name=src.volume.name, meta=meta)
            if formats:
                from oneshotsam.label_outputs import write_label_formats

                files = write_label_formats(labels, formats, tmp, medio.split_suffix(name)[0],
                                            grid=src.volume)
                name = ", ".join(p.name for p in files.values())
            else:
                medio.write_label_volume(labels, tmp / name)
        entries.append({
            "input": str(src.path), "output": name, "kind": src.kind,
            "window": {"low": src.window.low, "high": src.window.high, "source": src.window.source},
            "confidence": float(np.mean([e["confidence"] for e in per_image])) if per_image else 0.0,
            "images": per_image,
        })
    return entries


def planned_files(out: Path, sources: list[Source], formats: tuple[str, ...] | None,
                  json_path: str | None) -> list[Path]:
    """Every file :func:`run` will write (label files, ``report.json``, ``--json``)."""
    from oneshotsam.label_outputs import output_file_names
    from oneshotsam.medio import split_suffix

    files = [out / REPORT_NAME] + ([Path(json_path)] if json_path else [])
    for src in sources:
        names = (output_file_names(split_suffix(src.output_name)[0], formats).values()
                 if formats and src.kind == "volume" else [src.output_name])
        if src.kind == "image" and src.output_name.lower().endswith(".png"):
            from oneshotsam.preview import preview_name
            names = [*names, preview_name(src.output_name)]
        files += [out / n for n in names]
    return files


# ----------------------------------------------------------------------------- command
def run(args: argparse.Namespace) -> int:
    """Run ``oneshotsam segment`` (see the module docstring); returns the exit status."""
    t0 = time.perf_counter()
    from oneshotsam.methods.registry import build_method, default_preset, method_info
    info = method_info(args.method)
    overrides = parse_overrides(args.overrides)
    check_method_overrides(args.method, overrides)
    check_device(args.device)
    checkpoint = check_model_args(args.method, args.backend, args.checkpoint)
    out = Path(args.output_dir)
    check_output_dir(out)

    earlier_outputs: list[Path] = []
    target_paths = expand_targets(args.targets, exclude=(Path(args.reference_image),
                                                         Path(args.reference_mask)),
                                  skipped=earlier_outputs)
    if earlier_outputs and not args.quiet:
        print(f"skipped {len(earlier_outputs)} file(s) named as OneShotSAM outputs in the target "
              f"folder(s) (e.g. {earlier_outputs[0].name}): not segmented again", file=sys.stderr)
    from oneshotsam.dicom_identity import check_same_patient

    identity = check_same_patient([("reference image", args.reference_image),
                                   ("reference mask", args.reference_mask),
                                   *[("target", t) for t in target_paths]],
                                  getattr(args, "allow_other_patient", False))
    ref = load_reference(Path(args.reference_image), Path(args.reference_mask), args.window,
                         args.axis, args.reference_slice, getattr(args, "roi", None))
    target_slices = getattr(args, "target_slices", None)
    sources = [load_image_source(p, args.window, args.axis, target_slices) for p in target_paths]
    names: dict[str, Path] = {}
    for src in sources:
        if ref.image.is_rgb != src.images[0].is_rgb:
            kind = "RGB" if ref.image.is_rgb else "grey"
            raise OneShotError(f"the reference is {kind} but target {src.path} is not: give "
                               "targets of the same kind as the reference")
        if src.output_name in names:
            raise OneShotError(f"targets {names[src.output_name]} and {src.path} would both be "
                               f"written as {src.output_name}: rename one or run them separately")
        names[src.output_name] = src.path
    formats = getattr(args, "output_format", None)
    if formats:
        from oneshotsam.label_outputs import check_formats

        flat = [s for s in sources if s.kind != "volume"]
        if flat:
            raise OneShotError(f"--output-format applies to volume targets; {flat[0].path} is a 2D image")
        formats = check_formats(formats, [s.volume for s in sources], [str(s.path) for s in sources])
    from oneshotsam.integrity import check_labels_fit

    for src in sources:
        check_labels_fit(ref.values, src.output_name)
    if REPORT_NAME in names:
        raise OneShotError(f"a target would be written as {REPORT_NAME}: rename it")
    check_not_inputs(planned_files(out, sources, formats or None, args.json),
                     [Path(args.reference_image), Path(args.reference_mask), *target_paths])
    if ref.lost_contours:
        from oneshotsam.dicom_rt import lost_contours_text

        print(lost_contours_text({"contours_outside_series": ref.lost_contours}), file=sys.stderr)
    t_read = time.perf_counter() - t0

    method = build_method(args.method, backend_name=args.backend if info.needs_backend else None,
                          checkpoint=checkpoint,
                          preset=args.preset, device=args.device, **overrides)
    images = [img for src in sources for img in src.images]
    t1 = time.perf_counter()
    run_result = method.segment(ref.image, ref.labels, images, progress=ConsoleProgress(args.quiet))
    t_segment = time.perf_counter() - t1
    if run_result.cancelled or len(run_result.results) != len(images):
        raise OneShotError(f"the run stopped after {len(run_result.results)} of {len(images)} "
                           "images: nothing was written")

    with staged_output(out, prefix=".oneshotsam-segment-") as tmp:
        entries = write_outputs(sources, run_result, ref, tmp, formats or None)
        report = {
            "command": "segment",
            "method": args.method,
            "preset": args.preset or default_preset(args.method, args.device),
            "preset_given": args.preset is not None,
            "backend": args.backend if info.needs_backend else None,
            "checkpoint": checkpoint,
            "device": args.device,
            "overrides": overrides,
            "config": method_config(method),
            "settings": resolved_settings(method),
            "reference": {"image": str(ref.source.path), "mask": args.reference_mask,
                          "slice_index": ref.slice_index, "axis": args.axis,
                          "target_slices": target_slices,
                          "label_values": ref.values,
                          "window": {"low": ref.source.window.low, "high": ref.source.window.high,
                                     "source": ref.source.window.source}},
            "targets": entries,
            "skipped_earlier_outputs": [str(p) for p in earlier_outputs],
            "patient_identity": identity,
            "contours_outside_series": ref.lost_contours,
            "run": jsonable(run_result.report),
            "timings_s": {"read": round(t_read, 3), "segment": round(t_segment, 3),
                          "total": round(time.perf_counter() - t0, 3)},
            "versions": versions(),
        }
        write_json_atomic(report, tmp / REPORT_NAME)
        n_written = len(list(tmp.iterdir()))
    if args.json:
        write_json_atomic(report, Path(args.json))
    if not args.quiet:
        print(f"wrote {n_written - 1} label file(s) and {REPORT_NAME} to {out} "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
