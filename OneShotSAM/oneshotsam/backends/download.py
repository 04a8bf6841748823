"""Download checkpoints with resume, SHA-256 verification and atomic rename.

The transfer goes to ``<file>.part`` in the destination folder; an interrupted
transfer is resumed with an HTTP ``Range`` request the next time; the finished
file is verified and only then moved into place with :func:`os.replace`, so
the final path never holds a partial or corrupt file.

Used by the command line (``oneshotsam weights download NAME [--dir DIR]
[--sha256 HEX]`` and ``oneshotsam weights list``). Standard library only.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from oneshotsam.backends.checkpoints import REGISTRY, cache_dir
from oneshotsam.errors import OneShotError
from oneshotsam.progress import ProgressFn, no_progress

CHUNK_BYTES = 1 << 20


def file_sha256(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Lower-case hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def _normalise_hex(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise OneShotError(f"--sha256 must be 64 hexadecimal characters; got {value!r}")
    return v


def resolve(name_or_url: str, sha256: str | None = None) -> tuple[str, str, str | None]:
    """``(url, filename, expected_sha256)`` for a registry name or a URL."""
    user = _normalise_hex(sha256)
    info = REGISTRY.get(name_or_url)
    if info is not None:
        if user and info.sha256 and user != info.sha256:
            raise OneShotError(
                f"--sha256 {user} conflicts with the official SHA-256 of {info.name} "
                f"({info.sha256}); drop --sha256 to use the official value")
        return info.url, info.filename, info.sha256 or user
    parsed = urllib.parse.urlparse(name_or_url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        filename = Path(urllib.parse.unquote(parsed.path)).name
        if not filename:
            raise OneShotError(f"cannot tell a file name from URL {name_or_url!r}")
        return name_or_url, filename, user
    raise OneShotError(f"unknown weights {name_or_url!r}; choose one of: "
                       f"{', '.join(REGISTRY)} (or give an http(s) URL)")


def download(name_or_url: str, dest_dir: str | Path | None = None, sha256: str | None = None,
             progress: ProgressFn = no_progress, *, timeout_s: float = 60.0) -> Path:
    """Download official weights (or a URL) into ``dest_dir`` (default: the cache).

    Args:
        name_or_url: a :data:`~oneshotsam.backends.checkpoints.REGISTRY` name
            (``"sam-vit-b"``, ...) or an http(s) URL.
        dest_dir: destination folder (created); default
            :func:`~oneshotsam.backends.checkpoints.cache_dir`.
        sha256: expected hex SHA-256 where the registry has none (or for a URL).
        progress: ``progress(done_bytes, total_bytes or 0, message) -> bool``;
            False stops the transfer (the ``.part`` file is kept for resuming).
        timeout_s: socket timeout per read.

    Returns:
        The verified file's path.

    Raises:
        OneShotError: HTTP error (404 ...), network failure or truncated
            transfer (run again to resume), SHA-256 mismatch (the partial file is
            deleted), or no known SHA-256 (the complete file is left as ``.part``
            and its SHA-256 printed: compare it with the official value and run
            again with ``--sha256 HEX`` to finish).
    """
    url, filename, expected = resolve(name_or_url, sha256)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OneShotError(f"cannot create the download folder {dest}: {exc}") from None
    final = dest / filename
    part = dest / (filename + ".part")
    if final.is_file():
        if expected is None or file_sha256(final) == expected:
            return final
        raise OneShotError(
            f"{final} exists but its SHA-256 differs from the expected {expected}: delete it "
            "and run the download again")
    _transfer(url, part, progress, timeout_s)
    actual = file_sha256(part)
    if expected is None:
        raise OneShotError(
            f"downloaded {url} to {part}, but no official SHA-256 is recorded for it, so it "
            f"was not installed. Its SHA-256 is {actual}: if it matches the value published "
            f"by the model's authors, run again with --sha256 {actual} to finish")
    if actual != expected:
        part.unlink(missing_ok=True)
        raise OneShotError(
            f"the download of {url} is corrupted (SHA-256 {actual}, expected {expected}); the "
            "partial file was deleted: run the download again")
    os.replace(part, final)
    return final


def _transfer(url: str, part: Path, progress: ProgressFn, timeout_s: float) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "oneshotsam"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part is complete
            return
        raise OneShotError(f"download failed: HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OneShotError(
            f"cannot reach {url} ({reason}); check the internet connection and run the "
            "download again (it resumes)") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = offset + remaining if remaining is not None else 0
        done = offset
        try:
            with open(part, "ab" if offset else "wb") as out:
                while True:
                    block = response.read(CHUNK_BYTES)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if not progress(done, total, f"downloading {part.name[:-5]}"):
                        raise OneShotError(
                            f"download cancelled after {done} bytes; run again to resume")
        except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError,
                OSError) as exc:
            raise OneShotError(
                f"the transfer of {url} was interrupted after {done} bytes ({exc}); run the "
                "download again to resume") from None
    if total and done < total:
        raise OneShotError(
            f"the transfer of {url} stopped after {done} of {total} bytes; run the download "
            "again to resume")


def weights_table(dest_dir: str | Path | None = None) -> list[dict]:
    """Rows for ``oneshotsam weights list``: name, family, file, URL, SHA-256
    (None = unknown), size, licence, and the local path when downloaded."""
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    rows = []
    for info in REGISTRY.values():
        local = dest / info.filename
        rows.append({"name": info.name, "family": info.family, "file": info.filename,
                     "url": info.url, "sha256": info.sha256, "size_bytes": info.size_bytes,
                     "licence": info.licence,
                     "downloaded": str(local) if local.is_file() else None})
    return rows
