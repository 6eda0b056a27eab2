"""The in-tree build backend: the wheel pip installs, and its metadata."""

import ast
import base64
import csv
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import unittest
import zipfile
from pathlib import Path

ROOT = Path(os.environ.get("GYM_PY_SRC") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT / "_build"))
import gym_apptainer_build as backend  # noqa: E402


class Backend(unittest.TestCase):
    def test_wheel(self):
        with tempfile.TemporaryDirectory() as d:
            name = backend.build_wheel(d)
            self.assertEqual(name, "gym_apptainer-0.1.0-py3-none-any.whl")
            with zipfile.ZipFile(Path(d, name)) as zf:
                names = set(zf.namelist())
                info = "gym_apptainer-0.1.0.dist-info"
                for n in ("METADATA", "WHEEL", "RECORD", "entry_points.txt"):
                    self.assertIn(f"{info}/{n}", names)
                self.assertIn("gym_apptainer/nemo_gym.py", names)
                self.assertIn("gym_apptainer/py.typed", names)
                self.assertFalse([n for n in names if "__pycache__" in n or n.startswith("tests/")])
                eps = zf.read(f"{info}/entry_points.txt").decode()
                self.assertIn("[nemo_gym.sandbox_providers]\ngym_apptainer = gym_apptainer.nemo_gym:GymApptainerProvider", eps)
                meta = zf.read(f"{info}/METADATA").decode()
                self.assertIn("Name: gym-apptainer\nVersion: 0.1.0\n", meta)
                self.assertIn("Requires-Python: >=3.9", meta)
                rows = list(csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())))
                self.assertEqual({r[0] for r in rows}, names)
                for path, digest, size in rows:
                    if path.endswith("RECORD"):
                        continue
                    data = zf.read(path)
                    want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual((digest, int(size)), (want, len(data)), path)

    def test_sdist(self):
        with tempfile.TemporaryDirectory() as d:
            name = backend.build_sdist(d)
            with tarfile.open(Path(d, name)) as tf:
                names = tf.getnames()
        self.assertIn("gym_apptainer-0.1.0/PKG-INFO", names)
        self.assertIn("gym_apptainer-0.1.0/pyproject.toml", names)
        self.assertIn("gym_apptainer-0.1.0/_build/gym_apptainer_build.py", names)

    def test_pyproject_reader_without_tomllib(self):
        mini = backend._mini_toml((ROOT / "pyproject.toml").read_text())
        self.assertEqual(mini["build-system"]["backend-path"], ["_build"])
        self.assertEqual(mini["build-system"]["requires"], [])
        if sys.version_info >= (3, 11):
            import tomllib

            self.assertEqual(mini, tomllib.loads((ROOT / "pyproject.toml").read_text()))

    def test_version_matches(self):
        from gym_apptainer import __version__

        self.assertEqual(__version__, backend.read_pyproject()["project"]["version"])

    def test_python39_syntax(self):
        for path in sorted((ROOT / "gym_apptainer").glob("*.py")) + [ROOT / "_build" / "gym_apptainer_build.py"]:
            ast.parse(path.read_text(), str(path), feature_version=(3, 9))


if __name__ == "__main__":
    unittest.main()
