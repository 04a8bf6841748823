"""Reach Ray the way the cohort runner means it: a private local cluster, or exactly the
cluster ``--address`` names, token authentication included.

* Without an address: ``ray.init(address="local")`` always starts a private cluster,
  whatever ``RAY_ADDRESS`` or a left-over ``/tmp/ray/ray_current_cluster`` says.
* With ``HOST:PORT``: :func:`prepare_join` checks, before any work, that something answers
  there and whether the head asks for a token (Ray 2.x: a head started with
  ``ray start --head`` on a machine that has a token in ``~/.ray/auth_token`` has token
  authentication on). When it does and ``RAY_AUTH_MODE`` was not set by the caller, the
  token is taken where Ray keeps it (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
  ``~/.ray/auth_token``) and token mode is switched on for this process; when no token is
  there, the error says which places were looked at and how to copy the head's token.
* :func:`auth_mode_kept` puts ``RAY_AUTH_MODE`` back as it was when the command ends
  (a local ``ray.init`` sets it to ``token`` in the process environment).

``ray._raylet`` is used for the probe (a GCS client, as Ray's own ``ray start`` does);
Ray is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from oneshotsam.errors import OneShotError

AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: seconds to wait for a TCP answer from the head before saying nothing answers there
CONNECT_TIMEOUT_S = 5.0


def token_places() -> list[tuple[str, str | None]]:
    """Where Ray looks for the token, in Ray's order: (place, token or None)."""
    out: list[tuple[str, str | None]] = [
        ("the RAY_AUTH_TOKEN environment variable", os.environ.get("RAY_AUTH_TOKEN", "").strip() or None)]
    env_path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    default = Path.home() / ".ray" / "auth_token"
    for label, p in ((f"RAY_AUTH_TOKEN_PATH ({env_path})", env_path), (str(default), str(default))):
        if not p:
            continue
        try:
            text = Path(p).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError:
            text = None
        out.append((label, text))
    return out


def find_token() -> str | None:
    """The first place that holds a token, or None."""
    return next((place for place, tok in token_places() if tok), None)


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``HOST:PORT`` address; None for ``auto``, ``local``, ``ray://``."""
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise OneShotError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), "
                           "auto or ray://HOST:10001") from None


def _set_auth_mode(mode: str | None) -> None:
    """Set (or unset) ``RAY_AUTH_MODE`` for this process and have Ray read it again."""
    if mode is None:
        os.environ.pop(AUTH_MODE_ENV, None)
    else:
        os.environ[AUTH_MODE_ENV] = mode
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without token authentication
        pass


def _probe(address: str) -> BaseException | None:
    """None when a GCS client of this process is let in at ``address``, else the error."""
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return None  # no probe possible: ray.init will tell
    try:
        with _native_stderr_quiet():  # Ray's C++ client logs the refusal it then raises
            GcsClient(address=address)
    except Exception as exc:  # AuthenticationError, or the GCS did not answer
        return exc
    return None


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """File descriptor 2 to /dev/null meanwhile (native code writes there directly)."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _is_auth_error(exc: BaseException | None) -> bool:
    return exc is not None and ("Authentication" in type(exc).__name__
                                or "InvalidAuthToken" in str(exc) or "Unauthenticated" in str(exc))


def missing_token_text(address: str) -> str:
    looked = "; ".join(place for place, _ in token_places())
    return (f"the Ray head at {address} requires token authentication (Ray 2.x: `ray start --head` "
            "turns it on when the head's machine has a token in ~/.ray/auth_token) and this machine "
            f"has no token: looked in {looked}. Copy the head's ~/.ray/auth_token to this machine's "
            "~/.ray/auth_token, or set RAY_AUTH_TOKEN to what `ray get-auth-token` prints on the head")


def prepare_join(address: str) -> str | None:
    """Check, before any work, that the cluster at ``address`` can be joined, switching on
    token mode when the head asks for a token and one is available here.

    Returns where the token came from (None: no token needed, or ``RAY_AUTH_MODE`` was
    set by the caller and is respected as is).

    Raises:
        OneShotError: nothing answers at ``address``; the head requires a token and none
            is here; or the head refuses the token found here.
    """
    hp = _host_port(address)
    if hp is None:
        return None  # auto / ray:// : Ray's own rules apply
    try:
        socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise OneShotError(f"nothing answers at --address {address} ({exc.strerror or exc}): start "
                           f"the head there (`ray start --head --port {hp[1]}`) or correct --address"
                           ) from None
    if os.environ.get(AUTH_MODE_ENV):
        return None  # the caller chose; ray.init reports what goes wrong
    _set_auth_mode(None)
    first = _probe(address)
    if not _is_auth_error(first):
        return None
    source = find_token()
    if source is None:
        raise OneShotError(missing_token_text(address))
    _set_auth_mode("token")
    second = _probe(address)
    if _is_auth_error(second):
        _set_auth_mode(None)
        raise OneShotError(f"the Ray head at {address} refused the token from {source}: it is not "
                           "that head's token. Copy the head's ~/.ray/auth_token here, or set "
                           "RAY_AUTH_TOKEN to what `ray get-auth-token` prints on the head")
    return source


def check_connected(ray: Any, address: str) -> None:
    """Refuse to use this process's Ray connection for ``address`` when it is another cluster."""
    if not same_cluster(ray, address):
        raise OneShotError(
            f"this process is already connected to the Ray cluster at "
            f"{ray.get_runtime_context().gcs_address}, not to --address {address}: call "
            "ray.shutdown() first, or leave out --address to use the connected one")


