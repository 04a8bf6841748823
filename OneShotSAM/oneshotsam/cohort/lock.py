"""One cohort run per output folder: ``OUT/.cohort.lock``.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+) holding
the first run's pid, host, start time, working folder and command. A second run into the
same folder is refused with a message naming the first; a lock whose process is gone
(same host, pid not running) is taken over. The lock is removed when the run ends,
interrupted or not; only by the run that holds it.

Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from oneshotsam.errors import OneShotError

LOCK_NAME = ".cohort.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _holder_text(info: dict[str, Any]) -> str:
    cmd = " ".join(str(a) for a in info.get("argv") or [])
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started "
            f"{info.get('started', '?')} in {info.get('cwd', '?')}: oneshotsam {cmd}")


class OutputLock:
    """``with OutputLock(out, argv):`` holds ``out/.cohort.lock`` for the run."""

    def __init__(self, output_dir: str | Path, argv: Sequence[str] = ()) -> None:
        self.path = Path(output_dir) / LOCK_NAME
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cwd": os.getcwd(),
                     "argv": list(argv), "id": uuid.uuid4().hex}
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        """What the lock file says (None when there is none or it cannot be read)."""
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self) -> "OutputLock":
        """Take the lock (creating the folder), or raise :class:`OneShotError` naming the run
        that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if (info is not None and info.get("host") == self.info["host"]
                        and isinstance(info.get("pid"), int) and not _alive(info["pid"])):
                    self.path.unlink(missing_ok=True)  # its run is gone (killed): take over
                    continue
                held_by = (_holder_text(info) if info is not None
                           else "a run whose lock file cannot be read")
                raise OneShotError(
                    f"{self.path.parent} is in use by another cohort run ({held_by}); nothing was "
                    f"run. Wait for it to finish or stop it, or give another --output-dir; if that "
                    f"run is no longer running (e.g. its machine went down), delete {self.path}"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.info, f)
            self.held = True
            return self
        raise OneShotError(f"could not take the lock {self.path}: another run took it meanwhile")

    def release(self) -> None:
        """Remove the lock if this run still holds it."""
        if self.held:
            info = self.holder()
            if info is not None and info.get("id") == self.info["id"]:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["OutputLock", "LOCK_NAME"]
