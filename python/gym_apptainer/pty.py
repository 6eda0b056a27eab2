"""Interactive terminals in a sandbox: ``PtySession`` over the service's
``POST /v1/sandboxes/ID/pty`` (docs/api.md).

    async with AsyncClient() as c:
        sb = await c.create(image="/images/busybox.sif")
        async with await open_pty(c, sb.id, rows=30, cols=100) as term:
            await term.write(b"stty size; exit 7\\n")
            async for chunk in term:          # terminal output until exit
                print(chunk)
            print(await term.wait_exit())     # 7

A session is one connection: the request, the service's ``101 Switching
Protocols``, then newline-delimited JSON frames both ways. Closing the
session (or losing the connection) kills its program. ``PtySession`` has the
shape of NeMo Gym's ``SandboxPtySession`` (read, read_stderr, async
iteration, write, resize, send_signal, wait_exit, close, async context
manager); ``GymApptainerProvider.create_pty`` returns one.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import signal as _signal
from typing import Any, AsyncIterator, Deque, Dict, Mapping, Optional, Union

from . import _api
from .errors import GymError, Internal, InvalidRequest, error_from_body

try:  # NeMo Gym's own error type when it is installed, so its callers catch it.
    from nemo_gym.sandbox.providers.base import SandboxPtyError  # type: ignore[import-not-found]
except ImportError:
    from ._nemo_types import SandboxPtyError

PROTOCOL = "gym-pty/1"
# Frames the service sends are at most 64 KiB of data (base64: ~88 KiB);
# error messages are short. A line over this is a broken stream.
LINE_LIMIT = 1 << 20
# Stdin goes out in pieces the service takes in one frame each.
WRITE_CHUNK = 256 * 1024
# Output held for a caller that does not read; past it the session stops
# reading the connection, and the program waits (as on a real terminal).
MAX_BUFFERED = 64 << 20
CONNECT_TIMEOUT_S = 10.0


class PtyError(SandboxPtyError):
    """A PTY session failed outside its program's exit (NeMo Gym's
    ``SandboxPtyError``). ``error_type`` is the service's word for why
    (``not_found``, ``sandbox``, ``unavailable``, ...; ``closed`` when the
    connection was lost or closed first)."""

    def __init__(self, message: str, error_type: str = "internal") -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _signal_name(sig: Union[str, int]) -> str:
    """``"SIGTERM"`` for "SIGTERM", "term", 15 or signal.SIGTERM."""
    if isinstance(sig, int) and not isinstance(sig, bool):
        try:
            return _signal.Signals(sig).name
        except ValueError:
            raise ValueError(f"{sig} is not a signal number") from None
    if not isinstance(sig, str):
        raise ValueError(f"signal must be a name such as 'SIGTERM', got {sig!r}")
    name = sig.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in _signal.Signals.__members__ or name in ("SIG_DFL", "SIG_IGN"):
        raise ValueError(f"{sig!r} is not a signal name (SIGINT, SIGTERM, SIGKILL, SIGHUP, ...)")
    return name


def _size(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 0xFFFF:
        raise ValueError(f"{name} must be an integer from 1 to 65535, got {v!r}")
    return v


class _Stream:
    """One output stream's chunks, read in order. Waiting is on an Event,
    so a read that times out never loses a chunk."""

    def __init__(self) -> None:
        self.chunks: Deque[bytes] = collections.deque()
        self.size = 0
        self.ended = False
        self.error: Optional[BaseException] = None
        self.changed = asyncio.Event()

    def put(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self.changed.set()

    def end(self, error: Optional[BaseException] = None) -> None:
        if not self.ended:
            self.ended, self.error = True, error
        self.changed.set()

    async def get(self, timeout_s: Optional[float], room: asyncio.Event) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if self.chunks:
                data = self.chunks.popleft()
                self.size -= len(data)
                room.set()
                return data
            if self.ended:
                if self.error is not None:
                    raise self.error
                return b""
            self.changed.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(f"no output within {timeout_s:g} s")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no output within {timeout_s:g} s") from None


class PtySession:
    """One live terminal (or pipe-mode) session; see the module's doc.

    ``session_id`` is the exec id (``kill_exec`` ends it from elsewhere);
    ``mode`` is ``"pty"`` or ``"pipe"``. After the program exited,
    ``exit_code`` holds its code, and ``error_type``/``message`` say when the
    runtime ended it (exit code 125, ``error_type`` "sandbox" or "timeout").
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: str, mode: str) -> None:
        self._reader, self._writer = reader, writer
        self.session_id = session_id
        self.mode: Optional[str] = mode
        self.exit_code: Optional[int] = None
        self.error_type: Optional[str] = None
        self.message = ""
        self._out, self._err = _Stream(), _Stream()
        self._room = asyncio.Event()
        self._room.set()
        self._exit: "asyncio.Future[int]" = asyncio.get_running_loop().create_future()
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._pump_task = asyncio.ensure_future(self._pump())

    # -- state --

    @property
    def closed(self) -> bool:
        """True after ``close()``, or once the session ended (its program
        exited or the connection was lost): it can run nothing more."""
        return self._closed or self._pump_task.done()

    # -- the service's frames --

    async def _pump(self) -> None:
        failure: Optional[PtyError] = None
        try:
            while True:
                while self._out.size + self._err.size > MAX_BUFFERED:
                    self._room.clear()
                    await self._room.wait()
                line = await self._reader.readline()
                if not line:
                    failure = PtyError("the service closed the connection before the program exited", "closed")
                    return
                if not line.strip():
                    continue
                frame = json.loads(line.decode("utf-8"))
                kind = frame.get("type")
                if kind in ("stdout", "stderr"):
                    data = base64.b64decode(frame.get("data") or "")
                    if data:  # b"" means the end to readers
                        (self._out if kind == "stdout" else self._err).put(data)
                elif kind == "exit":
                    self.exit_code = int(frame.get("exit_code", -1))
                    self.error_type = frame.get("error_type") or None
                    self.message = str(frame.get("message") or "")
                    if not self._exit.done():
                        self._exit.set_result(self.exit_code)
                    return
                elif kind == "error":
                    failure = PtyError(str(frame.get("message") or ""), str(frame.get("error_type") or "internal"))
                    return
                else:
                    failure = PtyError(f"the service sent an unknown frame {kind!r}", "internal")
                    return
        except asyncio.CancelledError:
            failure = PtyError("the session was closed before its program exited", "closed")
            raise
        except (ValueError, TypeError, AttributeError) as e:  # bad JSON, base64, a line over the limit
            failure = PtyError(f"the service sent a frame this client cannot read: {e}", "internal")
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            failure = PtyError(f"the connection to the service broke: {e}", "closed")
        finally:
            self._finish(failure)

    def _finish(self, failure: Optional[PtyError]) -> None:
        """Settle the exit and end both streams: output that arrived stays
        readable, then b"" after an exit, the failure otherwise."""
        exited = self._exit.done() and self._exit.exception() is None
        if not exited:
            if failure is None:
                failure = PtyError("the session ended without its program's exit", "internal")
            if not self._exit.done():
                self._exit.set_exception(failure)
                self._exit.exception()  # retrieved: no "never retrieved" warning
        self._out.end(None if exited else failure)
        self._err.end(None if exited else failure)
        if exited:
            # The exit frame is the last; the service closes after it.
            self._writer.close()

    # -- reading --

    async def read(self, *, timeout_s: Optional[float] = None) -> bytes:
        """The next output chunk (all terminal output in pty mode, stdout in
        pipe mode). ``b""`` once the program exited and everything was read.
        Raises ``TimeoutError`` after ``timeout_s`` without output, and
        ``PtyError`` (a ``SandboxPtyError``) if the session ended without
        its program exiting."""
        return await self._out.get(timeout_s, self._room)

    async def read_stderr(self, *, timeout_s: Optional[float] = None) -> bytes:
        """The next stderr chunk: pipe mode only; in pty mode there is none,
        and this returns ``b""`` once the program exited."""
        return await self._err.get(timeout_s, self._room)

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                data = await self.read()
                if not data:
                    return
                yield data

        return chunks()

    # -- writing --

    async def _send(self, frames: "list[Dict[str, Any]]") -> None:
        if self.closed:
            raise PtyError("the session is closed", "closed")
        data = b"".join(json.dumps(f, separators=(",", ":")).encode() + b"\n" for f in frames)
        try:
            async with self._send_lock:
                self._writer.write(data)
                await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise PtyError(f"the connection to the service broke: {e}", "closed") from e

    async def write(self, data: bytes) -> None:
        """Send bytes to the program's stdin (what is typed: ``b"\\x03"`` is
        Ctrl-C on a terminal, ``b"\\x04"`` Ctrl-D)."""
        if isinstance(data, str):
            raise TypeError("write takes bytes; encode text first")
        data = bytes(data)
        frames = [
            {"type": "stdin", "data": base64.b64encode(data[i : i + WRITE_CHUNK]).decode()}
            for i in range(0, len(data), WRITE_CHUNK)
        ]
        if frames:
            await self._send(frames)

    async def close_stdin(self) -> None:
        """End the program's stdin (pipe mode's EOF; on a terminal, write
        ``b"\\x04"`` instead)."""
        await self._send([{"type": "stdin_eof"}])

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the terminal (the program gets SIGWINCH); nothing in pipe
        mode."""
        frame = {"type": "resize", "rows": _size("rows", rows), "cols": _size("cols", cols)}
        if self.mode == "pty":
            await self._send([frame])

    async def send_signal(self, signal: Union[str, int]) -> None:
        """Send a signal (``"SIGTERM"``, ``"SIGINT"``, ...) to the program's
        process group. A login shell runs each job in a group of its own:
        for Ctrl-C to reach a job, write ``b"\\x03"``."""
        await self._send([{"type": "signal", "signal": _signal_name(signal)}])

    # -- the end --

    async def wait_exit(self, *, timeout_s: Optional[float] = None) -> int:
        """Wait for the program to exit and return its exit code (125 when
        the runtime ended it: see ``error_type``). ``TimeoutError`` after
        ``timeout_s``; ``PtyError`` if the session ended without an exit."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the program did not exit within {timeout_s:g} s") from None

    async def close(self) -> None:
        """End the session: the connection closes and the service kills the
        program if it still runs. Idempotent; reads of what arrived before
        still work."""
        if self._closed:
            return
        self._closed = True
        self._pump_task.cancel()
        await asyncio.gather(self._pump_task, return_exceptions=True)
        # A pump cancelled before it ever ran did not settle anything.
        self._finish(PtyError("the session was closed before its program exited", "closed"))
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def __aenter__(self) -> "PtySession":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"PtySession({self.session_id!r}, mode={self.mode!r}, {state})"


