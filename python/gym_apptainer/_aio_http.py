"""A small asyncio HTTP/1.1 client over a unix socket.

It speaks just what the service needs: requests with a Content-Length body
(bytes, or a file streamed in chunks), responses with Content-Length or
chunked bodies, keep-alive. Everything runs on the event loop
(asyncio.open_unix_connection); no threads.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, BinaryIO, Callable, Dict, List, Optional, Tuple

from . import _api
from .errors import Internal, ServiceConnectionError, error_from_body

CHUNK = 256 * 1024
STREAM_LIMIT = 1 << 20  # longest header line accepted
CONNECT_TIMEOUT_S = 10.0
# Idle connections kept for reuse; a burst wider than this dials anew.
MAX_IDLE = 128


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def alive(self) -> bool:
        # Idle, the server sends nothing: EOF (or an error) means it closed.
        return not (self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None)

    def close(self) -> None:
        self.writer.close()


class AsyncResponse:
    """A response whose head has been read; the body is read on demand."""

    def __init__(self, pool: "AsyncPool", conn: _Conn, status: int, headers: Dict[str, str]) -> None:
        self._pool, self._conn = pool, conn
        self.status, self.headers = status, headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        cl = headers.get("content-length")
        self._left: Optional[int] = int(cl) if cl is not None and not self._chunked else None
        self._chunk_left = 0
        self._eof = False
        self._done = False
        self._keep = headers.get("connection", "").lower() != "close"
        if self._left is None and not self._chunked:
            self._keep = False  # body runs to the connection's end
        self._line_buf = bytearray()

    async def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes of the body; b"" at its end."""
        if self._eof:
            return b""
        r = self._conn.reader
        try:
            if self._chunked:
                if self._chunk_left == 0:
                    size_line = await r.readline()
                    if not size_line:
                        raise Internal("the service closed the connection mid-response")
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await r.readline()) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return self._finish()
                    self._chunk_left = size
                data = await r.read(min(n, self._chunk_left))
                if not data:
                    raise Internal("the service closed the connection mid-response")
                self._chunk_left -= len(data)
                if self._chunk_left == 0:
                    await r.readexactly(2)
                return data
            if self._left is None:
                data = await r.read(n)
                return data or self._finish()
            if self._left == 0:
                return self._finish()
            data = await r.read(min(n, self._left))
            if not data:
                raise Internal("the service closed the connection mid-response")
            self._left -= len(data)
            return data
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            self.close()
            raise Internal(f"reading the service's response: {e}") from e

    def _finish(self) -> bytes:
        self._eof = True
        self.release()
        return b""

    async def read_all(self) -> bytes:
        buf = bytearray()
        while True:
            data = await self.read()
            if not data:
                return bytes(buf)
            buf += data

    async def readline(self) -> bytes:
        """The body's next line (ndjson), b"" at its end."""
        while True:
            i = self._line_buf.find(b"\n")
            if i >= 0:
                line = bytes(self._line_buf[: i + 1])
                del self._line_buf[: i + 1]
                return line
            data = await self.read()
            if not data:
                line, self._line_buf = bytes(self._line_buf), bytearray()
                return line
            self._line_buf += data

    def release(self) -> None:
        """Give a fully read connection back to the pool (else close it)."""
        if self._done:
            return
        self._done = True
        if self._eof and self._keep:
            self._pool.put(self._conn)
        else:
            self._conn.close()

    def close(self) -> None:
        """Abandon the response; closing the connection tells the service the
        caller went (a running exec is killed)."""
        if not self._done:
            self._done = True
            self._conn.close()


