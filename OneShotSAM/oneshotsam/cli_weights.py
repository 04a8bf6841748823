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


def list_weights(dest_dir: str | None = None) -> str:
    """The table printed by ``oneshotsam weights list``."""
    from oneshotsam.backends.checkpoints import cache_dir
    from oneshotsam.backends.download import weights_table
    rows = [("name", "family", "licence", "size", "sha256", "downloaded")]
    for r in weights_table(dest_dir):
        rows.append((r["name"], r["family"], r["licence"], _size(r["size_bytes"]),
                     "recorded" if r["sha256"] else "needs --sha256", r["downloaded"] or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    where = Path(dest_dir).expanduser() if dest_dir else cache_dir()
    lines.append(f"folder: {where} (default: $ONESHOTSAM_CACHE or ~/.cache/oneshotsam)")
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
        print(list_weights(args.dir))
        return 0
    from oneshotsam.backends.download import download
    path = download(args.name, dest_dir=Path(args.dir) if args.dir else None,
                    sha256=args.sha256, progress=_DownloadProgress())
    print(file=sys.stderr)
    print(path)
    return 0
