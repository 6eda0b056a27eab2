"""Mirrors of NeMo Gym's sandbox types (nemo_gym/sandbox/providers/base.py).

Used only when ``nemo_gym`` cannot be imported (NeMo Gym needs a newer
Python and its own dependencies). Field names, defaults, validation and
error classes follow NeMo Gym's, so code written against either works with
the other; a test compares them with NeMo Gym's source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional, Protocol, Tuple, Union, runtime_checkable
from urllib.parse import urlsplit


class SandboxStatus(str, Enum):
    """Provider-neutral sandbox lifecycle status."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SandboxEndpoint:
    """Route to a long-lived service inside a sandbox (absolute URL + headers)."""

    endpoint: str
    headers: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.endpoint, str) or not self.endpoint.strip():
            raise ValueError("Sandbox endpoint must be a non-empty absolute URL")
        endpoint = self.endpoint.strip()
        parsed = urlsplit(endpoint)
        if not parsed.scheme or not parsed.netloc:
            raise ValueError("Sandbox endpoint must be a non-empty absolute URL")
        if not isinstance(self.headers, Mapping):
            raise TypeError("Sandbox endpoint headers must be a mapping")
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "headers", {str(k): str(v) for k, v in self.headers.items()})


@dataclass(frozen=True)
class SandboxResources:
    """Provider-neutral resource request."""

    cpu: Optional[float] = None
    memory_mib: Optional[int] = None
    disk_gib: Optional[int] = None
    gpu: Optional[int] = None
    gpu_type: Optional[str] = None

    @classmethod
    def from_mapping(cls, resources: Optional[Mapping[str, Any]]) -> "SandboxResources":
        if resources is None:
            return cls()
        allowed_keys = set(cls.__dataclass_fields__)
        unknown_keys = set(resources) - allowed_keys
        if unknown_keys:
            unknown = ", ".join(sorted(unknown_keys))
            allowed = ", ".join(sorted(allowed_keys))
            raise ValueError(f"Unknown sandbox resource keys: {unknown}. Expected keys: {allowed}")
        return cls(
            cpu=float(resources["cpu"]) if resources.get("cpu") is not None else None,
            memory_mib=int(resources["memory_mib"]) if resources.get("memory_mib") is not None else None,
            disk_gib=int(resources["disk_gib"]) if resources.get("disk_gib") is not None else None,
            gpu=int(resources["gpu"]) if resources.get("gpu") is not None else None,
            gpu_type=str(resources["gpu_type"]) if resources.get("gpu_type") is not None else None,
        )


@dataclass(frozen=True)
class SandboxSpec:
    """Sandbox creation request."""

    image: Optional[str] = None
    ttl_s: Union[int, float, None] = None
    ready_timeout_s: Union[int, float, None] = None
    workdir: Optional[str] = None
    env: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    metadata: Dict[str, str] = field(default_factory=dict)
    resources: Union[SandboxResources, Mapping[str, Any]] = field(default_factory=SandboxResources)
    entrypoint: Optional[List[str]] = None
    provider_options: Dict[str, Any] = field(default_factory=dict)
    ports: Union[Tuple[int, ...], List[int]] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.resources, SandboxResources):
            object.__setattr__(self, "resources", SandboxResources.from_mapping(self.resources))
        if not isinstance(self.ports, (list, tuple)):
            raise TypeError("Sandbox ports must be a list or tuple of TCP port numbers")
        normalized_ports: List[int] = []
        for raw_port in self.ports:
            if isinstance(raw_port, bool):
                raise ValueError(f"Invalid sandbox TCP port: {raw_port!r}")
            if not isinstance(raw_port, (int, str)):
                raise ValueError(f"Invalid sandbox TCP port: {raw_port!r}")
            try:
                port = int(raw_port)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Invalid sandbox TCP port: {raw_port!r}") from exc
            if port < 1 or port > 65535:
                raise ValueError(f"Sandbox TCP port must be between 1 and 65535, got {port}")
            if port in normalized_ports:
                raise ValueError(f"Duplicate sandbox TCP port: {port}")
            normalized_ports.append(port)
        object.__setattr__(self, "ports", tuple(normalized_ports))


@dataclass
class SandboxHandle:
    """Provider-neutral handle to a created sandbox (``raw`` is provider-owned)."""

    sandbox_id: str
    provider_name: str
    raw: Any


@dataclass(frozen=True)
class SandboxExecResult:
    """Process execution result; ``error_type`` set for runtime failures."""

    stdout: Optional[str]
    stderr: Optional[str]
    return_code: int
    error_type: Optional[str] = None


ExecResult = SandboxExecResult


@dataclass(frozen=True)
class SandboxPtySpec:
    """Interactive PTY session request."""

    command: Optional[str] = None
    cwd: Optional[str] = None
    env: Optional[Dict[str, str]] = None
    rows: int = 24
    cols: int = 80
    user: Union[str, int, None] = None
    pty: bool = True


class SandboxPtyError(RuntimeError):
    """Raised when a PTY session fails outside normal process exit."""


class SandboxCreateError(RuntimeError):
    """Raised when a provider cannot create a sandbox."""


class SandboxCreateVerificationError(SandboxCreateError):
    """Raised when a newly-created sandbox fails provider readiness checks."""


@runtime_checkable
class SupportsSandboxEndpoint(Protocol):
    """Optional provider capability for resolving declared service ports."""

    async def endpoint(self, handle: SandboxHandle, port: int) -> SandboxEndpoint: ...


@runtime_checkable
class ConnectableProvider(Protocol):
    """Optional capability: rebuild a handle in another process from a descriptor."""

    async def serialize_handle(self, handle: SandboxHandle, *, scope: Optional[str] = None) -> Dict[str, Any]: ...

    async def connect(self, descriptor: Mapping[str, Any]) -> SandboxHandle: ...
