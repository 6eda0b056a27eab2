"""Finding the service: an explicit socket, $GYM_SERVICE_SOCKET, or
``gym-host [--config F] serve --json``, which starts (or finds) the daemon of
daemon mode for that config and prints its socket, as the CLI would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from .errors import ServiceConnectionError

SOCKET_ENV = "GYM_SERVICE_SOCKET"
GYM_HOST_ENV = "GYM_HOST"
# gym-host serve returns once the daemon is up; starting one takes well under
# a second, but a cold filesystem (NFS home, first SIF cache use) is slower.
SERVE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Locator:
    """How to reach the service.

    ``socket``: use this socket as it is. Otherwise run ``gym_host``
    (default: $GYM_HOST, else ``gym-host`` from PATH) with ``config``, and
    take the socket it prints; ``rediscoverable`` says a lost socket (the
    daemon idled out) may be found again this way.
    """

    socket: Optional[str] = None
    gym_host: Optional[str] = None
    config: Optional[str] = None
    extra_args: Sequence[str] = ()

    @property
    def rediscoverable(self) -> bool:
        return self.socket is None and not os.environ.get(SOCKET_ENV)

    def serve_argv(self) -> List[str]:
        """The gym-host command that starts or finds the service."""
        exe = self.gym_host or os.environ.get(GYM_HOST_ENV) or shutil.which("gym-host")
        if not exe:
            raise ServiceConnectionError(
                "gym-host is not on PATH: install gym-apptainer (./scripts/setup.sh builds bin/gym-host), "
                f"put it on PATH, or pass gym_host=/path/to/gym-host (or set ${GYM_HOST_ENV} or ${SOCKET_ENV})"
            )
        argv = [exe]
        if self.config:
            argv += ["--config", self.config]
        return argv + ["serve", "--json", *self.extra_args]

    def fixed_socket(self) -> Optional[str]:
        """The socket to use without running anything, if there is one."""
        return self.socket or os.environ.get(SOCKET_ENV) or None


def parse_serve_output(argv: Sequence[str], rc: int, out: bytes, err: bytes) -> str:
    """The socket path from ``gym-host serve --json``'s output, or an error
    that carries gym-host's own (its --json error object or stderr)."""
    text = out.decode("utf-8", "replace").strip()
    obj = None
    # One JSON object (indented or not); else its last line that is one.
    for cand in [text] + list(reversed(text.splitlines())):
        try:
            obj = json.loads(cand)
            break
        except ValueError:
            continue
    if rc != 0 or not isinstance(obj, dict) or not obj.get("socket"):
        detail = ""
        if isinstance(obj, dict) and obj.get("message"):
            detail = f"{obj.get('error_type')}: {obj.get('message')}"
        else:
            detail = err.decode("utf-8", "replace").strip()[-2000:] or text[-2000:]
        raise ServiceConnectionError(f"{' '.join(argv)} failed (exit {rc}): {detail}")
    api = obj.get("api_version")
    if api != 1:
        raise ServiceConnectionError(f"{argv[0]} serves API version {api}, this client speaks 1: upgrade one")
    return str(obj["socket"])


def discover(loc: Locator) -> str:
    """The service's socket path (may start the service)."""
    fixed = loc.fixed_socket()
    if fixed:
        return fixed
    argv = loc.serve_argv()
    # Output goes to files, not pipes: a daemon that inherited a pipe would
    # hold it open, and reading to EOF would wait for the daemon to exit.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=SERVE_TIMEOUT_S).returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ServiceConnectionError(f"{' '.join(argv)}: {e}") from e
        return parse_serve_output(argv, rc, _read(out), _read(err))


def _read(f: Any) -> bytes:
    f.seek(0)
    return f.read()


async def adiscover(loc: Locator) -> str:
    """``discover`` for asyncio: gym-host runs as an asyncio subprocess."""
    fixed = loc.fixed_socket()
    if fixed:
        return fixed
    argv = loc.serve_argv()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        except OSError as e:
            raise ServiceConnectionError(f"{' '.join(argv)}: {e}") from e
        try:
            rc = await asyncio.wait_for(proc.wait(), SERVE_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise ServiceConnectionError(f"{' '.join(argv)}: no answer in {SERVE_TIMEOUT_S:g} s") from None
        return parse_serve_output(argv, rc, _read(out), _read(err))
