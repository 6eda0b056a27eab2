"""Finding or starting the service, and the config file it is given."""

import asyncio
import json
import os
import shutil
import stat
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from gym_apptainer import Client, AsyncClient, errors
from gym_apptainer.configfile import build_config, write_config
from gym_apptainer.discovery import SOCKET_ENV, Locator, discover

from .fakeservice import FakeService, fake_gym_host


class Discovery(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sockfile = os.path.join(self.dir, "socket")
        self.gym_host = fake_gym_host(self.dir, self.sockfile)
        env = {k: v for k, v in os.environ.items() if k not in (SOCKET_ENV, "GYM_HOST")}
        p = mock.patch.dict(os.environ, env, clear=True)
        p.start()
        self.addCleanup(p.stop)

    def argv_log(self):
        return Path(self.dir, "argv.log").read_text().splitlines()

    def test_runs_gym_host_serve_with_the_config(self):
        Path(self.sockfile).write_text("/run/x/api.sock")
        loc = Locator(gym_host=self.gym_host, config="/etc/gym.json")
        self.assertEqual(discover(loc), "/run/x/api.sock")
        self.assertEqual(self.argv_log(), ["--config /etc/gym.json serve --json"])

    def test_env_socket_wins(self):
        with mock.patch.dict(os.environ, {SOCKET_ENV: "/env.sock"}):
            self.assertEqual(discover(Locator(gym_host=self.gym_host)), "/env.sock")
        self.assertFalse(Path(self.dir, "argv.log").exists())

    def test_gym_host_failure_carries_its_error(self):
        Path(self.sockfile).write_text("fail")
        with self.assertRaises(errors.ServiceConnectionError) as cm:
            discover(Locator(gym_host=self.gym_host))
        self.assertIn("concurrency: must be >= 1", str(cm.exception))

    def test_no_gym_host(self):
        with mock.patch.dict(os.environ, {"PATH": self.dir + "/none"}):
            with self.assertRaises(errors.ServiceConnectionError) as cm:
                discover(Locator())
        self.assertIn("gym-host is not on PATH", str(cm.exception))

    def test_daemon_gone_is_found_again(self):
        # The first service goes away (a daemon idling out); the next call
        # runs gym-host serve again and reaches the new one.
        with FakeService() as a:
            Path(self.sockfile).write_text(a.socket)
            c = Client(gym_host=self.gym_host)
            sb = c.create(image="x")
        with FakeService() as b:
            Path(self.sockfile).write_text(b.socket)
            with self.assertRaises(errors.NotFound):  # the new service does not know it
                c.status(sb.id)
            self.assertEqual(c.info().api_version, 1)
            self.assertEqual(len(self.argv_log()), 2)

    def test_daemon_gone_is_found_again_async(self):
        async def run():
            with FakeService() as a:
                Path(self.sockfile).write_text(a.socket)
                c = AsyncClient(gym_host=self.gym_host)
                await c.info()
            with FakeService() as b:
                Path(self.sockfile).write_text(b.socket)
                self.assertEqual((await c.info()).api_version, 1)
            await c.aclose()

        asyncio.run(run())
        self.assertEqual(len(self.argv_log()), 2)


class ConfigFile(unittest.TestCase):
    def test_layout_and_paths(self):
        doc = build_config(
            exec={"default_timeout_s": 30},
            probe={"command": None, "timeout_s": 0},
            bin_path="rel/bin",
            gym={"state_dir": "state", "cache_dir": "~/c", "slurm": {"partitions_file": "p.yaml"}},
            default_metadata={"sandbox-api": "gym"},
        )
        self.assertEqual(doc["sandbox"]["apptainer"]["exec"], {"default_timeout_s": 30})
        self.assertEqual(doc["sandbox"]["apptainer"]["probe"], {"command": None, "timeout_s": 0})
        self.assertEqual(doc["sandbox"]["apptainer"]["bin_path"], os.path.abspath("rel/bin"))
        self.assertEqual(doc["gym"]["state_dir"], os.path.abspath("state"))
        self.assertEqual(doc["gym"]["cache_dir"], "~/c")  # gym-host expands ~
        self.assertEqual(doc["gym"]["slurm"]["partitions_file"], os.path.abspath("p.yaml"))
        self.assertEqual(doc["sandbox"]["default_metadata"], {"sandbox-api": "gym"})
        self.assertEqual(build_config(), {})

    def test_private_and_content_named(self):
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d, True)
        with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": str(d)}):
            p1 = write_config({"gym": {"placement": "local"}})
            p2 = write_config({"gym": {"placement": "local"}})
            p3 = write_config({"gym": {"placement": "slurm"}})
        self.assertEqual(p1, p2)
        self.assertNotEqual(p1, p3)
        self.assertEqual(stat.S_IMODE(p1.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(p1.parent.stat().st_mode), 0o700)
        self.assertEqual(json.loads(p1.read_text()), {"gym": {"placement": "local"}})


if __name__ == "__main__":
    unittest.main()
