#!/usr/bin/env python3
"""Benchmark of the Python client against the real gym-host serve.

1. Exec round trip: ``Sandbox.exec("true")`` through the Python client (sync
   and asyncio) against raw ``apptainer exec instance://NAME sh -c true`` on
   the same instance, alternating call by call in one run; prints each
   one's median/p90 and the ratio ours/raw of the medians.
2. Fan-out: one asyncio loop drives S sandboxes x E execs each (the
   sandboxes concurrently, each sandbox's execs one after another); prints
   the wall time and the per-exec p50/p99.

    PATH=$PWD/bin:$PATH python3 python/bench/bench.py --image /var/lib/gym-apptainer/images/busybox.sif

Run it alone on the machine (flock -o /tmp/gym-real.lock ...): it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the source tree, when not installed

from gym_apptainer import AsyncClient, Client  # noqa: E402
from gym_apptainer.configfile import build_config, write_config  # noqa: E402


def pct(xs: List[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def bench_round_trip(config: str, gym_host: str, image: str, n: int, apptainer: str) -> None:
    with Client(config=config, gym_host=gym_host) as c, c.create(image=image) as sb:
        instance = sb.status().instance
        raw_argv = [apptainer, "exec", f"instance://{instance}", "sh", "-c", "true"]
        times: Dict[str, List[float]] = {"python sync": [], "python asyncio": [], "raw apptainer exec": []}

        async def run_async(ac: AsyncClient) -> float:
            t = time.perf_counter()
            r = await ac.exec(sb.id, "true")
            d = time.perf_counter() - t
            assert r.exit_code == 0, r
            return d

        loop = asyncio.new_event_loop()
        ac = AsyncClient(config=config, gym_host=gym_host)
        try:
            for i in range(n + 3):  # 3 warm-up rounds
                t = time.perf_counter()
                r = sb.exec("true")
                d_sync = time.perf_counter() - t
                assert r.exit_code == 0, r
                d_async = loop.run_until_complete(run_async(ac))
                t = time.perf_counter()
                subprocess.run(raw_argv, check=True, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                d_raw = time.perf_counter() - t
                if i >= 3:
                    times["python sync"].append(d_sync)
                    times["python asyncio"].append(d_async)
                    times["raw apptainer exec"].append(d_raw)
        finally:
            loop.run_until_complete(ac.aclose())
            loop.close()
    raw = statistics.median(times["raw apptainer exec"])
    print(f"\n== exec `true` round trip, {n} calls each, alternating ==")
    print(f"{'':22} {'median':>10} {'p90':>10} {'ours/raw':>9}")
    for k, v in times.items():
        print(f"{k:22} {ms(statistics.median(v)):>10} {ms(pct(v, 90)):>10} {statistics.median(v) / raw:>8.2f}x")


async def bench_fan_out(config: str, gym_host: str, image: str, sandboxes: int, execs: int) -> None:
    async with AsyncClient(config=config, gym_host=gym_host) as c:
        t = time.perf_counter()
        made = await asyncio.gather(*(c.create(image=image) for _ in range(sandboxes)), return_exceptions=True)
        create_wall = time.perf_counter() - t
        sbs = [m for m in made if not isinstance(m, BaseException)]
        failed = [m for m in made if isinstance(m, BaseException)]
        lat: List[float] = []
        bad = 0

        async def drive(sb) -> None:
            nonlocal bad
            for j in range(execs):
                t0 = time.perf_counter()
                r = await sb.exec(f"echo {j}")
                lat.append(time.perf_counter() - t0)
                if r.exit_code != 0 or r.stdout != f"{j}\n":
                    bad += 1

        try:
            t = time.perf_counter()
            await asyncio.gather(*(drive(sb) for sb in sbs))
            wall = time.perf_counter() - t
        finally:
            t = time.perf_counter()
            await asyncio.gather(*(sb.close() for sb in sbs), return_exceptions=True)
            close_wall = time.perf_counter() - t
    print(f"\n== one asyncio loop: {len(sbs)} sandboxes x {execs} execs ==")
    if failed:
        print(f"create failures: {len(failed)} (first: {failed[0]!r})")
    print(f"create {len(sbs)} at once:  {create_wall:.2f} s wall")
    print(f"execs:  {len(lat)} in {wall:.2f} s wall ({len(lat) / wall:.1f}/s), "
          f"per exec p50 {ms(pct(lat, 50))}, p99 {ms(pct(lat, 99))}, wrong results {bad}")
    print(f"close {len(sbs)} at once:   {close_wall:.2f} s wall")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="/var/lib/gym-apptainer/images/busybox.sif")
    ap.add_argument("--gym-host", default=os.environ.get("GYM_HOST") or shutil.which("gym-host"))
    ap.add_argument("--config", help="gym-host config (default: a private state dir, --userns as root)")
    ap.add_argument("--calls", type=int, default=50, help="round trips per kind")
    ap.add_argument("--sandboxes", type=int, default=64)
    ap.add_argument("--execs", type=int, default=20)
    a = ap.parse_args()
    if not a.gym_host:
        ap.error("gym-host not found: put it on PATH or pass --gym-host")
    apptainer = shutil.which("apptainer")
    if not apptainer:
        ap.error("apptainer is not on PATH")
    tmp = tempfile.mkdtemp(prefix="gym-pybench-")
    config = a.config
    if not config:
        gym = {"state_dir": os.path.join(tmp, "state")}
        if os.path.isfile("/usr/local/etc/apptainer/apptainer-cgroupfs.conf"):
            gym["apptainer_conf"] = "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"
        create = {"extra_start_args": ["--userns"]} if os.getuid() == 0 else None
        config = str(write_config(build_config(create=create, gym=gym), Path(tmp)))
    print(f"gym-host {a.gym_host}, config {config}, image {a.image}, {os.cpu_count()} CPUs")
    try:
        bench_round_trip(config, a.gym_host, a.image, a.calls, apptainer)
        asyncio.run(bench_fan_out(config, a.gym_host, a.image, a.sandboxes, a.execs))
    finally:
        if not a.config:
            subprocess.run([a.gym_host, "--config", config, "daemon", "stop"], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
