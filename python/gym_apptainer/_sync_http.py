"""HTTP/1.1 over a unix socket for the synchronous client (http.client).

Connections are kept alive and pooled, so one ``Client`` can be used from
many threads: each request takes an idle connection (or dials one) and gives
it back once its response has been read to the end.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, Optional

from . import _api
from .errors import GymError, ServiceConnectionError, error_from_body

CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
# Idle connections kept for reuse; a burst wider than this dials anew.
MAX_IDLE = 64


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is a unix socket at ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__("gym-apptainer", timeout=CONNECT_TIMEOUT_S)
        self.socket_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(CONNECT_TIMEOUT_S)
            s.connect(self.socket_path)
            # Calls last as long as their command: the service times them.
            s.settimeout(None)
        except OSError:
            s.close()
            raise
        self.sock = s


class Response:
    """A response whose body may still be unread (streams)."""

    def __init__(self, pool: "Pool", conn: UnixHTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._pool, self._conn, self._resp = pool, conn, resp
        self.status = resp.status
        self.headers: Dict[str, str] = {k.lower(): v for k, v in resp.getheaders()}
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._resp.read() if n < 0 else self._resp.read(n)
        if n < 0 or not data:
            self.release()
        return data

    def lines(self) -> Iterator[bytes]:
        """The body's lines (ndjson), as they arrive."""
        while True:
            line = self._resp.readline()
            if not line:
                self.release()
                return
            yield line

    def release(self) -> None:
        """Give the connection back (fully read) or drop it (not)."""
        if self._done:
            return
        self._done = True
        if self._resp.isclosed() and not self._resp.will_close:
            self._pool.put(self._conn)
        else:
            self._conn.close()

    def close(self) -> None:
        """Abandon the response: the connection is closed, which tells the
        service the caller went (a running exec is killed)."""
        if not self._done:
            self._done = True
            self._conn.close()


class Pool:
    """Idle keep-alive connections to one socket path."""

    def __init__(self, path_fn: Callable[[bool], str]) -> None:
        # path_fn(refresh) gives the socket path; refresh=True asks to find
        # the service again (a daemon that idled out is started anew).
        self._path_fn = path_fn
        self._idle: List[UnixHTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get(self) -> "tuple[UnixHTTPConnection, bool]":
        if os.getpid() != self._pid:
            # A forked child must not talk on its parent's connections.
            with self._lock:
                stale, self._idle, self._pid = self._idle, [], os.getpid()
            for c in stale:
                c.close()
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _idle_alive(conn):
                return conn, True
            conn.close()
        return UnixHTTPConnection(self._path_fn(False)), False

    def put(self, conn: UnixHTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE and os.getpid() == self._pid:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def request(self, call: _api.Call, body: Optional[BinaryIO] = None, length: Optional[int] = None) -> Response:
        """Send ``call`` (with ``body`` streamed from a file when given) and
        return the response once its head has arrived; a non-2xx answer is
        raised as the GymError its error object names."""
        rediscovered = False
        while True:
            conn, reused = self.get()
            try:
                resp = self._send(conn, call, body, length)
            except (ConnectionRefusedError, FileNotFoundError) as e:
                conn.close()
                # The daemon idled out (or was stopped): find it once more.
                if not rediscovered:
                    rediscovered = True
                    self._refresh(e)
                    continue
                raise ServiceConnectionError(f"cannot reach the gym-apptainer service: {e}") from e
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                # A kept-alive connection the server closed just as we sent:
                # sent again, except a POST, which could run twice.
                if reused and call.method != "POST" and (body is None or body.seekable()):
                    if body is not None:
                        body.seek(0)
                    continue
                raise ServiceConnectionError(f"the gym-apptainer service closed the connection: {e}") from e
            except OSError as e:
                conn.close()
                raise ServiceConnectionError(f"cannot reach the gym-apptainer service: {e}") from e
            r = Response(self, conn, resp)
            try:
                _api.check_version(r.headers)
                if not 200 <= r.status < 300:
                    raise error_from_body(r.status, r.read())
            except BaseException:
                r.close()
                raise
            return r

    def _refresh(self, cause: Exception) -> None:
        try:
            self._path_fn(True)
        except GymError:
            raise
        except Exception as e:  # pragma: no cover - path_fn raises GymErrors
            raise ServiceConnectionError(f"cannot reach the gym-apptainer service: {cause}") from e
        self.close()

    @staticmethod
    def _send(
        conn: UnixHTTPConnection, call: _api.Call, body: Optional[BinaryIO], length: Optional[int]
    ) -> http.client.HTTPResponse:
        payload: Any = call.body if body is None else body
        size = len(call.body) if body is None and call.body is not None else length
        headers = _api.request_headers(call, size if payload is not None else 0 if call.method in ("POST", "PUT") else None)
        conn.putrequest(call.method, call.path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            if isinstance(payload, (bytes, bytearray)):
                conn.send(payload)
            elif payload is not None:
                while True:
                    chunk = payload.read(CHUNK)
                    if not chunk:
                        break
                    conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The service may have answered (an error) without reading the
            # whole body, then closed: that answer is what to report.
            try:
                return conn.getresponse()
            except Exception:
                raise e from None
        return conn.getresponse()


def _idle_alive(conn: UnixHTTPConnection) -> bool:
    """An idle connection is usable while nothing is readable on it (the
    server sends nothing unasked, so readable means it closed it)."""
    if conn.sock is None:
        return False
    p = select.poll()
    p.register(conn.sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return not p.poll(0)


def file_length(f: BinaryIO) -> int:
    """The bytes left to read in a regular file."""
    st = os.fstat(f.fileno())
    return st.st_size - f.tell()


def json_of(r: Response) -> Mapping[str, Any]:
    """The JSON body; interrupted (Ctrl-C) or failed, the connection is
    closed (so the service stops the call) rather than left half read."""
    try:
        data = r.read()
    except BaseException:
        r.close()
        raise
    return _api.load_json(data)
