"""``oneshotsam weights list | download NAME [--dir DIR] [--sha256 HEX]``.

Wraps :mod:`oneshotsam.backends.checkpoints` (the registry of official files)
and :mod:`oneshotsam.backends.download` (resumable, SHA-256-verified download
with an atomic rename into the per-user cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _size(n: int | None) -> str:
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return "?"


def list_weights() -> str:
    """The table printed by ``oneshotsam weights list``."""
    from oneshotsam.backends.checkpoints import REGISTRY, cache_dir, default_checkpoint_path
    rows = [("name", "family", "licence", "size", "sha256", "cached")]
    for name, info in REGISTRY.items():
        path = default_checkpoint_path(name)
        rows.append((name, info.family, info.licence, _size(info.size_bytes),
                     "known" if info.sha256 else "pass --sha256",
                     str(path) if path is not None and path.is_file() else "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"cache folder: {cache_dir()} (set ONESHOTSAM_CACHE to change it)")
    return "\n".join(lines)


class _DownloadProgress:
    """Prints ``downloaded / total`` on stderr at most twice a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int | None = None, *_: object) -> bool:
        now = time.perf_counter()
        if now - self.last >= 0.5 or (total and done >= total):
            self.last = now
            tail = f" / {_size(total)}" if total else ""
            print(f"\r{_size(done)}{tail}", end="", file=sys.stderr, flush=True)
        return True


def run(args: argparse.Namespace) -> int:
    if args.weights_command == "list":
        print(list_weights())
        return 0
    from oneshotsam.backends.download import download
    path = download(args.name, dest_dir=Path(args.dir) if args.dir else None,
                    sha256=args.sha256, progress=_DownloadProgress())
    print(file=sys.stderr)
    print(path)
    return 0
