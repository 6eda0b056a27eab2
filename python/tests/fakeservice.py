"""A fake of the gym-apptainer service API v1 for unit tests.

A stdlib HTTP/1.1 server on a unix socket in a temp dir. Each sandbox is a
host directory; exec runs ``sh -c`` on the host with that directory as the
root of remote paths (cwd /x is <root>/x). It records every request and
counts connections, so tests can check what the client sent and how.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

STATUS_OF = {"invalid": 400, "not_found": 404, "unavailable": 503, "sandbox": 502, "timeout": 504,
             "interrupted": 499, "internal": 500, "forbidden": 403}


class ApiError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


class FakeSandbox:
    def __init__(self, root: str, body: Dict[str, Any]) -> None:
        self.id = "gym-" + uuid.uuid4().hex[:12]
        self.root = os.path.join(root, self.id)
        os.makedirs(self.root)
        self.body = body
        self.env = dict(body.get("env") or {})
        self.state = "running"
        self.procs: Dict[str, subprocess.Popen] = {}

    def local(self, remote: str) -> str:
        if not remote.startswith("/"):
            raise ApiError("invalid", f"path {remote!r} is not absolute")
        return os.path.join(self.root, remote.lstrip("/"))

    def status(self) -> Dict[str, Any]:
        return {"id": self.id, "state": self.state, "reason": "", "image": self.body.get("image", ""),
                "instance": self.id, "pid": 1, "created": "2026-12-05T00:00:00Z", "placement": "local",
                "node": "", "job_id": "", "ttl_s": self.body.get("ttl_s", 0), "owner": "abc", "foreign": False,
                "executor": ""}


class FakeService:
    """Start with ``FakeService().start()``; ``socket`` is its path."""

    def __init__(self, *, version_header: bool = True, close_after_response: bool = False,
                 default_timeout_s: float = 180) -> None:
        self.dir = tempfile.mkdtemp(prefix="gym-fake-")
        self.socket = os.path.join(self.dir, "api.sock")
        self.version_header = version_header
        self.close_after_response = close_after_response
        self.default_timeout_s = default_timeout_s
        self.sandboxes: Dict[str, FakeSandbox] = {}
        self.requests: List[Tuple[str, str, Any]] = []
        self.connections = 0
        self.disconnect_kills = 0
        self.upload_reads: List[int] = []
        self.open_conns: List[Any] = []
        self.lock = threading.Lock()
        self._server: Optional[socketserver.UnixStreamServer] = None

    # -- lifecycle --

    def start(self) -> "FakeService":
        svc = self

        class Handler(_Handler):
            service = svc

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)  # a caller that left is no error

        self._server = Server(self.socket, Handler)
        os.chmod(self.socket, 0o600)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # As a daemon that exits: every connection ends with it.
        for c in self.open_conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for sb in self.sandboxes.values():
            for p in list(sb.procs.values()):
                _kill(p)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "FakeService":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def sandbox(self, sid: str) -> FakeSandbox:
        sb = self.sandboxes.get(sid)
        if sb is None:
            raise ApiError("not_found", f"{sid}: no such sandbox")
        return sb

    def requests_to(self, suffix: str) -> List[Any]:
        return [b for (_m, p, b) in self.requests if urlsplit(p).path.endswith(suffix)]


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    service: FakeService

    def setup(self) -> None:
        super().setup()
        with self.service.lock:
            self.service.connections += 1
            self.service.open_conns.append(self.connection)

    def log_message(self, *args: Any) -> None:
        pass

    # -- responses --

    def _head(self, status: int, ctype: str, length: Optional[int]) -> None:
        self.send_response(status)
        if self.service.version_header:
            self.send_header("Gym-Api-Version", "1")
        self.send_header("Content-Type", ctype)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if self.service.close_after_response:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self._head(status, "application/json", len(data))
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- dispatch --

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body_json(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        body = None if method == "PUT" else self._body_json()
        with self.service.lock:
            self.service.requests.append((method, self.path, body))
        try:
            self._route(method, parts, q, body)
        except ApiError as e:
            self._json(STATUS_OF[e.error_type], {"error_type": e.error_type, "message": e.message})

    def _route(self, method: str, parts: List[str], q: Dict[str, str], body: Any) -> None:
        svc = self.service
        if parts == ["v1", "info"]:
            return self._json(200, {"api_version": 1, "version": "fake", "pid": os.getpid()})
        if parts == ["v1", "sandboxes"] and method == "POST":
            if not body.get("image"):
                raise ApiError("invalid", "image is required")
            if os.path.basename(body["image"]) == "broken.sif":
                raise ApiError("sandbox", "probe failed: exit 1")
            sb = FakeSandbox(svc.dir, body)
            for path, text in (body.get("files") or {}).items():
                p = sb.local(path)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "w") as f:
                    f.write(text)
            svc.sandboxes[sb.id] = sb
            return self._json(200, sb.status())
        if parts == ["v1", "sandboxes"] and method == "GET":
            return self._json(200, {"sandboxes": [s.status() for s in svc.sandboxes.values()], "skipped": []})
        if parts == ["v1", "gc"]:
            stopped = [s.id for s in svc.sandboxes.values() if s.state == "stopped"]
            return self._json(200, {"closed": stopped, "failed": []})
        if parts == ["v1", "close_all"]:
            ids = [s.id for s in svc.sandboxes.values() if s.state != "stopped"]
            for i in ids:
                svc.sandboxes[i].state = "stopped"
            return self._json(200, {"closed": ids})
        if len(parts) < 3 or parts[:2] != ["v1", "sandboxes"]:
            raise ApiError("not_found", f"no route {method} {self.path}")
        sb = svc.sandbox(parts[2])
        rest = parts[3:]
        if not rest and method == "GET":
            return self._json(200, sb.status())
        if not rest and method == "DELETE":
            sb.state = "stopped"
            return self._json(200, {"id": sb.id})
        if sb.state == "stopped" and rest != ["files"]:
            raise ApiError("sandbox", f"{sb.id} is stopped")
        if rest == ["exec"]:
            return self._exec(sb, body)
        if rest == ["kill_exec"]:
            p = sb.procs.get(body.get("exec_id", ""))
            if p is not None:
                _kill(p)
            return self._json(200, {})
        if rest == ["endpoint"]:
            return self._json(200, {"endpoint": f"http://127.0.0.1:{q['port']}", "headers": {}})
        if rest == ["files"] and method == "PUT":
            return self._upload(sb, q["path"])
        if rest == ["files"] and method == "GET":
            return self._download(sb, q["path"])
        raise ApiError("not_found", f"no route {method} {self.path}")

    # -- files --

    def _upload(self, sb: FakeSandbox, remote: str) -> None:
        left = int(self.headers.get("Content-Length") or 0)
        p = sb.local(remote)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        n = 0
        with open(p, "wb") as f:
            while left > 0:
                chunk = self.rfile.read(min(left, 64 * 1024))
                if not chunk:
                    break
                with self.service.lock:
                    self.service.upload_reads.append(len(chunk))
                f.write(chunk)
                left -= len(chunk)
                n += len(chunk)
        self._json(200, {"path": remote, "bytes": n})

    def _download(self, sb: FakeSandbox, remote: str) -> None:
        p = sb.local(remote)
        if not os.path.isfile(p):
            raise ApiError("invalid", f"{remote}: no such file")
        self._head(200, "application/octet-stream", None)
        with open(p, "rb") as f:
            while True:
                chunk = f.read(100_000)
                if not chunk:
                    break
                self._chunk(chunk)
        self._end_chunks()

    # -- exec --

    def _exec(self, sb: FakeSandbox, body: Dict[str, Any]) -> None:
        cmd = body.get("command")
        if not isinstance(cmd, str):
            raise ApiError("invalid", "command must be a string")
        timeout = body.get("timeout_s")
        timeout = self.service.default_timeout_s if timeout is None else float(timeout)
        exec_id = body.get("exec_id") or uuid.uuid4().hex
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": sb.root, "SANDBOX_ROOT": sb.root}
        env.update(sb.env)
        env.update(body.get("env") or {})
        env["GYM_EXEC_ID"] = exec_id
        cwd = sb.local(body["cwd"]) if body.get("cwd") else sb.root
        if not os.path.isdir(cwd):
            raise ApiError("sandbox", f"cwd {body['cwd']}: no such directory")
        stdin = body.get("stdin")
        data = stdin.encode() if isinstance(stdin, str) else base64.b64decode(body["stdin_b64"]) if "stdin_b64" in body else b""
        if timeout == 0:
            res = {"exit_code": 125, "stdout": "", "stderr": "", "error_type": "timeout",
                   "message": "timed out after 0s", "exec_id": exec_id}
            if body.get("stream"):
                self._head(200, "application/x-ndjson", None)
                self._chunk(json.dumps(dict(res, type="exit")).encode() + b"\n")
                return self._end_chunks()
            return self._json(200, res)
        p = subprocess.Popen(["sh", "-c", cmd], cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        sb.procs[exec_id] = p
        try:
            if p.stdin is not None:
                try:
                    p.stdin.write(data)
                    p.stdin.close()
                except BrokenPipeError:
                    pass
                p.stdin = None
            if body.get("stream"):
                return self._exec_stream(p, exec_id, timeout)
            out, err, timed_out = self._collect(p, timeout)
            if timed_out:
                return self._json(200, {"exit_code": 125, "stdout": out.decode(errors="replace"),
                                        "stderr": err.decode(errors="replace"), "error_type": "timeout",
                                        "message": f"timed out after {timeout:g}s", "exec_id": exec_id})
            self._json(200, {"exit_code": p.returncode, "stdout": out.decode(errors="replace"),
                             "stderr": err.decode(errors="replace"), "error_type": None, "message": "",
                             "exec_id": exec_id, "stdout_bytes": len(out), "stderr_bytes": len(err)})
        finally:
            sb.procs.pop(exec_id, None)
            _kill(p)
            p.wait()
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()

    def _collect(self, p: subprocess.Popen, timeout: float) -> Tuple[bytes, bytes, bool]:
        try:
            out, err = p.communicate(timeout=timeout)
            return out, err, False
        except subprocess.TimeoutExpired:
            _kill(p)
            out, err = p.communicate()
            return out, err, True

    def _exec_stream(self, p: subprocess.Popen, exec_id: str, timeout: float) -> None:
        self._head(200, "application/x-ndjson", None)
        deadline = time.monotonic() + timeout
        fds = {p.stdout.fileno(): "stdout", p.stderr.fileno(): "stderr"}  # type: ignore[union-attr]
        sock = self.connection
        try:
            while fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    _kill(p)
                    p.wait()
                    ev = {"type": "exit", "exit_code": 125, "error_type": "timeout", "message": "timed out",
                          "exec_id": exec_id}
                    self._chunk(json.dumps(ev).encode() + b"\n")
                    return self._end_chunks()
                ready, _, _ = select.select(list(fds) + [sock], [], [], min(left, 1.0))
                if sock in ready:
                    # The client sends nothing more on an exec: readable = gone.
                    if not sock.recv(1, 0x40):  # MSG_DONTWAIT
                        with self.service.lock:
                            self.service.disconnect_kills += 1
                        _kill(p)
                        self.close_connection = True
                        return
                for fd in ready:
                    if fd is sock:
                        continue
                    data = os.read(fd, 65536)
                    if not data:
                        del fds[fd]
                        continue
                    ev = {"type": fds[fd], "data": base64.b64encode(data).decode()}
                    self._chunk(json.dumps(ev).encode() + b"\n")
            code = p.wait()
            self._chunk(json.dumps({"type": "exit", "exit_code": code, "error_type": None, "message": "",
                                    "exec_id": exec_id}).encode() + b"\n")
            self._end_chunks()
        except (BrokenPipeError, ConnectionResetError):
            with self.service.lock:
                self.service.disconnect_kills += 1
            _kill(p)
            self.close_connection = True


def fake_gym_host(directory: str, socket_file: str) -> str:
    """A fake gym-host whose ``serve --json`` prints the socket path held in
    ``socket_file`` (and records its argv); returns its path."""
    path = os.path.join(directory, "gym-host")
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            f'echo "$@" >> {directory}/argv.log\n'
            f'sock=$(cat {socket_file})\n'
            'case "$sock" in fail*) echo \'{"error_type":"invalid","message":"sandbox.apptainer.exec.concurrency: '
            'must be >= 1","exit_code":2}\'; exit 2;; esac\n'
            'printf \'{"socket": "%s", "pid": 1, "api_version": 1, "version": "fake"}\\n\' "$sock"\n'
        )
    os.chmod(path, 0o755)
    return path

