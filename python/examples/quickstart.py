#!/usr/bin/env python3
"""gym_apptainer quickstart: the plain client, then the NeMo Gym provider.

    pip install --no-index ./python        # standard library only
    export PATH=$PWD/bin:$PATH             # gym-host (./scripts/setup.sh builds it)
    python3 python/examples/quickstart.py /var/lib/gym-apptainer/images/busybox.sif

The client starts (or finds) the service itself with `gym-host serve`, using
$GYM_CONFIG (or pass config=...), so it reaches the same sandboxes as the CLI.
"""

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from gym_apptainer import Client
from gym_apptainer.nemo_gym import GymApptainerProvider, SandboxSpec


def plain_client(image: str) -> None:
    with Client() as client, client.create(image=image, env={"GREETING": "hello"}) as sb:
        r = sb.exec('echo "$GREETING from $(hostname)"; exit 3')
        print("exit", r.exit_code, "stdout", r.stdout.strip())

        with sb.exec_stream("for i in 1 2 3; do echo line $i; done") as stream:
            for chunk in stream:  # arrives as the command writes it
                print("chunk", chunk.stream, chunk.data.decode().strip())
        print("streamed exit", stream.exit.exit_code)

        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "in.txt").write_text("some input\n")
            sb.upload(Path(tmp, "in.txt"), "/sandbox/in.txt")
            sb.exec("wc -l < /sandbox/in.txt > /sandbox/count.txt")
            sb.download("/sandbox/count.txt", Path(tmp, "out", "count.txt"))
            print("lines", Path(tmp, "out", "count.txt").read_text().strip())
        print("status", sb.status().state)
    # Leaving the block closed the sandbox.


async def nemo_gym_provider(image: str) -> None:
    # NeMo Gym builds this from `sandbox: {gym_apptainer: {...}}` in its
    # config, i.e. GymApptainerProvider(exec={...}, create={...}, gym={...}).
    # Here it reads the CLI's config file when $GYM_CONFIG names one.
    if os.environ.get("GYM_CONFIG"):
        provider = GymApptainerProvider(config_file=os.environ["GYM_CONFIG"])
    else:
        provider = GymApptainerProvider(exec={"default_timeout_s": 60})
    handle = await provider.create(SandboxSpec(image=image))
    try:
        results = await asyncio.gather(*(provider.exec(handle, f"echo task {i}") for i in range(4)))
        print("provider", [r.stdout.strip() for r in results])
        r = await provider.exec(handle, "sleep 10", timeout_s=1)
        print("timeout", r.return_code, r.error_type)
    finally:
        await provider.close(handle)
        await provider.aclose()
    print("after close", (await provider.status(handle)).value)


if __name__ == "__main__":
    img = sys.argv[1] if len(sys.argv) > 1 else "docker://busybox:1.36"
    plain_client(img)
    asyncio.run(nemo_gym_provider(img))
