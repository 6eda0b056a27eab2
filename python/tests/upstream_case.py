"""Run by test_provider.WithNemoGymItself with NeMo Gym's source on sys.path
and $GYM_SERVICE_SOCKET pointing at a fake service: NeMo Gym's registry
finds the provider (by entry point when installed, else registered by
hand), its AsyncSandbox facade drives it, and every type is NeMo Gym's."""

import asyncio
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

from nemo_gym.sandbox.api import AsyncSandbox
from nemo_gym.sandbox.providers import base, registry


def main() -> None:
    import gym_apptainer.nemo_gym as ng

    assert ng.USING_NEMO_GYM_TYPES, "nemo_gym imports but its types are not used"
    assert ng.SandboxSpec is base.SandboxSpec
    installed = any(ep.name == "gym_apptainer" for ep in entry_points(group=registry.ENTRY_POINT_GROUP))
    if not installed:
        registry.register_provider("gym_apptainer", ng.GymApptainerProvider)
    print("via entry point" if installed else "registered by hand")

    async def run() -> None:
        spec = base.SandboxSpec(image="busybox.sif", env={"A": "1"}, files={"/sandbox/seed.txt": "seed"}, ports=[8080])
        async with AsyncSandbox({"gym_apptainer": {"exec": {"default_timeout_s": 30}}}, spec) as sb:
            await sb.start()
            r = await sb.exec("cat \"$SANDBOX_ROOT/sandbox/seed.txt\"; echo $A")  # the fake runs on the host
            assert isinstance(r, base.SandboxExecResult), type(r)
            assert (r.return_code, r.stdout) == (0, "seed1\n"), r
            assert await sb.status() == base.SandboxStatus.RUNNING
            ep = await sb.endpoint(8080)
            assert isinstance(ep, base.SandboxEndpoint) and ep.endpoint.endswith(":8080"), ep
            d = await sb.serialize()
            other = registry.create_provider({"gym_apptainer": {}})
            sb2 = await AsyncSandbox.connect(d, provider=other)
            assert (await sb2.exec("echo $A")).stdout == "1\n"
            with tempfile.TemporaryDirectory() as t:
                await sb.download("/sandbox/seed.txt", Path(t, "a", "b"))
                assert Path(t, "a", "b").read_text() == "seed"
            await other.aclose()
        assert await sb.status() == base.SandboxStatus.STOPPED

    asyncio.run(run())

    # NeMo Gym's synchronous facade runs the provider on a loop thread of its own.
    from nemo_gym.sandbox.api import Sandbox

    with Sandbox({"gym_apptainer": {}}, base.SandboxSpec(image="busybox.sif")) as sync_sb:
        sync_sb.start()
        r = sync_sb.exec("echo sync; exit 5")
        assert (r.return_code, r.stdout) == (5, "sync\n"), r
        assert sync_sb.status() == base.SandboxStatus.RUNNING
    assert sync_sb.status() == base.SandboxStatus.STOPPED
    print("OK")


if __name__ == "__main__":
    sys.exit(main())