def check_joinable(address: str) -> None:
    """Before any work: the connected Ray is that cluster, or it can be joined
    (:func:`prepare_join`)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        check_connected(ray, address)
    else:
        prepare_join(address)


@contextlib.contextmanager
def auth_mode_kept() -> Iterator[None]:
    """Put ``RAY_AUTH_MODE`` back as it was on leaving (Ray's local start sets it)."""
    before = os.environ.get(AUTH_MODE_ENV)
    try:
        yield
    finally:
        if os.environ.get(AUTH_MODE_ENV) != before:
            import sys

            if "ray" in sys.modules:
                _set_auth_mode(before)
            elif before is None:
                os.environ.pop(AUTH_MODE_ENV, None)
            else:
                os.environ[AUTH_MODE_ENV] = before


def init_local(ray: Any, workers: int, kw: dict[str, Any]) -> None:
    """A private local cluster with ``workers`` CPUs, never an existing one."""
    try:  # read the token afresh: an earlier Ray of this process may have cached another
        from ray._raylet import AuthenticationTokenLoader

        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        pass
    if os.environ.get(AUTH_MODE_ENV, "").strip().lower() == "token" and find_token() is None:
        # token mode with no token anywhere: Ray's GCS aborts ("couldn't find an authentication
        # token") and ray.init times out; a private cluster makes its own token when the mode
        # is left to Ray (the caller's auth_mode_kept puts the variable back afterwards)
        _set_auth_mode(None)
    # worker_niceness 0: workers run at this command's priority (Ray's default, +15,
    # starves them on a shared machine; run the command under `nice` to be polite)
    ray.init(address="local", num_cpus=int(workers), include_dashboard=False,
             _system_config={"worker_niceness": 0}, **kw)


def same_cluster(ray: Any, address: str) -> bool:
    """Whether the Ray this process is connected to is the one at ``address`` (HOST:PORT)."""
    hp = _host_port(address)
    if hp is None:
        return True
    try:
        now = ray.get_runtime_context().gcs_address
    except Exception:
        return True
    host, _, port = str(now).rpartition(":")
    if port != str(hp[1]):
        return False
    if host == hp[0] or any(h.startswith("127.") or h == "localhost" for h in (host, hp[0])):
        return True  # Ray names a local head by this machine's address, not by 127.0.0.1
    try:
        return socket.gethostbyname(host) == socket.gethostbyname(hp[0])
    except OSError:
        return False


__all__ = ["prepare_join", "check_joinable", "check_connected", "find_token", "token_places", "auth_mode_kept", "init_local", "same_cluster",
           "missing_token_text", "AUTH_MODE_ENV"]
