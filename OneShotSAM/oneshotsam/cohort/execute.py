"""Plan a cohort run and execute its patients, in-process or as Ray tasks.

* :func:`plan`: every target's key (:mod:`.state`); complete targets become
  ``up-to-date`` records, the others go into one :class:`.patient.PatientJob` per patient.
* :func:`run_in_process`: the patients one after the other in this process (no Ray).
* :func:`run_on_ray`: one Ray task per patient chain (patients in parallel, visits in
  order inside), ``max_retries`` re-runs a task whose worker process died, and the
  finished targets of a running patient are reported as their reports appear.

Ray is imported inside functions only (``import oneshotsam.cohort.execute`` costs the
standard library), so the in-process path never needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from oneshotsam.cohort.manifest import PatientPlan
from oneshotsam.cohort.patient import PatientJob, base_record, record_from_report, run_patient
from oneshotsam.cohort.state import DigestCache, load_complete, target_key
from oneshotsam.errors import OneShotError

#: memory one running patient may need (ACDC / LA volumes peak at about 1.1 GB with
#: ``medpersam-warp``, docs/volume_propagation.md), used for the default worker count
GIB_PER_WORKER = 2.0
OnRecord = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RayOptions:
    """How patients run on Ray.

    Attributes:
        workers: local Ray: worker processes (CPUs given to ``ray.init``); with
            ``address``: at most this many patients in flight (None = no cap).
        address: an existing cluster (``ray.init(address=...)``); None starts a local Ray.
        device: ``cpu`` | ``cuda`` | ``auto``; ``cuda`` (or ``auto`` on a cluster with
            GPUs) makes each task ask for one GPU.
        max_retries: Ray retries of a task whose worker process died.
    """

    workers: int | None
    address: str | None = None
    device: str = "auto"
    max_retries: int = 3


def default_workers() -> tuple[int, str]:
    """(worker count, how it was chosen): min(usable CPUs, available memory / 2 GiB), >= 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    mem_gib = int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    by_mem = int(mem_gib // GIB_PER_WORKER) if mem_gib is not None else cpus
    n = max(1, min(cpus, by_mem))
    mem_txt = f"{mem_gib:.0f} GiB available" if mem_gib is not None else "memory unknown"
    return n, f"{n} = min({cpus} CPUs, {mem_txt} / {GIB_PER_WORKER:g} GiB per patient)"


def settings_of(config: Any) -> dict[str, Any]:
    """What goes into every target key besides the inputs: the resolved configuration
    and the engine version."""
    from oneshotsam import __version__

    return {"config": config.to_dict(), "version": __version__}


def plan(patients: Sequence[PatientPlan], config: Any, output_dir: str | Path,
         argv: Sequence[str] = (), labels_io: dict[str, Any] | None = None,
         allow_other_patient: bool = False,
         ) -> tuple[list[PatientJob], dict[tuple[str, str], dict[str, Any]]]:
    """(jobs for the patients with work left, a record per target in manifest order).

    ``labels_io``: ``{"rois": [...] | None, "output_formats": [...] | None}`` (DICOM RT
    input and output; part of every target's key). A checkpoint file enters the keys by
    its contents and reaches the workers by its absolute path. ``allow_other_patient``
    (``--allow-other-patient``) reaches every target's report through its job."""
    out = Path(output_dir).expanduser().resolve()  # absolute on this machine, for every worker
    cache = DigestCache(out / ".cohort-digests.json")
    io = {k: (tuple(v) if v else None) for k, v in (labels_io or {}).items()}
    config, ckpt_digest = _checkpoint_resolved(config, cache)
    settings = {**settings_of(config), **{k: v for k, v in io.items() if v}}
    if ckpt_digest:
        settings["config"] = {**settings["config"], "checkpoint": f"sha256:{ckpt_digest}"}
    jobs, records = [], {}
    for p in patients:
        ref_d, lab_d = cache.digest(p.reference.image), cache.digest(p.reference.labels)
        todo, keys = [], []
        for t in p.targets:
            gt_d = cache.digest(t.ground_truth) if t.ground_truth else None
            key = target_key(settings, {"reference": ref_d, "reference_labels": lab_d,
                                        "image": cache.digest(t.image), "ground_truth": gt_d})
            rep = load_complete(out / p.patient, t.visit, key)
            if rep is not None:
                records[(p.patient, t.visit)] = record_from_report(t, rep, "up-to-date")
            else:
                records[(p.patient, t.visit)] = base_record(t, "not run")
                todo.append(t)
                keys.append(key)
        if todo:
            jobs.append(PatientJob(p.patient, p.reference, tuple(todo), tuple(keys), str(out), config,
                                   tuple(argv), rois=io.get("rois"),
                                   output_formats=io.get("output_formats"),
                                   allow_other_patient=allow_other_patient))
    cache.save()
    return jobs, records


def _checkpoint_resolved(config: Any, cache: DigestCache) -> tuple[Any, str | None]:
    """(config with an existing checkpoint file named by its absolute path, its digest);
    a checkpoint that is not a file here (a name, or none) is left as it is."""
    import dataclasses

    ckpt = getattr(config, "checkpoint", None)
    if not ckpt or not Path(ckpt).expanduser().is_file():
        return config, None
    path = Path(ckpt).expanduser().resolve()
    if dataclasses.is_dataclass(config):
        config = dataclasses.replace(config, checkpoint=str(path))
    return config, cache.digest(path)


def reconcile(jobs: Sequence[PatientJob], records: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Mark ``done`` the targets still ``not run`` whose report was committed (e.g. just
    before Ctrl-C, between two progress polls)."""
    for job in jobs:
        for t, key in zip(job.targets, job.keys):
            if records.get((job.patient, t.visit), {}).get("status") == "not run":
                rep = load_complete(job.patient_dir, t.visit, key)
                if rep is not None:
                    records[(job.patient, t.visit)] = record_from_report(t, rep, "done")


def run_in_process(jobs: Sequence[PatientJob], on_record: OnRecord,
                   on_patient: Callable[[str, str], None] | None = None) -> None:
    """Each patient in turn, here (KeyboardInterrupt propagates; nothing half-written)."""
    for job in jobs:
        run_patient(job, on_target=on_record)
        if on_patient:
            on_patient(job.patient, "")


def _ray_patient(job: PatientJob) -> dict[str, Any]:
    """The Ray task body: :func:`run_patient` plus the resources Ray assigned to it."""
    import ray

    res = run_patient(job)
    res["resources"] = {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}
    return res


def task_options(opts: RayOptions, cluster_gpus: float = 0.0) -> dict[str, Any]:
    """``.options(...)`` of a patient task: one CPU, one GPU for ``cuda`` (or ``auto`` on a
    cluster with GPUs), Ray's retries on worker death only (errors inside a target are
    recorded by :func:`run_patient`, not retried)."""
    gpu = opts.device == "cuda" or (opts.device == "auto" and cluster_gpus > 0)
    return {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_retries": int(opts.max_retries),
            "retry_exceptions": False}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise OneShotError("Ray is not installed: `pip install ray` (or run with --workers 1 "
                           "and no --address, which runs in this process)") from None
    return ray


def start_ray(opts: RayOptions) -> tuple[Any, bool]:
    """(ray module, whether this call started Ray).

    Without ``opts.address``: a private local cluster (``address="local"``), never one that
    ``RAY_ADDRESS`` or ``/tmp/ray/ray_current_cluster`` names. With it: exactly that cluster
    (token authentication handled by :func:`.raylink.prepare_join`). A Ray already
    initialised in this process is used as is; with ``opts.address`` it must be that cluster."""
    from oneshotsam.cohort import raylink

    ray = _import_ray()
    if ray.is_initialized():
        if opts.address:
            raylink.check_connected(ray, opts.address)
        return ray, False
    kw: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True}
    if opts.address:
        raylink.prepare_join(opts.address)
        try:
            ray.init(address=opts.address, **kw)
        except Exception as exc:  # Ray raises several kinds here
            raise OneShotError(
                f"could not join the Ray cluster at {opts.address}: {str(exc).strip()[:300]} (check "
                f"that its head runs: `ray status --address {opts.address}` there; this machine needs "
                "the same Ray and Python versions as the cluster)") from None
        return ray, True
    try:
        for attempt in range(3):  # a loaded machine can miss Ray's fixed 30 s node start-up wait
            try:
                raylink.init_local(ray, int(opts.workers or 1), kw)
                break
            except Exception as exc:
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
                ray.shutdown()
    except Exception as exc:  # Ray raises several kinds here
        raise OneShotError(f"could not start a local Ray: {str(exc).strip()[:300]} (rerun; on an "
                           "overloaded machine use fewer --workers, or --workers 1 to run without "
                           "Ray)") from None
    return ray, True


def _crash_text(exc: BaseException, retries: int) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if "Crashed" in name or "WorkerDied" in name or "died" in first.lower():
        return f"the worker process died {retries + 1} time(s) (max_retries {retries}): {name}"
    return f"{name}: {first}"[:500]


def run_on_ray(jobs: Sequence[PatientJob], opts: RayOptions, on_record: OnRecord,
               on_patient: Callable[[str, str], None] | None = None,
               poll_s: float = 0.5) -> None:
    """Run the jobs as Ray tasks; ``on_record`` gets every finished target as its report
    appears and again when its patient's task returns (the later call is final), or with
    the patient's error when its task failed for good.

    Ctrl-C cancels the outstanding tasks (``ray.cancel(force=True)``), shuts down a Ray
    this call started and re-raises KeyboardInterrupt; committed targets stay, staging
    folders of killed tasks are removed by the next run of their patient."""
    ray, started = start_ray(opts)
    try:
        remote = ray.remote(_ray_patient).options(
            **task_options(opts, float(ray.cluster_resources().get("GPU", 0))))
        cap = len(jobs) if (opts.address is None or not opts.workers) else int(opts.workers)
        queue = list(jobs)
        running: dict[Any, PatientJob] = {}
        seen: set[tuple[str, str]] = set()

        def report(rec: dict[str, Any]) -> None:
            k = (rec["patient"], rec["visit"])
            if k not in seen:
                seen.add(k)
                on_record(rec)

        try:
            while queue or running:
                while queue and len(running) < cap:
                    job = queue.pop(0)
                    running[remote.remote(job)] = job
                ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
                for job in running.values():  # live progress: targets whose report appeared
                    for t, key in zip(job.targets, job.keys):
                        if (job.patient, t.visit) not in seen:
                            rep = load_complete(job.patient_dir, t.visit, key)
                            if rep is not None:
                                report(record_from_report(t, rep, "done"))
                for ref in ready:
                    job = running.pop(ref)
                    try:
                        res, err = ray.get(ref), ""
                    except Exception as exc:  # died beyond its retries, or a bug outside a target
                        res, err = None, _crash_text(exc, opts.max_retries)
                    if res is not None:
                        for rec in res["records"]:  # the final word (may repeat a live one)
                            seen.add((rec["patient"], rec["visit"]))
                            on_record(dict(rec, resources=res.get("resources", {})))
                    else:
                        for t, key in zip(job.targets, job.keys):
                            rep = load_complete(job.patient_dir, t.visit, key)
                            report(record_from_report(t, rep, "done") if rep is not None
                                   else base_record(t, "failed", error=err))
                    if on_patient:
                        on_patient(job.patient, err)
        except KeyboardInterrupt:
            for ref in running:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            raise
    finally:
        if started:
            ray.shutdown()


__all__ = ["RayOptions", "plan", "reconcile", "run_in_process", "run_on_ray", "task_options", "start_ray",
           "default_workers", "settings_of", "GIB_PER_WORKER"]
