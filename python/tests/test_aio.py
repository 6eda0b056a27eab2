"""The asyncio client against the fake service."""

import asyncio
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from gym_apptainer import AsyncClient, errors

from .fakeservice import FakeService


class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.svc = FakeService().start()
        self.client = AsyncClient(self.svc.socket)
        self.tmp = tempfile.mkdtemp()

    async def asyncTearDown(self):
        await self.client.aclose()
        self.svc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def test_exec_results(self):
        async with await self.client.create(image="busybox.sif", env={"A": "create"}) as sb:
            r = await sb.exec("echo out; echo err >&2; exit 3")
            self.assertEqual((r.exit_code, r.stdout, r.stderr, r.error_type), (3, "out\n", "err\n", None))
            self.assertEqual((await sb.exec("echo $A", env={"A": "exec"})).stdout, "exec\n")
            self.assertEqual((await sb.exec("cat", stdin="text in")).stdout, "text in")
            r = await sb.exec("sleep 5", timeout_s=0)
            self.assertEqual((r.exit_code, r.error_type), (125, "timeout"))
        self.assertEqual((await self.client.status(sb.id)).state, "stopped")

    async def test_many_in_flight_on_one_loop(self):
        sb = await self.client.create(image="busybox.sif")
        # Every exec holds until all have started: only possible if all 40
        # are in flight at once on this one loop.
        n = 40
        cmd = ('touch "$SANDBOX_ROOT/started.$I"; '
               'while [ $(ls "$SANDBOX_ROOT" | grep -c started) -lt %d ]; do sleep 0.01; done; echo $I' % n)
        rs = await asyncio.gather(*(sb.exec(cmd, env={"I": str(i)}, timeout_s=60) for i in range(n)))
        self.assertEqual([r.stdout for r in rs], [f"{i}\n" for i in range(n)])
        # Later calls reuse the pooled connections.
        before = self.svc.connections
        await asyncio.gather(*(sb.exec("true") for _ in range(n)))
        self.assertEqual(self.svc.connections, before)

    async def test_stream(self):
        sb = await self.client.create(image="busybox.sif")
        gate = Path(self.tmp, "gate")
        gate.write_text("go")
        cmd = 'echo ready; while [ ! -e "$SANDBOX_ROOT/gate" ]; do sleep 0.01; done; echo done >&2; exit 7'
        seen = []
        async with sb.exec_stream(cmd) as st:
            async for chunk in st:
                seen.append((chunk.stream, chunk.data))
                if chunk.data == b"ready\n":
                    await sb.upload(gate, "/gate")
        self.assertEqual(seen, [("stdout", b"ready\n"), ("stderr", b"done\n")])
        self.assertEqual(st.exit.exit_code, 7)
        r = await sb.exec_stream("printf abc; exit 2").result()
        self.assertEqual((r.exit_code, r.stdout), (2, "abc"))

    async def test_cancelled_exec_kills_the_command(self):
        sb = await self.client.create(image="busybox.sif")
        task = asyncio.ensure_future(sb.exec_stream("echo first; exec sleep 60").result())
        while not any(b and b.get("stream") for b in self.svc.requests_to("/exec")):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        for _ in range(500):
            if self.svc.disconnect_kills:
                break
            await asyncio.sleep(0.01)
        self.assertEqual(self.svc.disconnect_kills, 1)
        self.assertEqual((await sb.exec("echo ok")).stdout, "ok\n")

    async def test_files(self):
        sb = await self.client.create(image="busybox.sif")
        data = os.urandom(2 * 1024 * 1024 + 3)
        src = Path(self.tmp, "src")
        src.write_bytes(data)
        self.assertEqual(await sb.upload(src, "/w/src"), len(data))
        dst = Path(self.tmp, "a", "b", "dst")
        self.assertEqual(await sb.download("/w/src", dst), len(data))
        self.assertEqual(dst.read_bytes(), data)
        with self.assertRaises(errors.InvalidRequest):
            await sb.download("/w/none", Path(self.tmp, "c", "none"))
        self.assertFalse(Path(self.tmp, "c", "none").exists())

    async def test_errors_and_service_calls(self):
        with self.assertRaises(errors.NotFound):
            await self.client.status("gym-never")
        with self.assertRaises(errors.SandboxFailed):
            await self.client.create(image="broken.sif")
        sb = await self.client.create(image="busybox.sif")
        self.assertEqual((await self.client.info()).api_version, 1)
        self.assertEqual((await sb.endpoint(9000)).endpoint, "http://127.0.0.1:9000")
        self.assertEqual([s.id for s in (await self.client.list()).sandboxes], [sb.id])
        self.assertEqual((await self.client.close_all()).closed, [sb.id])
        await sb.close()
        await sb.close()


class AsyncConnectionHandling(unittest.IsolatedAsyncioTestCase):
    async def test_server_closing_connections(self):
        with FakeService(close_after_response=True) as svc:
            c = AsyncClient(svc.socket)
            sb = await c.create(image="busybox.sif")
            for _ in range(5):
                self.assertEqual((await sb.exec("echo x")).stdout, "x\n")
                await sb.status()
            await c.aclose()

    async def test_not_a_gym_service(self):
        with FakeService(version_header=False) as svc:
            c = AsyncClient(svc.socket)
            with self.assertRaises(errors.Internal):
                await c.info()
            await c.aclose()


if __name__ == "__main__":
    unittest.main()
