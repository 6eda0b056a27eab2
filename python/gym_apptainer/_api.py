"""The service API v1 as data: request builders and response readers.

Both clients (sync and asyncio) build their requests here and read the
answers here, so the two speak exactly the same protocol and only differ in
how bytes move.
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Union
from urllib.parse import quote, urlencode

from .errors import Internal, InvalidRequest
from .types import Endpoint, GcResult, SandboxInfo, SandboxList, ServiceInfo

API_VERSION = 1
VERSION_HEADER = "gym-api-version"
USER_AGENT = "gym-apptainer-python/1"

Stdin = Union[bytes, bytearray, memoryview, str, None]


@dataclass
class Call:
    """One HTTP request: method, path with query, optional JSON body."""

    method: str
    path: str
    body: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)


def _json_call(method: str, path: str, obj: Optional[Mapping[str, Any]] = None) -> Call:
    if obj is None:
        return Call(method, path)
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Call(method, path, body, {"Content-Type": "application/json"})


def _sid(sandbox_id: str) -> str:
    if not isinstance(sandbox_id, str) or not sandbox_id:
        raise InvalidRequest("sandbox id must be a non-empty string")
    return quote(sandbox_id, safe="")


def _remote(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidRequest(f"remote path must be absolute, got {path!r}")
    return urlencode({"path": path})


def request_headers(call: Call, content_length: Optional[int]) -> Dict[str, str]:
    """The headers every request carries."""
    h = {"Host": "gym-apptainer", "User-Agent": USER_AGENT, "Accept": "application/json"}
    h.update(call.headers)
    if content_length is not None:
        h["Content-Length"] = str(content_length)
    return h


def check_version(headers: Mapping[str, str]) -> None:
    """Refuse an answer that is not from an API v1 gym-apptainer service."""
    got = headers.get(VERSION_HEADER)
    if got is None:
        raise Internal("the socket's server is not a gym-apptainer service (no Gym-Api-Version header)")
    if got.strip() != str(API_VERSION):
        raise Internal(f"gym-apptainer service speaks API version {got}, this client {API_VERSION}: upgrade one")


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8")) if body else {}
    except ValueError as e:
        raise Internal(f"the service sent invalid JSON: {e}") from None


# --- timeouts -------------------------------------------------------------


def timeout_field(timeout_s: Optional[float]) -> Optional[float]:
    """NeMo Gym's timeout_s as the API wants it: None = the config's default,
    0 = no time at all, > 0 = seconds. Negative or non-finite is invalid."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise InvalidRequest(f"timeout_s must be a number of seconds or None, got {timeout_s!r}")
    if timeout_s < 0 or math.isnan(timeout_s) or math.isinf(timeout_s):
        raise InvalidRequest(f"timeout_s must be >= 0 and finite, got {timeout_s!r}")
    return timeout_s


# --- builders -------------------------------------------------------------


def info() -> Call:
    return Call("GET", "/v1/info")