def pty_call(
    sandbox_id: str,
    *,
    command: Optional[str] = None,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    user: Union[str, int, None] = None,
    rows: int = 24,
    cols: int = 80,
    pty: bool = True,
    timeout_s: Optional[float] = None,
    exec_id: Optional[str] = None,
) -> _api.Call:
    """The request that opens a session (checked here: ValueError)."""
    if command is not None and (not isinstance(command, str) or not command.strip()):
        raise InvalidRequest(f"command must be a shell command line, or None for the login shell, got {command!r}")
    body: Dict[str, Any] = {"command": command, "pty": bool(pty)}
    if pty:
        body["rows"], body["cols"] = _size("rows", rows), _size("cols", cols)
    if cwd is not None:
        body["cwd"] = cwd
    if env:
        body["env"] = {str(k): str(v) for k, v in env.items()}
    if user is not None:
        # NeMo Gym: "root" or 0 is root; any other name or uid is that user.
        body["user"] = "root" if user == 0 and not isinstance(user, bool) else str(user)
    if timeout_s is not None:
        body["timeout_s"] = _api.timeout_field(timeout_s)
    if exec_id:
        body["exec_id"] = exec_id
    call = _api._json_call("POST", f"/v1/sandboxes/{_api._sid(sandbox_id)}/pty", body)
    call.headers.update({"Connection": "Upgrade", "Upgrade": PROTOCOL})
    return call


