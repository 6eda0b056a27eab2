"""Exceptions: one class per ``error_type`` of the service API.

Every failure the service reports carries a stable ``error_type`` word
(``invalid``, ``not_found``, ``unavailable``, ``sandbox``, ``timeout``,
``interrupted``, ``internal``, ``forbidden``), so callers branch on the class
or on ``err.error_type``, never on the message's wording. The classes also
derive from the matching built-in (``ValueError``, ``LookupError``,
``TimeoutError``...) so generic handlers work.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type


class GymError(RuntimeError):
    """A failure reported by (or while reaching) the gym-apptainer service.

    ``error_type`` is the service's word for the failure, ``status`` the HTTP
    status it came with (0 when no response was read).
    """

    error_type = "internal"

    def __init__(self, message: str, *, error_type: Optional[str] = None, status: int = 0) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class InvalidRequest(GymError, ValueError):
    """The request is invalid or too large: fix it, do not retry."""

    error_type = "invalid"


class NotFound(GymError, LookupError):
    """No sandbox with that id was ever made with this state directory."""

    error_type = "not_found"


class Unavailable(GymError):
    """The cluster's controller cannot be reached: retry the same call later."""

    error_type = "unavailable"


class SandboxFailed(GymError):
    """The sandbox or its runtime failed (a harness may throw it away)."""

    error_type = "sandbox"


class Timeout(GymError, TimeoutError):
    """The command or call timed out."""

    error_type = "timeout"


class Interrupted(GymError):
    """The service was interrupted (SIGINT/SIGTERM) during the call."""

    error_type = "interrupted"


class Internal(GymError):
    """gym-host, its plugin or this client failed."""

    error_type = "internal"


class Forbidden(GymError, PermissionError):
    """The service refused this user (only its owner may connect)."""

    error_type = "forbidden"


class ServiceConnectionError(Internal, ConnectionError):
    """The service could not be found, started or reached."""


_BY_TYPE: Dict[str, Type[GymError]] = {
    cls.error_type: cls
    for cls in (InvalidRequest, NotFound, Unavailable, SandboxFailed, Timeout, Interrupted, Internal, Forbidden)
}


def error_for(error_type: Optional[str], message: str, status: int = 0) -> GymError:
    """The exception for an ``error_type`` (an unknown word keeps its text)."""
    word = error_type or "internal"
    cls = _BY_TYPE.get(word, GymError)
    return cls(message, error_type=word, status=status)


def error_from_body(status: int, body: bytes) -> GymError:
    """The exception for an error response (``{"error_type", "message"}``)."""
    import json

    obj: Any = None
    try:
        obj = json.loads(body.decode("utf-8", "replace")) if body else None
    except ValueError:
        obj = None
    if isinstance(obj, Mapping) and "error_type" in obj:
        return error_for(str(obj.get("error_type") or ""), str(obj.get("message") or ""), status)
    text = body.decode("utf-8", "replace").strip()[:500]
    return error_for("internal", f"HTTP {status} without an error object: {text!r}", status)
