"""Volumes given to the browser app (command line or the page's Open buttons).

trame-slicer reads a list of files and returns the volumes it could read,
dropping the others without a word; here every file is read on its own (the
DICOM files of a list together, as one series reader), so each file the user
gives is either loaded or named in the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def read_volumes(io_manager: Any, paths: list[str]) -> tuple[list[Any], list[str]]:
    """``(volume nodes read, names of the files not read)``; a folder is read as the DICOM
    series of its files (Slicer's volume reader does not open folders)."""
    from trame_slicer.core.volumes_reader import VolumesReader

    volumes: list[Any] = []
    failed: list[str] = []
    for folder in [p for p in paths if Path(p).is_dir()]:
        files = [str(f) for f in sorted(Path(folder).iterdir())
                 if f.is_file() and VolumesReader.is_dcm_file(str(f))]
        got = _readable(io_manager.load_volumes(files)) if files else []
        volumes += got
        if not got:
            failed.append(f"{Path(folder).name}/ (no DICOM series read)")
    paths = [p for p in paths if not Path(p).is_dir()]
    dicom = [p for p in paths if Path(p).is_file() and VolumesReader.is_dcm_file(p)]
    for p in [p for p in paths if p not in dicom]:
        got = _readable(io_manager.load_volumes([p]))
        volumes += got
        if not got:
            failed.append(Path(p).name)
    if dicom:
        got = _readable(io_manager.load_volumes(dicom))
        volumes += got
        if not got:
            failed.append(f"the DICOM files ({len(dicom)})")
    return volumes, failed


def check_uploads_first(load_logic: Any, load_ui: Any, admit: Callable[[list[str]], bool]) -> None:
    """Give the files of every page upload to ``admit`` BEFORE trame-slicer clears the
    scene to load them: ``admit`` False (e.g. another patient's DICOM) leaves the scene,
    the volumes already open and their annotation, as they were.

    ``load_logic``: trame-slicer's ``LoadVolumeLogic`` (its ``_load_volume_files`` is
    connected to ``load_ui.on_load_volume``, the page's Open Files / Open Directory)."""
    from tempfile import TemporaryDirectory

    from trame_slicer.utils import write_client_files_to_dir

    load = load_logic._load_volume_files

    def checked_load(files: list[dict]) -> None:
        if files:
            with TemporaryDirectory() as tmp:
                if not admit(write_client_files_to_dir(files, tmp)):
                    return
        load(files)

    load_ui.on_load_volume.disconnect(load)
    load_ui.on_load_volume.connect(checked_load)  # a closure: the signal keeps it alive


def _readable(nodes: list[Any]) -> list[Any]:
    """The nodes that hold an image; the others (Slicer adds a node even when its
    file cannot be read) are removed from the scene."""
    ok = []
    for node in nodes:
        img = node.GetImageData() if node is not None else None
        if img is not None and img.GetNumberOfPoints() > 0:
            ok.append(node)
        elif node is not None and node.GetScene() is not None:
            node.GetScene().RemoveNode(node)
    return ok


def not_loaded_message(failed: list[str]) -> str:
    return (f"not loaded: {', '.join(failed)} (not a NIfTI, NRRD or MHA volume, nor a DICOM series)"
            if failed else "")
