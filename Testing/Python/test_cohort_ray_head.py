"""``oneshotsam cohort`` and a Ray head started elsewhere: a real head (``ray start --head
--block`` in its own folder, with its own HOME holding a token, so token authentication is
on as Ray 2.x sets it), joined with a relative --output-dir from another folder; a caller
without the token is told exactly what is missing; without --address the command starts a
private cluster even when RAY_ADDRESS names that head. The head is stopped in teardown and
every process it started is gone."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cohort_synth import make_cohort
from cohort_synth import run_cohort as _cohort

ray = pytest.importorskip("ray")

_RAY_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


@dataclass(frozen=True)
class Head:
    address: str
    token: str
    cwd: Path  # the head's working folder (where a relative path would land on its side)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_of(folder: Path) -> list[int]:
    """The pids of every process whose command line names ``folder`` (the head's Ray
    processes), read from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(folder).encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:  # gone meanwhile
                pass
    return out


def _kill_and_wait(pids: list[int], timeout_s: float = 30) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)


@pytest.fixture(scope="module")
def token_head():
    base = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths
    home, cwd, ray_tmp = base / "home", base / "headcwd", base / "t"
    for d in (home / ".ray", cwd, ray_tmp):
        d.mkdir(parents=True)
    token = secrets.token_hex(32)
    (home / ".ray" / "auth_token").write_text(token, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in _RAY_ENV}
    env["HOME"] = str(home)
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    log = open(base / "head.log", "w", encoding="utf-8")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--port", str(port), "--temp-dir", str(ray_tmp),
                             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                             "--block"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Ray head did not start: "
                                       + (base / "head.log").read_text(encoding="utf-8")[-2000:])
                time.sleep(0.5)
        yield Head(f"127.0.0.1:{port}", token, cwd)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(90)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(30)
        log.close()
        left = _processes_of(ray_tmp)
        _kill_and_wait(left)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"the head left {len(left)} process(es) behind"


@pytest.fixture()
def caller(tmp_path: Path, monkeypatch) -> Path:
    """A caller with no Ray settings and an empty HOME, working in its own folder."""
    for k in _RAY_ENV:
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "caller").mkdir()
    monkeypatch.chdir(tmp_path / "caller")
    return tmp_path / "caller"


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def _check_done_here(out: Path, n: int) -> None:
    summ = _summary(out)
    assert [t["status"] for t in summ["targets"]] == ["done"] * n, summ["targets"]
    for t in summ["targets"]:
        assert t["pid"] != os.getpid()  # ran in the head's workers
        for k in ("labels", "segmentation", "report"):
            assert Path(t[k]).is_absolute() and Path(t[k]).is_file() and Path(t[k]).is_relative_to(out)


def test_joins_a_token_head_started_elsewhere_with_a_relative_output_dir(
        token_head: Head, caller: Path, tmp_path: Path, monkeypatch) -> None:
    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token_head.token)  # the token as an environment variable
    assert _cohort(m, Path("out"), "--address", token_head.address) == 0
    _check_done_here(caller / "out", 2)
    assert not (token_head.cwd / "out").exists()  # nothing relative to the head's folder
    assert "RAY_AUTH_MODE" not in os.environ  # the process environment is as it was
    monkeypatch.delenv("RAY_AUTH_TOKEN")  # the token where Ray keeps it: ~/.ray/auth_token
    (tmp_path / "home" / ".ray").mkdir()
    (tmp_path / "home" / ".ray" / "auth_token").write_text(token_head.token, encoding="utf-8")
    assert _cohort(m, Path("out2"), "--address", token_head.address, "--workers", "1") == 0
    _check_done_here(caller / "out2", 2)
    assert "RAY_AUTH_MODE" not in os.environ


def test_join_without_the_token_says_what_is_missing(token_head: Head, caller: Path, tmp_path: Path,
                                                     monkeypatch, capsys) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    t0 = time.monotonic()
    assert _cohort(m, Path("out"), "--address", token_head.address) == 2
    err = capsys.readouterr().err
    assert f"the Ray head at {token_head.address} requires token authentication" in err
    assert (f"has no token: looked in the RAY_AUTH_TOKEN environment variable; "
            f"{tmp_path / 'home' / '.ray' / 'auth_token'}. Copy the head's ~/.ray/auth_token") in err
    assert "overloaded" not in err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)  # somebody else's token
    assert _cohort(m, Path("out"), "--address", token_head.address) == 2
    err = capsys.readouterr().err
    assert "refused the token from the RAY_AUTH_TOKEN environment variable: it is not that head's" in err
    assert time.monotonic() - t0 < 30  # told at once, not after Ray's connection timeout
    assert not (caller / "out").exists() and "RAY_AUTH_MODE" not in os.environ


def test_nothing_answering_at_the_address_is_said(caller: Path, tmp_path: Path, capsys) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    port = _free_port()
    assert _cohort(m, Path("out"), "--address", f"127.0.0.1:{port}") == 2
    err = capsys.readouterr().err
    assert f"nothing answers at --address 127.0.0.1:{port}" in err
    assert f"`ray start --head --port {port}`" in err and not (caller / "out").exists()


def test_without_address_a_private_cluster_even_when_RAY_ADDRESS_names_a_head(
        token_head: Head, caller: Path, tmp_path: Path, monkeypatch) -> None:
    m = make_cohort(tmp_path / "data", n_patients=2, n_targets=1)
    monkeypatch.setenv("RAY_ADDRESS", token_head.address)
    assert _cohort(m, Path("out"), "--workers", "2") == 0
    summ = _summary(caller / "out")
    assert summ["mode"] == "local Ray, 2 workers" and summ["address"] is None
    _check_done_here(caller / "out", 2)
    assert "RAY_AUTH_MODE" not in os.environ


def test_a_ray_already_connected_elsewhere_is_not_used_for_another_address(
        token_head: Head, caller: Path, tmp_path: Path, capsys) -> None:
    m = make_cohort(tmp_path / "data", n_patients=1, n_targets=1)
    # (the RAY_AUTH_MODE that ray.init sets is removed again by the caller fixture's monkeypatch)
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="WARNING")
    try:
        mine = ray.get_runtime_context().gcs_address
        assert _cohort(m, Path("out"), "--address", token_head.address) == 2
    finally:
        ray.shutdown()
    err = capsys.readouterr().err
    assert f"already connected to the Ray cluster at {mine}, not to --address {token_head.address}" in err
    assert not (caller / "out").exists()
