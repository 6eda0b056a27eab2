"""The asyncio client: ``AsyncClient`` and its ``AsyncSandbox`` objects.

    async with AsyncClient() as c:
        async with await c.create(image="/images/busybox.sif") as sb:
            r = await sb.exec("echo hi")
            async with sb.exec_stream("make") as st:
                async for chunk in st:       # OutputChunk as produced
                    ...
            print(st.exit.exit_code)

One AsyncClient belongs to one event loop. Requests are real asyncio I/O on
the service's unix socket, so thousands of execs can be in flight at once.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Union

from . import _api, _files
from ._aio_http import AsyncPool, AsyncResponse
from .discovery import Locator, adiscover
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


class AsyncClient:
    """Asyncio connection to the gym-apptainer service (see ``Client`` for
    ``socket``, ``config`` and ``gym_host``). ``max_connections`` caps the
    requests in flight (default: no cap)."""

    def __init__(
        self,
        socket: Optional[str] = None,
        *,
        config: Optional[PathLike] = None,
        gym_host: Optional[PathLike] = None,
        max_connections: Optional[int] = None,
    ) -> None:
        self._loc = Locator(
            socket=socket,
            gym_host=os.fspath(gym_host) if gym_host else None,
            config=os.fspath(config) if config else None,
        )
        self._path: Optional[str] = None
        self._found: Optional[asyncio.Lock] = None
        self._pool = AsyncPool(self._socket_path, max_connections)

    async def _socket_path(self, refresh: bool) -> str:
        if self._path is not None and not refresh:
            return self._path
        if self._found is None:
            self._found = asyncio.Lock()
        async with self._found:
            if self._path is None or (refresh and self._loc.rediscoverable):
                self._path = await adiscover(self._loc)
            return self._path

    async def socket_path(self) -> str:
        """The service's socket (found, or started, on first use)."""
        return await self._socket_path(False)

    async def _json(self, call: _api.Call) -> Any:
        return _api.load_json(await _read_all(await self._pool.request(call)))

    async def info(self) -> ServiceInfo:
        return _api.read_info(await self._json(_api.info()))

    async def create(
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
    ) -> "AsyncSandbox":
        """Create a sandbox; returns once it is ready (see Client.create)."""
        call = _api.create(
            image, env=env, workdir=workdir, files=files, resources=resources, binds=binds, ttl_s=ttl_s, metadata=metadata
        )
        info = _api.read_status(await self._json(call))
        return AsyncSandbox(self, info.id, info)

    def sandbox(self, sandbox_id: str) -> "AsyncSandbox":
        """An AsyncSandbox for an existing id (no request is made)."""
        return AsyncSandbox(self, sandbox_id)

    async def list(self) -> SandboxList:
        return _api.read_list(await self._json(_api.list_sandboxes()))

    async def status(self, sandbox_id: str) -> SandboxInfo:
        return _api.read_status(await self._json(_api.status(sandbox_id)))

    async def close(self, sandbox_id: str) -> None:
        await self._json(_api.close(sandbox_id))

    async def gc(self, *, dry_run: bool = False, all_owners: bool = False) -> GcResult:
        return _api.read_gc(await self._json(_api.gc(dry_run, all_owners)))

    async def close_all(self, *, all_owners: bool = False) -> GcResult:
        return _api.read_gc(await self._json(_api.close_all(all_owners)))

    async def endpoint(self, sandbox_id: str, port: int) -> Endpoint:
        return _api.read_endpoint(await self._json(_api.endpoint(sandbox_id, port)))

    async def exec(self, sandbox_id: str, command: str, **kw: Any) -> ExecResult:
        """Run ``command``; see Sandbox.exec for the arguments. Cancelling the
        task disconnects, and the service kills the command."""
        return ExecResult.from_json(await self._json(_api.exec_(sandbox_id, command, **kw)))

    def exec_stream(self, sandbox_id: str, command: str, **kw: Any) -> "AsyncExecStream":
        kw["stream"] = True
        return AsyncExecStream(self._pool, _api.exec_(sandbox_id, command, **kw))

    async def kill_exec(self, sandbox_id: str, exec_id: str) -> None:
        await self._json(_api.kill_exec(sandbox_id, exec_id))

    async def upload(self, sandbox_id: str, local_path: PathLike, remote_path: str, *, mode: Optional[int] = None) -> int:
        """Copy a local file into the sandbox, streamed; returns its bytes."""
        call = _api.upload(sandbox_id, remote_path, mode)
        with _files.open_source(local_path) as f:
            size = os.fstat(f.fileno()).st_size
            obj = _api.load_json(await _read_all(await self._pool.request(call, f, size)))
        return int(obj.get("bytes") or 0)

    async def download(self, sandbox_id: str, remote_path: str, local_path: PathLike) -> int:
        """Copy a sandbox file to a local path, streamed (parents made; the
        file appears whole or not at all); returns its bytes."""
        r = await self._pool.request(_api.download(sandbox_id, remote_path))
        try:
            with _files.AtomicWriter(local_path) as out:
                while True:
                    chunk = await r.read(_files.CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                return out.size
        finally:
            r.close()

    async def aclose(self) -> None:
        """Close pooled connections (the service keeps running)."""
        await self._pool.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def _read_all(r: AsyncResponse) -> bytes:
    """The whole body; cancelled or failed, the connection is closed (so
    the service stops the call) rather than left half read."""
    try:
        return await r.read_all()
    except BaseException:
        r.close()
        raise


class AsyncExecStream:
    """A running exec's output as OutputChunks (``async for``); ``exit``
    holds the ExecExit at the end. Use as ``async with``: leaving early
    disconnects and the service kills the command."""

    def __init__(self, pool: AsyncPool, call: _api.Call) -> None:
        self._pool, self._call = pool, call
        self._resp: Optional[AsyncResponse] = None
        self.exit: Optional[ExecExit] = None

    async def start(self) -> "AsyncExecStream":
        if self._resp is None:
            self._resp = await self._pool.request(self._call)
        return self

    async def __aenter__(self) -> "AsyncExecStream":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()

    async def __aiter__(self) -> AsyncIterator[OutputChunk]:
        resp = (await self.start())._resp
        assert resp is not None
        try:
            while True:
                line = await resp.readline()
                if not line:
                    break
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
            if self.exit is None:
                resp.close()
        if self.exit is None:
            raise Internal("the exec stream ended without an exit event")

    async def result(self) -> ExecResult:
        """Read the stream to its end and gather it into an ExecResult."""
        out: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        async for chunk in self:
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


class AsyncSandbox:
    """One sandbox; ``async with`` closes it on exit."""

    def __init__(self, client: AsyncClient, sandbox_id: str, info: Optional[SandboxInfo] = None) -> None:
        self.client = client
        self.id = sandbox_id
        self.info = info

    async def exec(
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
        """Run ``command`` with ``sh -c`` (same meaning as Sandbox.exec)."""
        return await self.client.exec(
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
    ) -> AsyncExecStream:
        """Like ``exec``, but the output arrives as it is produced."""
        return self.client.exec_stream(
            self.id, command, cwd=cwd, env=env, timeout_s=timeout_s, user=user, stdin=stdin, exec_id=exec_id
        )

    async def upload(self, local_path: PathLike, remote_path: str, *, mode: Optional[int] = None) -> int:
        """Copy a local file to ``remote_path``, streamed; ``mode`` is the
        file's permission bits in the sandbox (default 0o644)."""
        return await self.client.upload(self.id, local_path, remote_path, mode=mode)

    async def download(self, remote_path: str, local_path: PathLike) -> int:
        return await self.client.download(self.id, remote_path, local_path)

    async def status(self) -> SandboxInfo:
        return await self.client.status(self.id)

    async def endpoint(self, port: int) -> Endpoint:
        return await self.client.endpoint(self.id, port)

    async def kill_exec(self, exec_id: str) -> None:
        await self.client.kill_exec(self.id, exec_id)

    async def close(self) -> None:
        await self.client.close(self.id)

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSandbox({self.id!r})"
