"""Run by test_pty.WithNemoGymItself with NeMo Gym's source on sys.path and
$GYM_SERVICE_SOCKET pointing at the fake PTY service: NeMo Gym's own
AsyncSandbox.pty facade (one-shot execs, pipe mode, a live shell reused by
exec) drives the provider's PTY sessions, and the types are NeMo Gym's."""

import asyncio
import sys

from nemo_gym.sandbox.api import AsyncSandbox
from nemo_gym.sandbox.providers import base


def main() -> None:
    import gym_apptainer.nemo_gym as ng
    import gym_apptainer.pty as gp

    assert gp.SandboxPtyError is base.SandboxPtyError, "PtyError must be NeMo Gym's SandboxPtyError"

    async def run() -> None:
        provider = ng.GymApptainerProvider()
        assert isinstance(provider, base.SupportsSandboxPty)
        sb = await AsyncSandbox.connect({"provider": "gym_apptainer", "version": 1, "sandbox_id": "gym-1"}, provider=provider)
        r = await sb.pty.exec("echo one-shot; exit 3", timeout_s=30)
        assert (r.return_code, r.stderr) == (3, None) and "one-shot" in r.stdout, r
        r = await sb.pty.exec("echo out; echo err >&2", pty=False, timeout_s=30)
        assert (r.return_code, r.stdout, r.stderr) == (0, "out\n", "err\n"), r
        session = await sb.pty.create()
        assert isinstance(session, base.SandboxPtySession), type(session)
        assert (session.mode, session.closed) == ("pty", False)
        await sb.pty.exec("X=42", timeout_s=30)
        r = await sb.pty.exec("echo x-$X; false", timeout_s=30)
        assert r.return_code == 1 and "x-42" in r.stdout, r
        r = await sb.pty.exec("sleep 5", timeout_s=0.2)
        assert (r.return_code, r.error_type) == (125, "timeout"), r
        assert session.closed, "a timed-out implicit session is retired"
        await provider.aclose()

    asyncio.run(run())
    print("OK")


if __name__ == "__main__":
    sys.exit(main())
