"""The plain clients and the quickstart example against the real gym-host
serve and apptainer (skipped without GYM_BIN_DIR; failing with CI=true)."""

import asyncio
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from gym_apptainer import AsyncClient, Client, errors

from .realenv import RealEnv

import gym_apptainer

# The tree with examples/ (the source checkout; GYM_PY_SRC when the tests
# run from a copy against an installed package), and the directory the
# package under test was imported from (so a subprocess imports the same).
ROOT = Path(os.environ.get("GYM_PY_SRC") or Path(__file__).resolve().parent.parent)
PKG_PARENT = str(Path(gym_apptainer.__file__).resolve().parent.parent)


class RealService(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = RealEnv()
        cls.config = cls.env.config_file()

    @classmethod
    def tearDownClass(cls):
        cls.env.cleanup(cls.config)

    def client(self):
        c = Client(config=self.config, gym_host=self.env.gym_host)
        self.addCleanup(c.close_connections)
        return c

    def test_sync_client(self):
        c = self.client()
        self.assertEqual(c.info().api_version, 1)
        with c.create(image=self.env.image, env={"A": "a"}, workdir="/tmp") as sb:
            r = sb.exec('pwd; echo "$A"; echo e >&2; exit 7')
            self.assertEqual((r.exit_code, r.stdout, r.stderr, r.error_type), (7, "/tmp\na\n", "e\n", None))
            st = sb.exec_stream("echo one; echo two >&2; exit 4")
            r2 = st.result()
            self.assertEqual((r2.exit_code, r2.stdout, r2.stderr), (4, "one\n", "two\n"))
            big = "x" * 3_000_000
            r3 = sb.exec("cat | wc -c", stdin=big)
            self.assertEqual(r3.stdout.strip(), str(len(big)))
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "run.sh").write_text("#!/bin/sh\necho script ran\n")
                sb.upload(Path(tmp, "run.sh"), "/sandbox/run.sh", mode=0o755)
                sb.upload(Path(tmp, "run.sh"), "/tmp/plain.sh")
            self.assertEqual(sb.exec("/sandbox/run.sh; stat -c %a /sandbox/run.sh /tmp/plain.sh").stdout,
                             "script ran\n755\n644\n")
            ids = [s.id for s in c.list().sandboxes]
            self.assertIn(sb.id, ids)
            # The CLI sees the same sandbox (same config, same state dir).
            p = self.env.gym_host_run(self.config, "status", sb.id)
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(c.status(sb.id).state, "stopped")
        with self.assertRaises(errors.NotFound):
            c.status("gym-00000000-0000-0000-0000-000000000000")
        with self.assertRaises(errors.InvalidRequest):
            c.exec(sb.id, "   ")

    def test_stream_is_incremental_and_leaving_kills(self):
        c = self.client()
        with c.create(image=self.env.image) as sb:
            # The command waits for a file the test uploads only after the
            # first line arrived: no output could come otherwise.
            with tempfile.TemporaryDirectory() as tmp:
                gate = Path(tmp, "gate")
                gate.write_text("")
                seen = []
                cmd = "echo ready; while [ ! -e /sandbox/gate ]; do sleep 0.05; done; echo done"
                with sb.exec_stream(cmd, timeout_s=60) as st:
                    for chunk in st:
                        seen.append(chunk.data)
                        if chunk.data == b"ready\n":
                            sb.upload(gate, "/sandbox/gate")
                self.assertEqual(b"".join(seen), b"ready\ndone\n")
            with sb.exec_stream("echo $$ > /sandbox/pid; echo go; exec sleep 300", timeout_s=600) as st:
                for chunk in st:
                    break  # leave: the service must kill the command
            r = None
            for _ in range(100):
                r = sb.exec('kill -0 "$(cat /sandbox/pid)" 2>/dev/null && echo alive || echo gone')
                if r.stdout == "gone\n":
                    break
                sb.exec("sleep 0.1")
            self.assertEqual(r.stdout, "gone\n")

    def test_async_client_many(self):
        async def go():
            async with AsyncClient(config=self.config, gym_host=self.env.gym_host) as c:
                sbs = await asyncio.gather(*(c.create(image=self.env.image) for _ in range(4)))
                try:
                    rs = await asyncio.gather(*(sb.exec(f"echo {i}-{j}") for i, sb in enumerate(sbs) for j in range(10)))
                    with tempfile.TemporaryDirectory() as tmp:
                        src = Path(tmp, "f")
                        src.write_bytes(os.urandom(1 << 20))
                        await sbs[0].upload(src, "/tmp/f")
                        await sbs[0].download("/tmp/f", Path(tmp, "g", "f"))
                        same = Path(tmp, "g", "f").read_bytes() == src.read_bytes()
                    return [r.stdout for r in rs], same
                finally:
                    await asyncio.gather(*(sb.close() for sb in sbs))

        outs, same = asyncio.run(go())
        self.assertEqual(outs, [f"{i}-{j}\n" for i in range(4) for j in range(10)])
        self.assertTrue(same)

    def test_cancelled_async_exec_is_killed(self):
        async def go():
            async with AsyncClient(config=self.config, gym_host=self.env.gym_host) as c:
                async with await c.create(image=self.env.image) as sb:
                    task = asyncio.ensure_future(sb.exec("echo $$ > /sandbox/pid; exec sleep 300", timeout_s=600))
                    while (await sb.exec("cat /sandbox/pid 2>/dev/null")).stdout == "":
                        await asyncio.sleep(0.05)
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
                    for _ in range(100):
                        r = await sb.exec('kill -0 "$(cat /sandbox/pid)" 2>/dev/null && echo alive || echo gone')
                        if r.stdout == "gone\n":
                            break
                        await asyncio.sleep(0.1)
                    return r.stdout

        self.assertEqual(asyncio.run(go()), "gone\n")

    def test_quickstart_example(self):
        env = dict(os.environ, GYM_CONFIG=self.config, GYM_HOST=self.env.gym_host,
                   PYTHONPATH=PKG_PARENT)
        p = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), self.env.image],
                           env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for want in ("exit 3 stdout hello from", "chunk stdout line 1", "streamed exit 0", "lines 1",
                     "status running", "provider ['task 0', 'task 1', 'task 2', 'task 3']", "timeout 125 timeout",
                     "after close stopped"):
            self.assertIn(want, p.stdout)


if __name__ == "__main__":
    unittest.main()