class AsyncPool:
    """Keep-alive connections to the service's socket, for one event loop."""

    def __init__(self, path_fn: Callable[[bool], Awaitable[str]], max_connections: Optional[int] = None) -> None:
        self._path_fn = path_fn
        self._idle: List[_Conn] = []
        self._sem = asyncio.Semaphore(max_connections) if max_connections else None

    def put(self, conn: _Conn) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()

    async def _get(self) -> Tuple[_Conn, bool]:
        while self._idle:
            c = self._idle.pop()
            if c.alive():
                return c, True
            c.close()
        path = await self._path_fn(False)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=STREAM_LIMIT), CONNECT_TIMEOUT_S
            )
        except asyncio.TimeoutError:
            raise ServiceConnectionError(f"connecting to {path}: no answer in {CONNECT_TIMEOUT_S:g} s") from None
        return _Conn(reader, writer), False

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()
        for c in idle:
            try:
                await c.writer.wait_closed()
            except Exception:
                pass

    async def request(
        self, call: _api.Call, body: Optional[BinaryIO] = None, length: Optional[int] = None
    ) -> AsyncResponse:
        """Send ``call`` and return the response after its head; a non-2xx
        answer is raised as the GymError its error object names."""
        if self._sem is not None:
            async with self._sem:
                return await self._request(call, body, length)
        return await self._request(call, body, length)

    async def _request(self, call: _api.Call, body: Optional[BinaryIO], length: Optional[int]) -> AsyncResponse:
        rediscovered = False
        while True:
            try:
                conn, reused = await self._get()
            except (ConnectionRefusedError, FileNotFoundError) as e:
                if rediscovered:
                    raise ServiceConnectionError(f"cannot reach the gym-apptainer service: {e}") from e
                # The daemon idled out (or was stopped): find it once more.
                rediscovered = True
                await self._path_fn(True)
                await self.close()
                continue
            except OSError as e:
                raise ServiceConnectionError(f"cannot reach the gym-apptainer service: {e}") from e
            try:
                status, headers = await self._exchange(conn, call, body, length)
            except (ConnectionError, asyncio.IncompleteReadError, _NoStatus) as e:
                conn.close()
                if reused and call.method != "POST" and (body is None or body.seekable()):
                    if body is not None:
                        body.seek(0)
                    continue
                raise ServiceConnectionError(f"the gym-apptainer service closed the connection: {e}") from e
            except OSError as e:
                conn.close()
                raise ServiceConnectionError(f"talking to the gym-apptainer service: {e}") from e
            except BaseException:
                conn.close()
                raise
            resp = AsyncResponse(self, conn, status, headers)
            try:
                _api.check_version(headers)
                if not 200 <= status < 300:
                    raise error_from_body(status, await resp.read_all())
            except BaseException:
                resp.close()
                raise
            return resp

    @staticmethod
    async def _exchange(
        conn: _Conn, call: _api.Call, body: Optional[BinaryIO], length: Optional[int]
    ) -> Tuple[int, Dict[str, str]]:
        if body is not None:
            size: Optional[int] = length
        elif call.body is not None:
            size = len(call.body)
        else:
            size = 0 if call.method in ("POST", "PUT") else None
        head = [f"{call.method} {call.path} HTTP/1.1"]
        head += [f"{k}: {v}" for k, v in _api.request_headers(call, size).items()]
        w = conn.writer
        try:
            w.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if call.body is not None and body is None:
                w.write(call.body)
            elif body is not None:
                while True:
                    chunk = body.read(CHUNK)
                    if not chunk:
                        break
                    w.write(chunk)
                    await w.drain()
            await w.drain()
        except (BrokenPipeError, ConnectionResetError) as e:
            # The service may have answered (an error) without reading the
            # whole body, then closed: that answer is what to report.
            try:
                return await AsyncPool._read_head(conn.reader)
            except Exception:
                raise e from None
        return await AsyncPool._read_head(conn.reader)

    @staticmethod
    async def _read_head(r: asyncio.StreamReader) -> Tuple[int, Dict[str, str]]:
        while True:
            line = await r.readline()
            if not line:
                raise _NoStatus("no response")
            parts = line.decode("latin-1").split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise Internal(f"the service answered with a bad status line {line[:80]!r}")
            status = int(parts[1])
            headers: Dict[str, str] = {}
            while True:
                h = await r.readline()
                if h in (b"\r\n", b"\n"):
                    break
                if not h:
                    raise _NoStatus("connection closed in the response head")
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if status >= 200 or status == 101:
                return status, headers
            # 1xx (e.g. 100 Continue): the real answer follows.


class _NoStatus(ConnectionError):
    pass

