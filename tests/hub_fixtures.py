"""Pytest fixtures and helpers to run the real Hugging Face client against `tests/hub_server.LocalHub`.

Import from `tests/conftest.py`::

    from tests.hub_fixtures import local_hub  # noqa: F401  (re-exported fixture)

`huggingface_hub` reads `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_XET` (and the cache paths)
once, at import time, so the robust pattern is to run client code in a **subprocess** whose
environment comes from `hub_env(...)`; `run_hub_python(...)` does that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

try:  # imported as `tests.hub_fixtures` (package) or as `hub_fixtures` (rootdir on sys.path)
    from .hub_server import LocalHub
except ImportError:  # pragma: no cover - depends on how pytest was invoked
    from hub_server import LocalHub  # type: ignore[no-redef]

#: Write token of user `HUB_USER` on the `local_hub` fixture.
HUB_TOKEN = "hf_localhub_user_write_token"
HUB_USER = "user"
#: Write token of a second user, `OTHER_USER` (for "writing into someone else's namespace" tests).
OTHER_TOKEN = "hf_localhub_other_write_token"
OTHER_USER = "other"
#: Read-only token of `HUB_USER`.
READ_TOKEN = "hf_localhub_user_read_token"
#: Organisation with `HUB_USER` as a member.
HUB_ORG = "glyffuser-org"

_DEFAULT = object()

# Variables that would make a subprocess talk to another Hub, use another cache or token, or go offline.
_SCRUBBED_PREFIXES = ("HF_", "HUGGINGFACE_")
_SCRUBBED_EXTRA = ("TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "DO_NOT_TRACK", "DISABLE_TELEMETRY")

_NETWORK_GUARD = '''\
"""Installed by tests/hub_fixtures.hub_env: refuse to resolve any host but the loopback.

Any attempt to reach the network (the real Hub, the datasets-server, ...) fails immediately with
`socket.gaierror`, exactly like an unreachable host, without a single packet leaving the machine.
"""
import importlib
import socket
import sys

_ALLOWED = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "", None}
_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _ALLOWED:
        raise socket.gaierror(socket.EAI_NONAME, f"blocked by the LocalHub test network guard: {name!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _guarded_getaddrinfo

# Chain to any other sitecustomize further down sys.path.
_here = __file__
_mod = sys.modules.pop("sitecustomize", None)
_saved = list(sys.path)
try:
    sys.path = [p for p in sys.path if p and not _here.startswith(p.rstrip("/") + "/")]
    importlib.import_module("sitecustomize")
except ImportError:
    pass
finally:
    sys.path = _saved
    if _mod is not None:
        sys.modules["sitecustomize"] = _mod
'''


def hub_env(
    hub: LocalHub,
    tmp_path: str | os.PathLike[str],
    token: str | None = _DEFAULT,  # type: ignore[assignment]
    *,
    offline: bool = False,
    block_network: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a subprocess that uses the real client against `hub`.

    Args:
        hub: a started `LocalHub`.
        tmp_path: directory holding `hf_home/` (HF_HOME: token, hub cache, datasets cache). Reuse
            the same directory to reuse the cache (e.g. to re-run offline).
        token: `HF_TOKEN` to use; defaults to `HUB_TOKEN`; `None` = anonymous.
        offline: set `HF_HUB_OFFLINE=1` (and `HF_DATASETS_OFFLINE=1`).
        block_network: install a `sitecustomize` that refuses to resolve any host but the loopback
            (so nothing can leak to the real Hub or datasets-server).
        extra: additional variables (win over the defaults).
    """
    root = Path(tmp_path)
    hf_home = root / "hf_home"
    hf_home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED_EXTRA
    }
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(hf_home),
            # Uploads would otherwise go to Xet storage, which LocalHub does not implement.
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            # Never route loopback traffic through a proxy that may be configured on the machine.
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if token is _DEFAULT:
        token = HUB_TOKEN
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
        env["HF_DATASETS_OFFLINE"] = "1"
    if block_network:
        guard_dir = root / "_localhub_netguard"
        guard_dir.mkdir(parents=True, exist_ok=True)
        (guard_dir / "sitecustomize.py").write_text(_NETWORK_GUARD)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(guard_dir), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run_hub_python(
    code: str,
    env: Mapping[str, str],
    *,
    timeout: float = 120,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `code` (dedented) in a fresh `python -c` with `env`; on failure (if `check`) fail the test
    with the subprocess's stdout/stderr in the message."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"subprocess exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return proc


@pytest.fixture
def local_hub() -> Iterator[LocalHub]:
    """A fresh, started `LocalHub` per test (start-up takes milliseconds).

    Users: `HUB_USER` (tokens `HUB_TOKEN`, read-only `READ_TOKEN`, member of `HUB_ORG`) and
    `OTHER_USER` (`OTHER_TOKEN`). Fails the test if the server itself raised an exception.
    """
    hub = LocalHub(
        tokens={HUB_TOKEN: HUB_USER, READ_TOKEN: HUB_USER, OTHER_TOKEN: OTHER_USER},
        read_only_tokens=[READ_TOKEN],
        orgs={HUB_ORG: [HUB_USER]},
    )
    with hub:
        yield hub
    assert not hub.server_errors, "LocalHub raised internally:\n" + "\n".join(hub.server_errors)
