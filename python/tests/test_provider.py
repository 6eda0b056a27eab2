"""GymApptainerProvider (NeMo Gym's provider protocol) against the fake service."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from gym_apptainer import errors
from gym_apptainer import nemo_gym as ng

from .fakeservice import FakeService

HERE = Path(__file__).resolve().parent
PKG_PARENT = str(Path(ng.__file__).resolve().parent.parent)


class Construction(unittest.TestCase):
    def setUp(self):
        self.rt = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.rt, True)
        p = mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": self.rt})
        p.start()
        self.addCleanup(p.stop)

    def test_nemo_options_become_a_gym_host_config(self):
        p = ng.GymApptainerProvider(
            exec={"default_timeout_s": 60, "concurrency": 8},
            create={"mount_point": "/sandbox"},
            probe={"command": None, "timeout_s": 0},
            bin_path="/usr/local/bin",
            gym={"placement": "local"},
            service_socket="/nowhere.sock",
        )
        doc = json.loads(Path(p.config_path).read_text())
        self.assertEqual(doc, {
            "sandbox": {"apptainer": {
                "exec": {"default_timeout_s": 60, "concurrency": 8},
                "create": {"mount_point": "/sandbox"},
                "probe": {"command": None, "timeout_s": 0},
                "bin_path": "/usr/local/bin",
            }},
            "gym": {"placement": "local"},
        })
        self.assertEqual(Path(p.config_path).stat().st_mode & 0o777, 0o600)

    def test_unknown_option_is_refused(self):
        with self.assertRaises(TypeError):
            ng.GymApptainerProvider(exec={"default_timeout": 60}, service_socket="/x")
        with self.assertRaises(ValueError):
            ng.GymApptainerProvider(config_file="/etc/x.yaml", exec={"concurrency": 1}, service_socket="/x")

    def test_nemo_gyms_own_checks(self):
        for bad in ({"exec": {"concurrency": 0}}, {"exec": {"default_timeout_s": 0}},
                    {"create": {"start_timeout_s": -1}}, {"create": {"mount_point": "sandbox"}},
                    {"probe": {"timeout_s": 0}}, {"probe": {"stable_count": 0}}):
            with self.assertRaises(ValueError, msg=bad):
                ng.GymApptainerProvider(service_socket="/x", **bad)
        # As NeMo Gym: without a probe command its timeout means nothing.
        ng.GymApptainerProvider(service_socket="/x", probe={"command": None, "timeout_s": 0},
                                exec={"default_timeout_s": None})

    def test_missing_gym_host_fails_at_construction(self):
        env = {k: v for k, v in os.environ.items() if k not in ("GYM_SERVICE_SOCKET", "GYM_HOST")}
        env["PATH"] = "/nonexistent"
        with mock.patch.dict(os.environ, env, clear=True):
            with self.assertRaises(errors.ServiceConnectionError):
                ng.GymApptainerProvider()

    def test_capabilities(self):
        p = ng.GymApptainerProvider(service_socket="/x")
        from gym_apptainer import _nemo_types as t

        self.assertIsInstance(p, t.ConnectableProvider)
        self.assertIsInstance(p, t.SupportsSandboxEndpoint)
        self.assertEqual(p.name, "gym_apptainer")


class Provider(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.svc = FakeService().start()
        self.p = ng.GymApptainerProvider(service_socket=self.svc.socket)
        self.tmp = tempfile.mkdtemp()

    async def asyncTearDown(self):
        await self.p.aclose()
        self.svc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def create(self, **kw):
        kw.setdefault("image", "busybox.sif")
        return await self.p.create(ng.SandboxSpec(**kw))

    async def test_create_sends_the_spec(self):
        h = await self.create(env={"A": "1"}, workdir="/w", ttl_s=10, metadata={"k": "v"},
                              resources={"cpu": 2, "memory_mib": 512, "disk_gib": 5},
                              files={"/sandbox/f": "seeded by AsyncSandbox.start, not here"},
                              provider_options={"binds": "/data:/data:ro"})
        self.assertIsInstance(h, ng.SandboxHandle)
        self.assertEqual((h.provider_name, h.raw.sandbox_id), ("gym_apptainer", h.sandbox_id))
        body = self.svc.requests_to("/sandboxes")[0]
        self.assertEqual(body["env"], {"A": "1"})
        self.assertEqual(body["workdir"], "/w")
        self.assertEqual(body["binds"], ["/data:/data:ro"])
        self.assertEqual(body["resources"], {"cpu": 2.0, "memory_mib": 512, "disk_gib": 5})
        self.assertEqual((body["ttl_s"], body["metadata"]), (10, {"k": "v"}))
        self.assertNotIn("files", body)

    async def test_create_failures(self):
        with self.assertRaises(ng.SandboxCreateError) as cm:
            await self.create(image="broken.sif")
        self.assertEqual(cm.exception.error_type, "sandbox")
        with self.assertRaises(ng.SandboxCreateError):
            await self.p.create(ng.SandboxSpec())
        with self.assertRaises(ng.SandboxCreateError):
            await self.create(provider_options={"gpus": 1})

    async def test_exec(self):
        h = await self.create(env={"A": "create", "B": "create"})
        r = await self.p.exec(h, "echo $A $B; echo e >&2; exit 4", env={"B": "exec"})
        self.assertIsInstance(r, ng.SandboxExecResult)
        self.assertEqual((r.return_code, r.stdout, r.stderr, r.error_type), (4, "create exec\n", "e\n", None))
        r = await self.p.exec(h, "cat", stdin=b"in\x00put")
        self.assertEqual(r.stdout, "in\x00put")
        r = await self.p.exec(h, "sleep 10", timeout_s=0)
        self.assertEqual((r.return_code, r.error_type), (125, "timeout"))
        await self.p.exec(h, "true", user=0, cwd="/")
        bodies = self.svc.requests_to("/exec")
        self.assertIsNone(bodies[0]["timeout_s"])  # None: the config's default
        self.assertEqual(bodies[2]["timeout_s"], 0)
        self.assertEqual((bodies[3]["user"], bodies[3]["cwd"]), ("root", "/"))

    async def test_after_close(self):
        h = await self.create()
        self.assertEqual(await self.p.status(h), ng.SandboxStatus.RUNNING)
        await self.p.close(h)
        await self.p.close(h)  # idempotent
        self.assertEqual(await self.p.status(h), ng.SandboxStatus.STOPPED)
        r = await self.p.exec(h, "true")
        self.assertEqual((r.return_code, r.error_type), (125, "sandbox"))
        gone = ng.SandboxHandle(sandbox_id="gym-gone", provider_name="gym_apptainer", raw=None)
        self.assertEqual(await self.p.status(gone), ng.SandboxStatus.STOPPED)
        await self.p.close(gone)
        r = await self.p.exec(gone, "true")
        self.assertEqual((r.return_code, r.error_type), (125, "sandbox"))

    async def test_files(self):
        h = await self.create()
        src = Path(self.tmp, "in.txt")
        src.write_bytes(b"payload")
        await self.p.upload_file(h, src, "/etc/x/in.txt")
        dst = Path(self.tmp, "no", "such", "dir", "out.txt")
        await self.p.download_file(h, "/etc/x/in.txt", dst)
        self.assertEqual(dst.read_bytes(), b"payload")

    async def test_serialize_connect_endpoint(self):
        h = await self.create()
        d = await self.p.serialize_handle(h)
        json.dumps(d)
        other = ng.GymApptainerProvider(service_socket=self.svc.socket)
        h2 = await other.connect(d)
        self.assertEqual(h2.sandbox_id, h.sandbox_id)
        self.assertEqual((await other.exec(h2, "echo hi")).stdout, "hi\n")
        with self.assertRaises(LookupError):
            await other.connect(dict(d, sandbox_id="gym-never"))
        with self.assertRaises(ValueError):
            await other.connect({"provider": "apptainer", "sandbox_id": "x"})
        await other.aclose()
        ep = await self.p.endpoint(h, 8000)
        self.assertIsInstance(ep, ng.SandboxEndpoint)
        self.assertEqual(ep.endpoint, "http://127.0.0.1:8000")


@unittest.skipIf(sys.version_info < (3, 10), "NeMo Gym's own source needs Python >= 3.10")
class WithNemoGymItself(unittest.TestCase):
    """The provider with NeMo Gym's own types, registry and AsyncSandbox
    facade (tests/nemo_gym_upstream), in a fresh interpreter."""

    def test_upstream_facade(self):
        with FakeService() as svc:
            env = dict(os.environ, GYM_SERVICE_SOCKET=svc.socket,
                       PYTHONPATH=os.pathsep.join([str(HERE / "nemo_gym_upstream"), PKG_PARENT]))
            p = subprocess.run([sys.executable, str(HERE / "upstream_case.py")], env=env,
                               capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)


if __name__ == "__main__":
    unittest.main()
