"""PTY sessions (gym_apptainer.pty): against a fake of the service's PTY
endpoint that runs commands on the host's own terminals, and, with
GYM_BIN_DIR, against the real gym-host serve and apptainer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import unittest
from pathlib import Path

from gym_apptainer import AsyncClient, errors
from gym_apptainer.nemo_gym import GymApptainerProvider, SandboxHandle
from gym_apptainer.pty import PtyError, PtySession, SandboxPtyError, open_pty

from .fakepty import FakePtyService

try:
    from nemo_gym.sandbox.providers.base import SandboxPtySpec  # type: ignore[import-not-found]
except ImportError:
    from gym_apptainer._nemo_types import SandboxPtySpec

HERE = Path(__file__).resolve().parent
PKG_PARENT = str(Path(sys.modules["gym_apptainer"].__file__).resolve().parent.parent)

# Bounds waits that only a bug makes long: a test that would hang fails.
HANG_S = 30.0


async def read_until(session: PtySession, needle: bytes) -> bytes:
    """Terminal output up to and including ``needle``."""
    buf = b""
    while needle not in buf:
        chunk = await session.read(timeout_s=HANG_S)
        if not chunk:
            raise AssertionError(f"the session ended before {needle!r}; got {buf!r}")
        buf += chunk
    return buf


async def read_all(read) -> bytes:
    buf = b""
    while True:
        chunk = await read(timeout_s=HANG_S)
        if not chunk:
            return buf
        buf += chunk


class PtyFakeTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.svc = FakePtyService().start()
        self.client = AsyncClient(self.svc.socket)

    async def asyncTearDown(self):
        await self.client.aclose()
        self.svc.stop()

    async def test_size_resize_input_and_exit_code(self):
        async with await open_pty(self.client, "gym-1", command="stty size; read x; stty size; read y; exit $y",
                                  rows=30, cols=100, env={"A": "b"}, user=0, exec_id="t-1") as s:
            self.assertEqual((s.mode, s.session_id, s.closed), ("pty", "t-1", False))
            self.assertIn(b"30 100", await read_until(s, b"30 100"))
            await s.resize(40, 120)
            await s.write(b"\n")
            self.assertIn(b"40 120", await read_until(s, b"40 120"))
            await s.write(b"7\n")
            self.assertEqual(await s.wait_exit(timeout_s=HANG_S), 7)
            rest = await read_all(s.read)  # drained, then b""
            self.assertEqual(await s.read(), b"", "b\"\" stays the answer after the end")
            self.assertEqual(await s.read_stderr(), b"", "pty mode has no stderr of its own")
            self.assertTrue(s.closed, "an exited session can run nothing more")
            self.assertNotIn(b"40 120", rest)
        body = self.svc.bodies[-1]
        self.assertEqual((body["rows"], body["cols"], body["env"], body["user"], body["pty"]), (30, 100, {"A": "b"}, "root", True))
        self.assertNotIn("timeout_s", body, "no limit unless asked")

    async def test_ctrl_c_interrupts_the_foreground_program(self):
        async with await open_pty(self.client, "gym-1", command="echo ready; sleep 100") as s:
            await read_until(s, b"ready")
            await s.write(b"\x03")
            self.assertEqual(await s.wait_exit(timeout_s=HANG_S), 130)

    async def test_send_signal(self):
        async with await open_pty(self.client, "gym-1", command="exec sleep 100") as s:
            with self.assertRaises(ValueError):
                await s.send_signal("SIGNOPE")
            await s.send_signal("term")
            self.assertEqual(await s.wait_exit(timeout_s=HANG_S), 143)

    async def test_pipe_mode_keeps_stderr_apart(self):
        async with await open_pty(self.client, "gym-1", command="cat; echo err >&2; exit 3", pty=False) as s:
            self.assertEqual(s.mode, "pipe")
            await s.resize(10, 10)  # nothing to size: no frame, no error
            await s.write(b"in\x00put")
            await s.close_stdin()
            out, err, code = await asyncio.gather(read_all(s.read), read_all(s.read_stderr), s.wait_exit(timeout_s=HANG_S))
            self.assertEqual((out, err, code), (b"in\x00put", b"err\n", 3))
        self.assertNotIn("rows", self.svc.bodies[-1])

    async def test_iteration_yields_until_exit(self):
        async with await open_pty(self.client, "gym-1", command="printf 'a\\nb\\n'; exit 0") as s:
            got = b"".join([c async for c in s])
            self.assertEqual(got.replace(b"\r\n", b"\n"), b"a\nb\n")
            self.assertEqual(await s.wait_exit(), 0)

    async def test_read_timeout_loses_nothing(self):
        async with await open_pty(self.client, "gym-1", command="read x; echo got $x") as s:
            with self.assertRaises(TimeoutError):
                await s.read(timeout_s=0.05)
            with self.assertRaises(TimeoutError):
                await s.wait_exit(timeout_s=0.05)
            await s.write(b"it\n")
            self.assertIn(b"got it", await read_until(s, b"got it"))
            self.assertEqual(await s.wait_exit(timeout_s=HANG_S), 0)

    async def test_close_kills_the_program_and_is_idempotent(self):
        s = await open_pty(self.client, "gym-1", command="sleep 100")
        await s.close()
        self.assertTrue(s.closed)
        await s.close()
        self.assertTrue(await asyncio.get_running_loop().run_in_executor(None, self.svc.killed.wait, HANG_S),
                        "the service never saw the disconnect")
        self.assertEqual(self.svc.disconnect_kills, 1)
        with self.assertRaises(SandboxPtyError):
            await s.write(b"x")
        with self.assertRaises(SandboxPtyError):
            await s.wait_exit()
        with self.assertRaises(SandboxPtyError):
            await s.read()

    async def test_refusals(self):
        with self.assertRaises(PtyError) as cm:
            await open_pty(self.client, "gym-missing")
        self.assertEqual(cm.exception.error_type, "not_found")
        self.assertIsInstance(cm.exception, SandboxPtyError)
        for bad in (dict(rows=0), dict(cols=70000), dict(command="  ")):
            with self.assertRaises(ValueError, msg=bad):
                await open_pty(self.client, "gym-1", **bad)

    async def test_error_frame_after_output(self):
        async with await open_pty(self.client, "gym-broken") as s:
            self.assertEqual(await s.read(timeout_s=HANG_S), b"partial", "output before the failure is kept")
            with self.assertRaises(PtyError) as cm:
                await s.read(timeout_s=HANG_S)
            self.assertEqual(cm.exception.error_type, "sandbox")
            with self.assertRaises(SandboxPtyError):
                await s.wait_exit(timeout_s=HANG_S)

    async def test_nemo_gym_create_pty(self):
        provider = GymApptainerProvider(service_socket=self.svc.socket)
        try:
            handle = SandboxHandle(sandbox_id="gym-1", provider_name="gym_apptainer", raw=None)
            s = await provider.create_pty(handle, SandboxPtySpec(command="echo $GREETING; exit 4", env={"GREETING": "hi"}, rows=5, cols=50))
            async with s:
                self.assertIn(b"hi", await read_until(s, b"hi"))
                self.assertEqual(await s.wait_exit(timeout_s=HANG_S), 4)
            self.assertEqual((self.svc.bodies[-1]["rows"], self.svc.bodies[-1]["cols"]), (5, 50))
            with self.assertRaises(SandboxPtyError):
                await provider.create_pty(SandboxHandle(sandbox_id="gym-missing", provider_name="gym_apptainer", raw=None),
                                          SandboxPtySpec())
        finally:
            await provider.aclose()


@unittest.skipIf(sys.version_info < (3, 10), "NeMo Gym's own source needs Python >= 3.10")
class WithNemoGymItself(unittest.TestCase):
    """NeMo Gym's own AsyncSandbox.pty facade over the provider's sessions
    (tests/nemo_gym_upstream), in a fresh interpreter."""

    def test_upstream_pty_facade(self):
        svc = FakePtyService().start()
        try:
            env = dict(os.environ, GYM_SERVICE_SOCKET=svc.socket,
                       PYTHONPATH=os.pathsep.join([str(HERE / "nemo_gym_upstream"), PKG_PARENT]))
            p = subprocess.run([sys.executable, str(HERE / "pty_upstream_case.py")], env=env,
                               capture_output=True, text=True, timeout=120)
        finally:
            svc.stop()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)


class PtyRealTest(unittest.IsolatedAsyncioTestCase):
    """The real service and apptainer (busybox image)."""

    @classmethod
    def setUpClass(cls):
        from .realenv import RealEnv

        cls.env = RealEnv()
        cls.config = cls.env.config_file()

    @classmethod
    def tearDownClass(cls):
        cls.env.cleanup(cls.config)

    async def asyncSetUp(self):
        self.client = AsyncClient(config=self.config, gym_host=self.env.gym_host)
        self.sb = await self.client.create(self.env.image)

    async def asyncTearDown(self):
        try:
            await self.sb.close()
        finally:
            await self.client.aclose()

    async def test_terminal_size_ctrl_c_and_exit_code(self):
        async with await open_pty(self.client, self.sb.id, rows=33, cols=111) as s:
            self.assertEqual(s.mode, "pty")
            await s.write(b"stty size\n")
            await read_until(s, b"33 111")
            await s.resize(44, 122)
            await s.write(b"stty size\n")
            await read_until(s, b"44 122")
            # Ctrl-C interrupts the shell's foreground job, and the shell lives on.
            # (Were it not interrupted, alive-42 would come 100 s later.)
            await s.write(b"echo ready-$((1+1)); sleep 100\n")
            await read_until(s, b"ready-2")
            # The echo runs before sleep is forked: a Ctrl-C in between would
            # reach the shell, not the sleep. Give the sleep time to start.
            await asyncio.sleep(0.5)
            await s.write(b"\x03")
            await s.write(b"echo alive-$((6*7))\n")
            await read_until(s, b"alive-42")
            await s.write(b"exit 7\n")
            self.assertEqual(await s.wait_exit(timeout_s=HANG_S), 7)
            self.assertIsNone(s.error_type, s.message)

    async def test_pipe_mode_and_close_kills(self):
        async with await open_pty(self.client, self.sb.id, command="cat; echo err >&2; exit 3", pty=False) as s:
            await s.write(b"bytes\x00\xff")
            await s.close_stdin()
            out, err, code = await asyncio.gather(read_all(s.read), read_all(s.read_stderr), s.wait_exit(timeout_s=HANG_S))
            self.assertEqual((out, err, code), (b"bytes\x00\xff", b"err\n", 3))
        async def sleepers(want: str) -> str:
            for _ in range(int(HANG_S * 10)):
                r = await self.sb.exec("ps -o args | grep -c '^sleep 100' || true")
                if r.stdout.strip() == want:
                    break
                await asyncio.sleep(0.1)
            return r.stdout.strip()

        s = await open_pty(self.client, self.sb.id, command="echo ready; exec sleep 100")
        await read_until(s, b"ready")
        self.assertEqual(await sleepers("1"), "1", "the sandbox's ps does not show the session's sleep")
        await s.close()
        self.assertEqual(await sleepers("0"), "0", "the session's sleep outlived its close")


if __name__ == "__main__":
    unittest.main()