async def _read_head(reader: asyncio.StreamReader) -> "tuple[int, Dict[str, str]]":
    line = await reader.readline()
    if not line:
        raise ConnectionError("the service closed the connection without an answer")
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise Internal(f"the service answered with a bad status line {line[:80]!r}")
    headers: Dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n"):
            return int(parts[1]), headers
        if not h:
            raise ConnectionError("the connection closed in the answer's head")
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()


async def connect_pty(socket_path: str, call: _api.Call) -> PtySession:
    """Open a session with ``call`` (``pty_call``) on the service at
    ``socket_path``. A refused request raises the service's GymError
    (``InvalidRequest``, a ValueError, for a bad request)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_unix_connection(socket_path, limit=LINE_LIMIT), CONNECT_TIMEOUT_S
    )
    try:
        body = call.body or b""
        head = [f"{call.method} {call.path} HTTP/1.1"]
        head += [f"{k}: {v}" for k, v in _api.request_headers(call, len(body)).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        while True:
            status, headers = await _read_head(reader)
            if status == 101 or status >= 200:
                break  # 1xx informational answers: the real one follows
        _api.check_version(headers)
        if status != 101:
            n = int(headers.get("content-length") or 0)
            raise error_from_body(status, await reader.readexactly(n) if n else b"")
        if headers.get("upgrade", "").lower() != PROTOCOL:
            raise Internal(f"the service upgraded to {headers.get('upgrade')!r}, not {PROTOCOL}")
        return PtySession(reader, writer, headers.get("gym-exec-id", ""), headers.get("gym-pty-mode", "pty"))
    except BaseException:
        writer.close()
        raise


async def open_pty(client: Any, sandbox_id: str, **spec: Any) -> PtySession:
    """Open a session in ``sandbox_id`` through ``client`` (an AsyncClient,
    whose service is found or started as for any call). ``spec``: command
    (None = the image's login shell), cwd, env, user, rows, cols, pty
    (False = pipe mode: no terminal, stderr apart), timeout_s (None = no
    limit), exec_id.

    Raises ValueError for a request the service would refuse, and
    ``PtyError`` (NeMo Gym's ``SandboxPtyError``, with the service's
    ``error_type``) when the session cannot be opened (no such sandbox, no
    service)."""
    call = pty_call(sandbox_id, **spec)
    for attempt in (1, 2):
        path = await client._socket_path(attempt == 2)
        try:
            return await connect_pty(path, call)
        except (ConnectionRefusedError, FileNotFoundError) as e:
            if attempt == 2:
                raise PtyError(f"cannot reach the gym-apptainer service at {path}: {e}", "internal") from e
            # The daemon idled out: find (or start) it once more.
        except InvalidRequest:
            raise
        except GymError as e:
            raise PtyError(f"opening a PTY session in {sandbox_id}: {e.message}", e.error_type) from e
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            raise PtyError(f"opening a PTY session in {sandbox_id}: {e!r}", "internal") from e
    raise AssertionError("unreachable")


__all__ = ["PtyError", "PtySession", "SandboxPtyError", "connect_pty", "open_pty", "pty_call"]