def create(
    image: str,
    *,
    env: Optional[Mapping[str, str]] = None,
    workdir: Optional[str] = None,
    files: Optional[Mapping[str, str]] = None,
    resources: Optional[Mapping[str, Any]] = None,
    binds: Optional[list] = None,
    ttl_s: Optional[float] = None,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Call:
    if not isinstance(image, str) or not image:
        raise InvalidRequest("image is required")
    body: Dict[str, Any] = {"image": local_image(image)}
    if env:
        body["env"] = {str(k): str(v) for k, v in env.items()}
    if workdir:
        body["workdir"] = workdir
    if files:
        body["files"] = {str(k): str(v) for k, v in files.items()}
    if resources:
        body["resources"] = {k: v for k, v in resources.items() if v is not None}
    if binds:
        body["binds"] = [str(b) for b in binds]
    if ttl_s is not None:
        body["ttl_s"] = int(math.ceil(ttl_s))
    if metadata:
        body["metadata"] = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    return _json_call("POST", "/v1/sandboxes", body)


def local_image(image: str) -> str:
    """A relative path to a local image made absolute against this process's
    working directory (the service's is /), as NeMo Gym's provider reads it;
    URIs and bare registry names are left as they are."""
    if "://" in image or image.startswith("/") or ":" in image.split("/")[0] and not os.path.exists(image):
        return image
    if image.startswith(".") or image.endswith(".sif") or os.path.exists(image):
        return os.path.abspath(image)
    return image


def list_sandboxes() -> Call:
    return Call("GET", "/v1/sandboxes")


def status(sandbox_id: str) -> Call:
    return Call("GET", f"/v1/sandboxes/{_sid(sandbox_id)}")


def close(sandbox_id: str) -> Call:
    return Call("DELETE", f"/v1/sandboxes/{_sid(sandbox_id)}")


def exec_(
    sandbox_id: str,
    command: str,
    *,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout_s: Optional[float] = None,
    user: Union[str, int, None] = None,
    stdin: Stdin = None,
    exec_id: Optional[str] = None,
    max_output: Optional[int] = None,
    stream: bool = False,
) -> Call:
    if not isinstance(command, str):
        raise InvalidRequest(f"command must be a string, got {type(command).__name__}")
    body: Dict[str, Any] = {"command": command, "timeout_s": timeout_field(timeout_s)}
    if cwd is not None:
        body["cwd"] = cwd
    if env:
        body["env"] = {str(k): str(v) for k, v in env.items()}
    if user is not None:
        # NeMo Gym: "root" or 0 is root; any other name or uid is that user.
        body["user"] = "root" if user == 0 and not isinstance(user, bool) else str(user)
    if stdin is not None:
        if isinstance(stdin, str):
            body["stdin"] = stdin
        else:
            body["stdin_b64"] = base64.b64encode(bytes(stdin)).decode()
    if exec_id:
        body["exec_id"] = exec_id
    if max_output is not None:
        body["max_output"] = int(max_output)
    if stream:
        body["stream"] = True
    return _json_call("POST", f"/v1/sandboxes/{_sid(sandbox_id)}/exec", body)


def kill_exec(sandbox_id: str, exec_id: str) -> Call:
    return _json_call("POST", f"/v1/sandboxes/{_sid(sandbox_id)}/kill_exec", {"exec_id": exec_id})


def upload(sandbox_id: str, remote_path: str, mode: Optional[int] = None) -> Call:
    query = _remote(remote_path)
    if mode is not None:
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise InvalidRequest(f"mode must be permission bits such as 0o644, got {mode!r}")
        query += f"&mode={mode:04o}"
    return Call(
        "PUT",
        f"/v1/sandboxes/{_sid(sandbox_id)}/files?{query}",
        headers={"Content-Type": "application/octet-stream"},
    )


def download(sandbox_id: str, remote_path: str) -> Call:
    return Call("GET", f"/v1/sandboxes/{_sid(sandbox_id)}/files?{_remote(remote_path)}")


def endpoint(sandbox_id: str, port: int) -> Call:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidRequest(f"port must be an integer between 1 and 65535, got {port!r}")
    return Call("GET", f"/v1/sandboxes/{_sid(sandbox_id)}/endpoint?port={port}")


def gc(dry_run: bool = False, all_owners: bool = False) -> Call:
    return _json_call("POST", "/v1/gc", {"dry_run": bool(dry_run), "all_owners": bool(all_owners)})


def close_all(all_owners: bool = False) -> Call:
    return _json_call("POST", "/v1/close_all", {"all_owners": bool(all_owners)})


# --- readers --------------------------------------------------------------


def read_info(obj: Mapping[str, Any]) -> ServiceInfo:
    return ServiceInfo(int(obj.get("api_version") or 0), str(obj.get("version") or ""), int(obj.get("pid") or 0))


def read_list(obj: Mapping[str, Any]) -> SandboxList:
    return SandboxList(
        [SandboxInfo.from_json(s) for s in obj.get("sandboxes") or []],
        [dict(s) for s in obj.get("skipped") or []],
    )


def read_status(obj: Mapping[str, Any]) -> SandboxInfo:
    return SandboxInfo.from_json(obj)


def read_gc(obj: Mapping[str, Any]) -> GcResult:
    return GcResult(
        [str(i) for i in obj.get("closed") or []],
        [dict(f) for f in obj.get("failed") or []],
        [dict(f) for f in obj.get("skipped") or []],
    )


def read_endpoint(obj: Mapping[str, Any]) -> Endpoint:
    return Endpoint(str(obj.get("endpoint") or ""), {str(k): str(v) for k, v in (obj.get("headers") or {}).items()})
