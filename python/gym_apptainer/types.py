"""Plain result types of the client, read leniently from the service's JSON.

Unknown fields are ignored and missing ones take defaults, so a newer
service (which may add fields within API version 1) stays readable.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

STATES = ("starting", "running", "stopped", "error", "unknown")


def _s(obj: Mapping[str, Any], key: str) -> str:
    v = obj.get(key)
    return "" if v is None else str(v)


def _i(obj: Mapping[str, Any], key: str) -> int:
    v = obj.get(key)
    try:
        return int(v) if v is not None else 0
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class ExecResult:
    """What an exec returned.

    ``error_type`` is None when ``exit_code`` is the command's own exit code;
    otherwise it says what failed (``"sandbox"`` or ``"timeout"``, with exit
    code 125). ``stdout_bytes``/``stderr_bytes`` are the full sizes of the
    streams, which may exceed what ``stdout``/``stderr`` hold when the
    service capped them (``max_output``).
    """

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    error_type: Optional[str] = None
    message: str = ""
    exec_id: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    @property
    def ok(self) -> bool:
        """The command ran and exited 0."""
        return self.error_type is None and self.exit_code == 0

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ExecResult":
        return cls(
            exit_code=_i(obj, "exit_code"),
            stdout=_s(obj, "stdout"),
            stderr=_s(obj, "stderr"),
            error_type=obj.get("error_type") or None,
            message=_s(obj, "message"),
            exec_id=_s(obj, "exec_id"),
            stdout_bytes=_i(obj, "stdout_bytes"),
            stderr_bytes=_i(obj, "stderr_bytes"),
        )


@dataclass(frozen=True)
class OutputChunk:
    """One piece of a streamed exec's output, as it was produced."""

    stream: str  # "stdout" or "stderr"
    data: bytes


@dataclass(frozen=True)
class ExecExit:
    """The end of a streamed exec (same meaning as ExecResult's fields)."""

    exit_code: int
    error_type: Optional[str] = None
    message: str = ""
    exec_id: str = ""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ExecExit":
        return cls(
            exit_code=_i(obj, "exit_code"),
            error_type=obj.get("error_type") or None,
            message=_s(obj, "message"),
            exec_id=_s(obj, "exec_id"),
        )


def decode_event(obj: Mapping[str, Any]) -> Any:
    """An ndjson event of a streamed exec: OutputChunk, ExecExit, or the
    raw mapping for an ``error`` event (the caller raises it)."""
    kind = obj.get("type")
    if kind in ("stdout", "stderr"):
        return OutputChunk(str(kind), base64.b64decode(_s(obj, "data")))
    if kind == "exit":
        return ExecExit.from_json(obj)
    return obj


@dataclass(frozen=True)
class SandboxInfo:
    """A sandbox's status as the service reports it."""

    id: str
    state: str = "unknown"
    reason: str = ""
    image: str = ""
    instance: str = ""
    pid: int = 0
    created: str = ""  # RFC 3339
    placement: str = ""
    node: str = ""
    job_id: str = ""
    ttl_s: int = 0
    owner: str = ""
    foreign: bool = False
    executor: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "SandboxInfo":
        state = _s(obj, "state") or "unknown"
        return cls(
            id=_s(obj, "id"),
            state=state if state in STATES else "unknown",
            reason=_s(obj, "reason"),
            image=_s(obj, "image"),
            instance=_s(obj, "instance"),
            pid=_i(obj, "pid"),
            created=_s(obj, "created"),
            placement=_s(obj, "placement"),
            node=_s(obj, "node"),
            job_id=_s(obj, "job_id"),
            ttl_s=_i(obj, "ttl_s"),
            owner=_s(obj, "owner"),
            foreign=bool(obj.get("foreign")),
            executor=_s(obj, "executor"),
            raw=dict(obj),
        )


@dataclass(frozen=True)
class SandboxList:
    """``list``: the sandboxes, and handles that could not be read."""

    sandboxes: List[SandboxInfo]
    skipped: List[Dict[str, str]]


@dataclass(frozen=True)
class GcResult:
    """``gc``/``close_all``: ids closed (or, dry run, to close), failures,
    and handle files that could not be read."""

    closed: List[str]
    failed: List[Dict[str, str]]
    skipped: List[Dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Endpoint:
    """Where a client reaches a port a server in the sandbox listens on."""

    endpoint: str
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceInfo:
    """``GET /v1/info``."""

    api_version: int
    version: str
    pid: int
