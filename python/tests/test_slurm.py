"""GymApptainerProvider with SLURM placement, against the real cluster
(scripts/slurm-cluster.sh up [--nodes N]), the real gym-host serve and
apptainer: from asyncio, sandboxes as holder jobs on the cluster's nodes."""

import asyncio
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from gym_apptainer.nemo_gym import GymApptainerProvider, SandboxSpec, SandboxStatus

from .realenv import RealEnv, _missing

# examples/slurm of the checkout (the partitions file admins start from).
REPO = Path(os.environ.get("GYM_PY_SRC") or Path(__file__).resolve().parent.parent).parent
SANDBOXES = 4


def _slurm_nodes() -> list:
    if not shutil.which("scontrol") or not shutil.which("sbatch"):
        _missing("SLURM commands are not on PATH (scripts/slurm-cluster.sh up)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if " is UP" not in ping.stdout:
        _missing(f"the SLURM controller is not up: {ping.stdout.strip()} {ping.stderr.strip()}")
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%t"], capture_output=True, text=True).stdout.split()
    nodes = [n for n, _, s in (line.partition("|") for line in out) if s.startswith(("idle", "mix", "alloc"))]
    if not nodes:
        _missing(f"no usable SLURM node: {out}")
    return sorted(set(nodes))


class SlurmPlacement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = RealEnv()
        cls.nodes = _slurm_nodes()
        opts = cls.env.provider_options()
        opts["gym"]["placement"] = "slurm"
        opts["gym"]["slurm"] = {"partitions_file": str(REPO / "examples" / "slurm" / "partitions.yaml")}
        cls.opts = opts
        cls.provider = GymApptainerProvider(**opts)

    @classmethod
    def tearDownClass(cls):
        cls.env.cleanup(cls.provider.config_path)

    def test_provider_on_slurm(self):
        p = self.provider

        async def one(tmp: Path):
            h = await p.create(SandboxSpec(image=self.env.image, env={"A": "a"}, resources={"cpu": 1, "memory_mib": 256}))
            try:
                out = {}
                out["status"] = await p.status(h)
                r = await p.exec(h, 'echo "$A $B"; exit 3', env={"B": "b"})
                out["exec"] = (r.return_code, r.stdout, r.error_type)
                r = await p.exec(h, "echo never", timeout_s=0)
                out["timeout0"] = (r.return_code, r.error_type)
                out["stdin"] = (await p.exec(h, "wc -c", stdin=b"\x00\x01\x02")).stdout.strip()
                src = tmp / "src"
                src.parent.mkdir(parents=True, exist_ok=True)
                src.write_bytes(os.urandom(100_000))
                for remote in ("/sandbox/f", "/tmp/g"):
                    await p.upload_file(h, src, remote)
                    await p.download_file(h, remote, tmp / "back" / remote.strip("/"))
                    out[remote] = (tmp / "back" / remote.strip("/")).read_bytes() == src.read_bytes()
                # The endpoint names the sandbox's node: the hostname inside it
                # (each node of the namespaced test cluster has its own).
                node = (await p.exec(h, "hostname")).stdout.strip()
                out["on a node"] = node in self.nodes
                out["endpoint"] = (await p.endpoint(h, 8080)).endpoint == f"http://{node}:8080"
                other = GymApptainerProvider(**self.opts)
                h2 = await other.connect(await p.serialize_handle(h))
                out["connect"] = (await other.exec(h2, 'echo "$A"')).stdout
                await other.aclose()
            finally:
                await p.close(h)
            await p.close(h)
            out["closed"] = await p.status(h)
            r = await p.exec(h, "true")
            out["after close"] = (r.return_code, r.error_type)
            return out

        async def all_():
            with tempfile.TemporaryDirectory() as t:
                try:
                    return await asyncio.gather(*(one(Path(t, str(i))) for i in range(SANDBOXES)))
                finally:
                    await p.aclose()

        want = {
            "status": SandboxStatus.RUNNING,
            "exec": (3, "a b\n", None),
            "timeout0": (125, "timeout"),
            "stdin": "3",
            "/sandbox/f": True,
            "/tmp/g": True,
            "on a node": True,
            "endpoint": True,
            "connect": "a\n",
            "closed": SandboxStatus.STOPPED,
            "after close": (125, "sandbox"),
        }
        for got in asyncio.run(all_()):
            self.assertEqual(got, want)


if __name__ == "__main__":
    unittest.main()
