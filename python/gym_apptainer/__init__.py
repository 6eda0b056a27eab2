"""gym_apptainer: Python client of gym-apptainer's local service.

- ``Client`` (synchronous) and ``AsyncClient`` (asyncio) reach the service
  that ``gym-host serve`` runs (found or started on first use);
  ``client.create(...)`` returns a ``Sandbox``/``AsyncSandbox``, a context
  manager with exec, exec_stream, upload, download, status, endpoint, close.
- ``gym_apptainer.nemo_gym.GymApptainerProvider`` is the NeMo Gym sandbox
  provider (entry point ``gym_apptainer``).
- ``open_pty(client, sandbox_id, ...)`` opens a terminal session (asyncio).
- Failures raise ``GymError`` subclasses carrying the service's
  ``error_type``.

Standard library only; Python >= 3.9.
"""

from ._version import __version__
from .aio import AsyncClient, AsyncExecStream, AsyncSandbox
from .client import Client, ExecStream, Sandbox
from .errors import (
    Forbidden,
    GymError,
    Internal,
    Interrupted,
    InvalidRequest,
    NotFound,
    SandboxFailed,
    ServiceConnectionError,
    Timeout,
    Unavailable,
)
from .pty import PtyError, PtySession, open_pty
from .types import Endpoint, ExecExit, ExecResult, GcResult, OutputChunk, SandboxInfo, SandboxList, ServiceInfo

__all__ = [
    "__version__",
    "open_pty",
    "PtyError",
    "PtySession",
    "AsyncClient",
    "AsyncExecStream",
    "AsyncSandbox",
    "Client",
    "Endpoint",
    "ExecExit",
    "ExecResult",
    "ExecStream",
    "Forbidden",
    "GcResult",
    "GymError",
    "Internal",
    "Interrupted",
    "InvalidRequest",
    "NotFound",
    "OutputChunk",
    "Sandbox",
    "SandboxFailed",
    "SandboxInfo",
    "SandboxList",
    "ServiceConnectionError",
    "ServiceInfo",
    "Timeout",
    "Unavailable",
]
