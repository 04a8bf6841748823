"""Checkpoint download against a local HTTP server on 127.0.0.1 (Range support)."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from oneshotsam.backends import download as dl
from oneshotsam.errors import OneShotError

PAYLOAD = bytes(range(256)) * 1200  # 307200 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /file.pt (Range aware), /corrupt.pt (wrong bytes), 404 otherwise.

    ``server.truncate_once``: the next /file.pt response announces the full
    length but closes the connection after half of it.
    """

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path == "/file.pt":
            body = PAYLOAD
        elif self.path == "/corrupt.pt":
            body = PAYLOAD[:-10] + b"x" * 10
        else:
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if self.server.truncate_once:
            self.server.truncate_once = False
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.truncate_once = False
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_full_download_with_progress(server, tmp_path):
    srv, base = server
    seen = []
    out = dl.download(f"{base}/file.pt", tmp_path, sha256=SHA.upper(),
                      progress=lambda d, t, m: seen.append((d, t)) or True)
    assert out == tmp_path / "file.pt" and out.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.pt.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    # already there and verified: no new request
    n = len(srv.requests)
    assert dl.download(f"{base}/file.pt", tmp_path, sha256=SHA) == out
    assert len(srv.requests) == n


def test_resume_after_truncated_transfer(server, tmp_path):
    srv, base = server
    srv.truncate_once = True
    with pytest.raises(OneShotError, match="resume"):
        dl.download(f"{base}/file.pt", tmp_path, sha256=SHA, timeout_s=5)
    part = tmp_path / "file.pt.part"
    assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD)
    assert not (tmp_path / "file.pt").exists()
    got = part.stat().st_size
    out = dl.download(f"{base}/file.pt", tmp_path, sha256=SHA, timeout_s=5)
    assert out.read_bytes() == PAYLOAD and not part.exists()
    assert srv.requests[-1] == ("/file.pt", f"bytes={got}-")


def test_corrupted_payload_leaves_nothing(server, tmp_path):
    _, base = server
    with pytest.raises(OneShotError, match="corrupted"):
        dl.download(f"{base}/corrupt.pt", tmp_path, sha256=SHA)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_404(server, tmp_path):
    _, base = server
    with pytest.raises(OneShotError, match="404"):
        dl.download(f"{base}/missing.pt", tmp_path, sha256=SHA)
    assert not (tmp_path / "missing.pt").exists()


def test_unknown_hash_refuses_to_finish(server, tmp_path):
    _, base = server
    with pytest.raises(OneShotError, match=f"--sha256 {SHA}"):
        dl.download(f"{base}/file.pt", tmp_path)
    assert not (tmp_path / "file.pt").exists()
    assert (tmp_path / "file.pt.part").stat().st_size == len(PAYLOAD)
    # run again with the hash: the complete .part is verified (server answers 416)
    out = dl.download(f"{base}/file.pt", tmp_path, sha256=SHA)
    assert out.read_bytes() == PAYLOAD


def test_cancel_keeps_part(server, tmp_path):
    _, base = server
    with pytest.raises(OneShotError, match="cancelled"):
        dl.download(f"{base}/file.pt", tmp_path, sha256=SHA, progress=lambda d, t, m: False)
    assert (tmp_path / "file.pt.part").is_file() and not (tmp_path / "file.pt").exists()


def test_unreachable_host(tmp_path):
    with pytest.raises(OneShotError, match="cannot reach"):
        dl.download("http://127.0.0.1:9/x.pt", tmp_path, sha256=SHA, timeout_s=2)


RESOLVE_CASES = [
    ("sam-vit-b", None, ("sam_vit_b_01ec64.pth", dl.REGISTRY["sam-vit-b"].sha256)),
    ("sam2.1-hiera-tiny", None, ("sam2.1_hiera_tiny.pt", dl.REGISTRY["sam2.1-hiera-tiny"].sha256)),
    # the user's value equal to the official one (any case) is accepted
    ("sam-vit-h", dl.REGISTRY["sam-vit-h"].sha256.upper(),
     ("sam_vit_h_4b8939.pth", dl.REGISTRY["sam-vit-h"].sha256)),
    ("https://host/dir/w.pt", "AB" * 32, ("w.pt", "ab" * 32)),
    ("https://host/dir/w.pt", None, ("w.pt", None)),
    ("https://host/dir/w%20x.pt", "cd" * 32, ("w x.pt", "cd" * 32)),
]


@pytest.mark.parametrize("name,sha,expected", RESOLVE_CASES)
def test_resolve(name, sha, expected):
    _, filename, digest = dl.resolve(name, sha)
    assert (filename, digest) == expected


@pytest.mark.parametrize("name,sha", [("sam-vit-b", "00" * 32), ("nonsense", None),
                                      ("sam-vit-b", "xyz"), ("ftp://h/x.pt", None)])
def test_resolve_errors(name, sha):
    with pytest.raises(OneShotError):
        dl.resolve(name, sha)


def test_weights_table(tmp_path):
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    rows = {r["name"]: r for r in dl.weights_table(tmp_path)}
    assert rows["sam-vit-b"]["downloaded"] == str(tmp_path / "sam_vit_b_01ec64.pth")
    assert rows["sam-vit-h"]["downloaded"] is None
    assert all(len(r["sha256"]) == 64 for r in rows.values())
