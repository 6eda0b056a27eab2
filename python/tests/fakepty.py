"""A fake of the service's PTY endpoint (POST /v1/sandboxes/ID/pty) for
unit tests: a stdlib unix-socket server that answers 101 and runs the
command on the host, on a real terminal (pty module) or on pipes, speaking
the frames of docs/api.md. Ctrl-C, stty size and SIGWINCH are then the
kernel's own, as in a sandbox.

Sandbox "gym-missing" is not found; sandbox "gym-broken" sends an error
frame after the upgrade.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import uuid
from typing import Any, Dict, List, Optional


def _frame(obj: Dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class FakePtyService:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="gym-fakepty-")
        self.socket = os.path.join(self.dir, "api.sock")
        self.bodies: List[Dict[str, Any]] = []
        self.disconnect_kills = 0
        self.killed = threading.Event()
        self._lock = threading.Lock()
        self._srv: Optional[socket.socket] = None

    def start(self) -> "FakePtyService":
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(self.socket)
        self._srv.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.close()
        try:
            os.unlink(self.socket)
            os.rmdir(self.dir)
        except OSError:
            pass

    def _accept(self) -> None:
        assert self._srv is not None
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # -- one connection --

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            request = f.readline().decode("latin-1").split()
            headers: Dict[str, str] = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = json.loads(f.read(int(headers.get("content-length") or 0)) or b"{}")
            with self._lock:
                self.bodies.append(body)
            parts = request[1].split("/") if len(request) > 1 else []
            if request[0] == "GET" and len(parts) == 4 and parts[3] != "gym-missing":
                # Status, for a provider's connect().
                status = json.dumps({"id": parts[3], "state": "running", "image": "busybox.sif", "placement": "local",
                                     "node": "", "created": None}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nGym-Api-Version: 1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(status), status))
                return
            if len(parts) != 5 or parts[4] != "pty" or request[0] != "POST":
                return self._error(conn, 404, "not_found", "no such endpoint")
            if headers.get("upgrade") != "gym-pty/1" or "upgrade" not in headers.get("connection", "").lower():
                return self._error(conn, 400, "invalid", "send Connection: Upgrade and Upgrade: gym-pty/1")
            if parts[3] == "gym-missing":
                return self._error(conn, 404, "not_found", "sandbox gym-missing: no such sandbox")
            rows, cols = body.get("rows", 24), body.get("cols", 80)
            if not (1 <= rows <= 65535 and 1 <= cols <= 65535):
                return self._error(conn, 400, "invalid", "rows: want 1 to 65535")
            tty = body.get("pty", True)
            exec_id = body.get("exec_id") or str(uuid.uuid4())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: gym-pty/1\r\nConnection: Upgrade\r\n"
                b"Gym-Api-Version: 1\r\nGym-Exec-Id: %s\r\nGym-Pty-Mode: %s\r\n\r\n"
                % (exec_id.encode(), b"pty" if tty else b"pipe")
            )
            if parts[3] == "gym-broken":
                conn.sendall(_frame({"type": "stdout", "data": base64.b64encode(b"partial").decode()}))
                conn.sendall(_frame({"type": "error", "error_type": "sandbox", "message": "the instance died"}))
                return
            self._session(conn, f, body, tty, rows, cols, exec_id)
        except (OSError, ValueError):
            pass
        finally:
            f.close()
            conn.close()

    def _error(self, conn: socket.socket, status: int, error_type: str, message: str) -> None:
        body = json.dumps({"error_type": error_type, "message": message}).encode()
        conn.sendall(b"HTTP/1.1 %d X\r\nGym-Api-Version: 1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))

    def _session(self, conn: socket.socket, f: Any, body: Dict[str, Any], tty: bool, rows: int, cols: int, exec_id: str) -> None:
        command = body.get("command") or "exec sh"
        env = dict(os.environ, **(body.get("env") or {}))
        send_lock = threading.Lock()

        def send(obj: Dict[str, Any]) -> None:
            with send_lock:
                conn.sendall(_frame(obj))

        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

            def ctty() -> None:  # the terminal is the session's: Ctrl-C is SIGINT
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            proc = subprocess.Popen(["sh", "-c", command], stdin=slave, stdout=slave, stderr=slave,
                                    preexec_fn=ctty, env=env, cwd=body.get("cwd") or None)
            os.close(slave)
            outputs = [(master, "stdout")]
        else:
            proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, env=env, cwd=body.get("cwd") or None)
            master = -1
            outputs = [(proc.stdout.fileno(), "stdout"), (proc.stderr.fileno(), "stderr")]  # type: ignore[union-attr]

        def pump(fd: int, stream: str) -> None:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the terminal's last user closed it
                    return
                if not data:
                    return
                try:
                    send({"type": stream, "data": base64.b64encode(data).decode()})
                except OSError:
                    return

        pumps = [threading.Thread(target=pump, args=o, daemon=True) for o in outputs]
        for t in pumps:
            t.start()

        def frames() -> None:
            while True:
                line = f.readline()
                if not line:  # the client went away: kill the program
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        with self._lock:
                            self.disconnect_kills += 1
                        self.killed.set()
                    return
                fr = json.loads(line)
                if fr["type"] == "stdin":
                    data = base64.b64decode(fr["data"])
                    if tty:
                        os.write(master, data)
                    else:
                        proc.stdin.write(data)  # type: ignore[union-attr]
                        proc.stdin.flush()  # type: ignore[union-attr]
                elif fr["type"] == "stdin_eof":
                    if tty:
                        os.write(master, b"\x04")
                    else:
                        proc.stdin.close()  # type: ignore[union-attr]
                elif fr["type"] == "resize" and tty:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", fr["rows"], fr["cols"], 0, 0))
                elif fr["type"] == "signal":
                    try:
                        os.killpg(proc.pid, getattr(signal, fr["signal"]))
                    except ProcessLookupError:
                        pass

        threading.Thread(target=frames, daemon=True).start()
        code = proc.wait()
        for t in pumps:
            t.join(5)
        if master >= 0:
            os.close(master)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        send({"type": "exit", "exit_code": code if code >= 0 else 128 - code, "error_type": None,
              "message": "", "exec_id": exec_id})
