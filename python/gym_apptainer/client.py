"""The synchronous client: ``Client`` and its ``Sandbox`` objects.

    with Client() as c, c.create(image="/images/busybox.sif") as sb:
        r = sb.exec("echo hi")          # ExecResult(exit_code=0, stdout="hi\\n", ...)
        with sb.exec_stream("make") as st:
            for chunk in st:             # OutputChunk("stdout", b"...") as produced
                ...
        print(st.exit.exit_code)

A Client is safe to share between threads (pooled connections).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

from . import _api, _files
from ._sync_http import Pool, Response, file_length, json_of
from .discovery import Locator, discover
from .errors import Internal, error_for
from .types import (
    Endpoint,
    ExecExit,
    ExecResult,
    GcResult,
    OutputChunk,
    SandboxInfo,
    SandboxList,
    ServiceInfo,
    decode_event,
)

PathLike = Union[str, "os.PathLike[str]"]


class Client:
    """A connection to the gym-apptainer service.

    ``socket``: the service's unix socket (default: $GYM_SERVICE_SOCKET, else
    the socket ``gym-host [--config config] serve --json`` prints, starting
    the service as daemon mode would). ``gym_host``: the gym-host binary
    (default: $GYM_HOST, else gym-host from PATH).
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        *,
        config: Optional[PathLike] = None,
        gym_host: Optional[PathLike] = None,
    ) -> None:
        self._loc = Locator(
            socket=socket,
            gym_host=os.fspath(gym_host) if gym_host else None,
            config=os.fspath(config) if config else None,
        )
        self._path: Optional[str] = None
        self._lock = threading.Lock()
        self._pool = Pool(self._socket_path)

    def _socket_path(self, refresh: bool) -> str:
        with self._lock:
            if self._path is None or (refresh and self._loc.rediscoverable):
                self._path = discover(self._loc)
            return self._path

    @property
    def socket_path(self) -> str:
        """The service's socket (found, or started, on first use)."""
        return self._socket_path(False)

    # -- plumbing --

    def _json(self, call: _api.Call) -> Any:
        return json_of(self._pool.request(call))

    # -- service --

    def info(self) -> ServiceInfo:
        """The service's API version, version and pid."""
        return _api.read_info(self._json(_api.info()))

    def create(
        self,
        image: str,
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        files: Optional[Mapping[str, str]] = None,
        resources: Optional[Mapping[str, Any]] = None,
        binds: Optional[List[str]] = None,
        ttl_s: Optional[float] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> "Sandbox":
        """Create a sandbox and return it once it is ready (probe passed).

        ``files`` maps absolute paths in the sandbox to text seeded before the
        first command; ``resources`` takes cpu, memory_mib, gpu, gpu_type.
        """
        call = _api.create(
            image, env=env, workdir=workdir, files=files, resources=resources, binds=binds, ttl_s=ttl_s, metadata=metadata
        )
        info = _api.read_status(self._json(call))
        return Sandbox(self, info.id, info)

    def sandbox(self, sandbox_id: str) -> "Sandbox":
        """A Sandbox object for an existing id (no request is made)."""
        return Sandbox(self, sandbox_id)

    def list(self) -> SandboxList:
        """Every sandbox of this state directory (and handles it could not read)."""
        return _api.read_list(self._json(_api.list_sandboxes()))

    def status(self, sandbox_id: str) -> SandboxInfo:
        """A sandbox's status; a sandbox closed in the last 7 days is "stopped"."""
        return _api.read_status(self._json(_api.status(sandbox_id)))

    def close(self, sandbox_id: str) -> None:
        """Close a sandbox (closing twice is success)."""
        self._json(_api.close(sandbox_id))

    def gc(self, *, dry_run: bool = False, all_owners: bool = False) -> GcResult:
        """Close what is stopped, leaked or past its ttl (as ``gym-host gc``)."""
        return _api.read_gc(self._json(_api.gc(dry_run, all_owners)))

    def close_all(self, *, all_owners: bool = False) -> GcResult:
        """Close every sandbox of this owner (all owners' with all_owners)."""
        return _api.read_gc(self._json(_api.close_all(all_owners)))

    def endpoint(self, sandbox_id: str, port: int) -> Endpoint:
        """Where a client reaches ``port`` of a server in the sandbox."""
        return _api.read_endpoint(self._json(_api.endpoint(sandbox_id, port)))

    # -- exec --

    def exec(self, sandbox_id: str, command: str, **kw: Any) -> ExecResult:
        """Run ``command`` (with ``sh -c``) and return its result; see Sandbox.exec."""
        return ExecResult.from_json(self._json(_api.exec_(sandbox_id, command, **kw)))

    def exec_stream(self, sandbox_id: str, command: str, **kw: Any) -> "ExecStream":
        """Run ``command`` and stream its output; see Sandbox.exec_stream."""
        kw["stream"] = True
        return ExecStream(self._pool.request(_api.exec_(sandbox_id, command, **kw)))

    def kill_exec(self, sandbox_id: str, exec_id: str) -> None:
        """Kill every process of a running exec (by the exec_id it was given)."""
        self._json(_api.kill_exec(sandbox_id, exec_id))

    # -- files --

    def upload(self, sandbox_id: str, local_path: PathLike, remote_path: str, *, mode: Optional[int] = None) -> int:
        """Copy a local file to ``remote_path`` in the sandbox, streamed;
        returns the bytes written."""
        call = _api.upload(sandbox_id, remote_path, mode)
        with _files.open_source(local_path) as f:
            obj = json_of(self._pool.request(call, f, file_length(f)))
        return int(obj.get("bytes") or 0)

    def download(self, sandbox_id: str, remote_path: str, local_path: PathLike) -> int:
        """Copy ``remote_path`` of the sandbox to a local file, streamed; makes
        missing parent directories; the file appears whole or not at all."""
        r = self._pool.request(_api.download(sandbox_id, remote_path))
        try:
            with _files.AtomicWriter(local_path) as out:
                while True:
                    chunk = r.read(_files.CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                return out.size
        finally:
            r.close()

    def close_connections(self) -> None:
        """Close pooled connections (the service keeps running)."""
        self._pool.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_connections()


class ExecStream:
    """A running exec's output, iterated as OutputChunks while produced.

    After the iteration ends, ``exit`` holds the ExecExit. Leaving early
    (``close()`` or the ``with`` block) disconnects, and the service kills
    the command. An ``error`` event raises its GymError.
    """

    def __init__(self, resp: Response) -> None:
        self._resp = resp
        self.exit: Optional[ExecExit] = None

    def __iter__(self) -> Iterator[OutputChunk]:
        try:
            for line in self._resp.lines():
                if not line.strip():
                    continue
                ev = decode_event(_api.load_json(line))
                if isinstance(ev, OutputChunk):
                    yield ev
                elif isinstance(ev, ExecExit):
                    self.exit = ev
                else:
                    raise error_for(str(ev.get("error_type") or "internal"), str(ev.get("message") or ""))
        finally:
            self._resp.close() if self.exit is None else self._resp.release()
        if self.exit is None:
            raise Internal("the exec stream ended without an exit event")

    def result(self) -> ExecResult:
        """Read the stream to its end and gather it into an ExecResult."""
        out: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        for chunk in self:
            out[chunk.stream] += chunk.data
        ex = self.exit
        assert ex is not None
        return ExecResult(
            exit_code=ex.exit_code,
            stdout=out["stdout"].decode("utf-8", "replace"),
            stderr=out["stderr"].decode("utf-8", "replace"),
            error_type=ex.error_type,
            message=ex.message,
            exec_id=ex.exec_id,
            stdout_bytes=len(out["stdout"]),
            stderr_bytes=len(out["stderr"]),
        )

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> "ExecStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Sandbox:
    """One sandbox; a context manager that closes it on exit."""

    def __init__(self, client: Client, sandbox_id: str, info: Optional[SandboxInfo] = None) -> None:
        self.client = client
        self.id = sandbox_id
        self.info = info

    def exec(
        self,
        command: str,
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_s: Optional[float] = None,
        user: Union[str, int, None] = None,
        stdin: _api.Stdin = None,
        exec_id: Optional[str] = None,
        max_output: Optional[int] = None,
    ) -> ExecResult:
        """Run ``command`` with ``sh -c`` and wait for it.

        ``timeout_s`` as NeMo Gym reads it: None = the config's default, 0 =
        no time at all (times out at once), > 0 = seconds; a timeout kills
        every process the command started. ``env`` overlays the sandbox's
        env; ``user`` is "root"/0 (fakeroot) or another user; ``stdin`` is
        bytes or text. A non-zero exit is a result, not an exception;
        ``error_type`` is set (exit 125) when the sandbox or the time failed.
        """
        return self.client.exec(
            self.id, command, cwd=cwd, env=env, timeout_s=timeout_s, user=user, stdin=stdin,
            exec_id=exec_id, max_output=max_output,
        )

    def exec_stream(
        self,
        command: str,
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_s: Optional[float] = None,
        user: Union[str, int, None] = None,
        stdin: _api.Stdin = None,
        exec_id: Optional[str] = None,
    ) -> ExecStream:
        """Like ``exec``, but the output arrives as it is produced."""
        return self.client.exec_stream(
            self.id, command, cwd=cwd, env=env, timeout_s=timeout_s, user=user, stdin=stdin, exec_id=exec_id
        )

    def upload(self, local_path: PathLike, remote_path: str, *, mode: Optional[int] = None) -> int:
        """Copy a local file to ``remote_path``, streamed; ``mode`` is the
        file's permission bits in the sandbox (default 0o644)."""
        return self.client.upload(self.id, local_path, remote_path, mode=mode)

    def download(self, remote_path: str, local_path: PathLike) -> int:
        return self.client.download(self.id, remote_path, local_path)

    def status(self) -> SandboxInfo:
        return self.client.status(self.id)

    def endpoint(self, port: int) -> Endpoint:
        return self.client.endpoint(self.id, port)

    def kill_exec(self, exec_id: str) -> None:
        self.client.kill_exec(self.id, exec_id)

    def close(self) -> None:
        self.client.close(self.id)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox({self.id!r})"

