"""Where the work runs: the one device resolver of the engine.

``--device`` (and every front end's device setting) takes ``auto``, ``cpu`` or
``cuda`` (``cuda:N`` too). :func:`check_device` refuses, before any work, a device
this machine does not have; :func:`resolve_device` turns ``auto`` into ``cuda``
when a usable CUDA GPU is present and ``cpu`` otherwise; :func:`device_kind` says
which of the two a device is (settings that depend on the hardware ask it).

Imports torch only inside :func:`cuda_available` (the one place that asks torch).
"""

from __future__ import annotations

from oneshotsam.errors import OneShotError

#: ``--device`` values; ``auto`` = CUDA when present, else CPU
DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """True when torch is installed and sees a usable CUDA GPU."""
    try:
        import torch  # lazy: importing the engine must not import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA set-up is no CUDA
        return False


def check_device(device: str | None) -> str:
    """``device`` (lower-case; None = ``auto``) when it can be used here.

    Raises:
        OneShotError: an unknown name, or CUDA asked for on a machine without a
            usable CUDA GPU (the message says what to use instead).
    """
    dev = str(device or "auto").strip().lower()
    if dev.startswith("cuda"):
        if not cuda_available():
            raise OneShotError(f"device {device!r} was requested but this machine has no usable "
                               "CUDA GPU: use --device cpu (or auto)")
        return dev
    if dev not in DEVICES:
        raise OneShotError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    return dev


def resolve_device(device: str | None) -> str:
    """The device to run on: ``auto`` -> ``cuda`` when available, else ``cpu``;
    any other value as :func:`check_device` accepts it."""
    dev = check_device(device)
    if dev == "auto":
        return "cuda" if cuda_available() else "cpu"
    return dev


def device_kind(device: str | None) -> str:
    """``"cuda"`` or ``"cpu"``: what ``device`` is (``auto`` asks the machine;
    never raises, for choosing settings)."""
    dev = str(device or "auto").strip().lower()
    if dev == "auto":
        return "cuda" if cuda_available() else "cpu"
    return "cuda" if dev.startswith("cuda") else "cpu"


__all__ = ["DEVICES", "cuda_available", "check_device", "resolve_device", "device_kind"]
