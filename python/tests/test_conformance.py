"""Conformance: GymApptainerProvider through every method and edge case of
NeMo Gym's provider contract, against the real gym-host serve and apptainer,
from one asyncio loop with 32 sandboxes in flight at once.

Each sandbox runs the whole scenario; a check that fails is collected with
the sandbox's id, so one run reports every broken case.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import unittest
from pathlib import Path
from typing import List

from gym_apptainer.nemo_gym import (
    GymApptainerProvider,
    SandboxExecResult,
    SandboxHandle,
    SandboxSpec,
    SandboxStatus,
)

from .realenv import RealEnv

SANDBOXES = 32


def _has_subuid() -> bool:
    import pwd

    name = pwd.getpwuid(os.getuid()).pw_name
    try:
        with open("/etc/subuid") as f:
            return any(line.split(":", 1)[0].strip() == name for line in f)
    except OSError:
        return False


class Conformance(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = RealEnv()
        cls.provider = GymApptainerProvider(**cls.env.provider_options())

    @classmethod
    def tearDownClass(cls):
        cls.env.cleanup(cls.provider.config_path)

    def test_32_sandboxes_in_flight(self):
        failures = asyncio.run(self.run_all())
        self.assertEqual(failures, [], "\n".join(failures))

    async def run_all(self) -> List[str]:
        p = self.provider
        failures: List[str] = []
        spec = SandboxSpec(image=self.env.image, env={"A": "create", "B": "create"}, ttl_s=3600,
                           metadata={"test": "conformance"}, resources={"cpu": 1, "memory_mib": 256})
        handles = await asyncio.gather(*(p.create(spec) for _ in range(SANDBOXES)), return_exceptions=True)
        made = [h for h in handles if isinstance(h, SandboxHandle)]
        failures += [f"create: {h!r}" for h in handles if not isinstance(h, SandboxHandle)]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results = await asyncio.gather(*(self.scenario(h, Path(tmp, str(i))) for i, h in enumerate(made)),
                                               return_exceptions=True)
            for h, r in zip(made, results):
                if isinstance(r, BaseException):
                    failures.append(f"{h.sandbox_id}: raised {r!r}")
                else:
                    failures += [f"{h.sandbox_id}: {f}" for f in r]
        finally:
            await asyncio.gather(*(p.close(h) for h in made), return_exceptions=True)
            await p.aclose()
        return failures

    async def scenario(self, h: SandboxHandle, tmp: Path) -> List[str]:
        p = self.provider
        bad: List[str] = []

        def check(what: str, got, want) -> None:
            if got != want:
                bad.append(f"{what}: got {got!r}, want {want!r}")

        async def run(cmd: str, **kw) -> SandboxExecResult:
            r = await p.exec(h, cmd, **kw)
            if not isinstance(r, SandboxExecResult):
                bad.append(f"{cmd!r}: returned {type(r).__name__}")
            return r

        check("status after create", await p.status(h), SandboxStatus.RUNNING)

        # Exit codes are the command's own, 1, 2 and 255 included.
        for code in (0, 1, 2, 42, 255):
            r = await run(f"exit {code}")
            check(f"exit {code} (stderr {r.stderr!r})", (r.return_code, r.error_type), (code, None))
        r = await run("echo out; echo err >&2")
        check("streams", (r.stdout, r.stderr), ("out\n", "err\n"))

        # Env: the exec's overrides the sandbox's.
        r = await run('echo "$A $B $C"', env={"B": "exec", "C": "exec"})
        check("env precedence", r.stdout, "create exec exec\n")
        check("env does not stick", (await run('echo "$B"')).stdout, "create\n")

        # stdin: bytes (NULs included) and text.
        check("stdin bytes", (await run("wc -c", stdin=b"\x00\x01abc")).stdout.strip(), "5")
        check("stdin text", (await run("cat", stdin="héllo")).stdout, "héllo")
        check("no stdin reads EOF", (await run("cat")).stdout, "")

        # cwd and users.
        check("cwd", (await run("pwd", cwd="/tmp")).stdout, "/tmp\n")
        check("user root", (await run("id -u", user="root")).stdout, "0\n")
        check("user 0", (await run("id -u", user=0)).stdout, "0\n")
        # Under --userns one uid is mapped: another user is a sandbox error
        # (saying how to get users), never the command run as root.
        r = await run("echo ran", user="sandbox")
        check("other user under --userns", (r.return_code, r.error_type, "ran" in (r.stdout or "")), (125, "sandbox", False))
        check("why, in stderr", "--fakeroot" in (r.stderr or ""), True)

        # Timeouts: 0 is no time at all; a timeout kills what the command
        # started in the background too.
        r = await run("echo never", timeout_s=0)
        check("timeout 0", (r.return_code, r.error_type), (125, "timeout"))
        # (5 s: the background job must have started before the timeout,
        # with 32 sandboxes busy on a small machine.)
        r = await run("sleep 300 & echo $! > /sandbox/bg.pid; sleep 300", timeout_s=5)
        check("timeout", (r.return_code, r.error_type), (125, "timeout"))
        r = await run('[ -s /sandbox/bg.pid ] || { echo no pid; exit; }; '
                      'kill -0 "$(cat /sandbox/bg.pid)" 2>/dev/null && echo alive || echo gone')
        check("background process after timeout", r.stdout, "gone\n")
        check("default timeout (None) runs", (await run("echo ok", timeout_s=None)).stdout, "ok\n")

        # Files: under the mount point (staging fast path) and outside it.
        data = os.urandom(300_000) + b"\x00end"
        src = tmp / "src.bin"
        tmp.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        for remote in ("/sandbox/in/fast.bin", "/tmp/deep/slow.bin"):
            await p.upload_file(h, src, remote)
            check(f"size in sandbox {remote}", (await run(f"wc -c < {remote}")).stdout.strip(), str(len(data)))
            dst = tmp / "new" / remote.strip("/").replace("/", "_") / "out.bin"  # parents do not exist
            await p.download_file(h, remote, dst)
            check(f"round trip {remote}", dst.read_bytes() == data, True)
        # .gym is gym-apptainer's own (the sandbox's executor and its socket).
        left = [n for n in (await run("ls -A /sandbox")).stdout.split() if n != ".gym"]
        check("nothing left in /sandbox", left, ["bg.pid", "in"])
        try:
            await p.download_file(h, "/no/such/file", tmp / "none")
            bad.append("download of a missing file did not raise")
        except Exception:
            check("failed download leaves no file", (tmp / "none").exists(), False)

        # Endpoint, and the handle in another provider (another process would
        # build it the same way from the JSON descriptor).
        ep = await p.endpoint(h, 8080)
        check("endpoint", ep.endpoint, "http://127.0.0.1:8080")
        other = GymApptainerProvider(**self.env.provider_options())
        h2 = await other.connect(await p.serialize_handle(h))
        check("connect then exec", (await other.exec(h2, 'echo "$A"')).stdout, "create\n")
        await other.aclose()

        # Close: twice is fine; afterwards status is STOPPED and exec a 125.
        await p.close(h)
        await p.close(h)
        check("status after close", await p.status(h), SandboxStatus.STOPPED)
        r = await run("true")
        check("exec after close", (r.return_code, r.error_type), (125, "sandbox"))
        return bad

    def test_users_with_fakeroot(self):
        if not _has_subuid():
            if os.environ.get("CI") == "true":
                self.fail("CI=true and /etc/subuid has no range for this user: --fakeroot cannot be tested")
            self.skipTest("/etc/subuid has no range for this user: --fakeroot cannot start a sandbox")
        opts = self.env.provider_options()
        opts["create"] = {"extra_start_args": ["--fakeroot"]}
        p = GymApptainerProvider(**opts)

        async def go():
            h = await p.create(SandboxSpec(image=self.env.image))
            try:
                return [(await p.exec(h, "id -u; id -un", user=u)).stdout for u in ("sandbox", 1000, "root", 0)]
            finally:
                await p.close(h)
                await p.aclose()

        self.addCleanup(self.env.gym_host_run, p.config_path, "daemon", "stop")
        self.assertEqual(asyncio.run(go()), ["1000\nsandbox\n", "1000\nsandbox\n", "0\nroot\n", "0\nroot\n"])

    def test_never_made_reads_stopped(self):
        async def go():
            h = SandboxHandle(sandbox_id="gym-00000000-0000-0000-0000-000000000000", provider_name="gym_apptainer",
                              raw=None)
            st = await self.provider.status(h)
            await self.provider.close(h)
            r = await self.provider.exec(h, "true")
            await self.provider.aclose()
            return st, (r.return_code, r.error_type)

        self.assertEqual(asyncio.run(go()), (SandboxStatus.STOPPED, (125, "sandbox")))


if __name__ == "__main__":
    unittest.main()
