"""The real gym-host, apptainer and images for integration tests.

GYM_BIN_DIR (with gym-host in it) turns them on; GYM_TEST_IMAGES is where
the test images are (default /var/lib/gym-apptainer/images). Without
GYM_BIN_DIR they skip, except with CI=true, where anything missing fails:
a CI run that does not test everything is a failed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path
from typing import Any, Dict, Optional

APPTAINER_CONF = "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        raise AssertionError(f"CI=true and {what}: the integration tests cannot run")
    raise unittest.SkipTest(what)


class RealEnv:
    """gym-host, an image, and a private state dir (so tests do not touch
    anyone's sandboxes and their daemon is theirs alone)."""

    def __init__(self) -> None:
        bin_dir = os.environ.get("GYM_BIN_DIR")
        if not bin_dir:
            _missing("GYM_BIN_DIR is not set (the directory with gym-host)")
        self.gym_host = str(Path(bin_dir, "gym-host").resolve())
        if not os.access(self.gym_host, os.X_OK):
            _missing(f"{self.gym_host} is missing (run ./scripts/setup.sh)")
        if not shutil.which("apptainer"):
            _missing("apptainer is not on PATH")
        images = Path(os.environ.get("GYM_TEST_IMAGES", "/var/lib/gym-apptainer/images"))
        self.image = str(images / "busybox.sif")
        if not os.path.isfile(self.image):
            _missing(f"{self.image} is missing (scripts/build-test-images.sh)")
        self.dir = tempfile.mkdtemp(prefix="gym-pytest-")
        self.state_dir = os.path.join(self.dir, "state")
        # The generated configs and the daemons' records go under the test's
        # own dir (the provider writes configs to $XDG_STATE_HOME/...), so a
        # run leaves nothing behind and never meets another run's daemon.
        os.environ["XDG_STATE_HOME"] = os.path.join(self.dir, "xdg-state")

    def provider_options(self) -> Dict[str, Any]:
        """NeMo Gym provider options for this machine (as examples/sandbox.yaml)."""
        gym: Dict[str, Any] = {"state_dir": self.state_dir, "placement": "local"}
        if os.path.isfile(APPTAINER_CONF):
            gym["apptainer_conf"] = APPTAINER_CONF
        opts: Dict[str, Any] = {"gym": gym, "gym_host": self.gym_host}
        if os.getuid() == 0:
            # As root without CAP_SYS_RESOURCE in the bounding set, plain
            # instance start fails; --userns fixes it (gym-host doctor says).
            opts["create"] = {"extra_start_args": ["--userns"]}
        return opts

    def config_file(self) -> str:
        """The same settings as a gym-host config file, for the plain clients."""
        from gym_apptainer.configfile import build_config, write_config

        o = self.provider_options()
        doc = build_config(create=o.get("create"), gym=o["gym"])
        return str(write_config(doc, Path(self.dir)))

    def gym_host_run(self, config: Optional[str], *args: str) -> "subprocess.CompletedProcess[str]":
        argv = [self.gym_host] + (["--config", config] if config else []) + list(args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def cleanup(self, config: Optional[str]) -> None:
        """Close what the tests left and stop their daemon."""
        self.gym_host_run(config, "close", "--all")
        self.gym_host_run(config, "daemon", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
