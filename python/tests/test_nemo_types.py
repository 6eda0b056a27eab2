"""The mirrors of NeMo Gym's types match NeMo Gym's own (its base.py, kept
in tests/nemo_gym_upstream): fields, defaults, enum values, validation."""

import dataclasses
import importlib.util
import sys
import unittest
from pathlib import Path

from gym_apptainer import _nemo_types as mirror

BASE = Path(__file__).resolve().parent / "nemo_gym_upstream" / "nemo_gym" / "sandbox" / "providers" / "base.py"
CLASSES = ["SandboxEndpoint", "SandboxResources", "SandboxSpec", "SandboxHandle", "SandboxExecResult", "SandboxPtySpec"]


def _field(f):
    # A factory is compared by name: each module has its own SandboxResources.
    return f.name, f.default, getattr(f.default_factory, "__name__", f.default_factory)


@unittest.skipIf(sys.version_info < (3, 10), "NeMo Gym's own source needs Python >= 3.10")
class MirrorsMatch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        spec = importlib.util.spec_from_file_location("nemo_base_under_test", BASE)
        cls.up = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = cls.up
        spec.loader.exec_module(cls.up)

    def test_dataclasses(self):
        for name in CLASSES:
            ours, theirs = getattr(mirror, name), getattr(self.up, name)
            f_ours = [_field(f) for f in dataclasses.fields(ours)]
            f_theirs = [_field(f) for f in dataclasses.fields(theirs)]
            self.assertEqual(f_ours, f_theirs, name)
            self.assertEqual(ours.__dataclass_params__.frozen, theirs.__dataclass_params__.frozen, name)

    def test_status_and_errors(self):
        self.assertEqual([(s.name, s.value) for s in mirror.SandboxStatus],
                         [(s.name, s.value) for s in self.up.SandboxStatus])
        self.assertTrue(issubclass(mirror.SandboxCreateVerificationError, mirror.SandboxCreateError))
        self.assertTrue(issubclass(mirror.SandboxCreateError, RuntimeError))

    def test_same_validation(self):
        for mod in (mirror, self.up):
            s = mod.SandboxSpec(image="x", resources={"cpu": "2"}, ports=["80", 443])
            self.assertEqual((s.resources.cpu, s.ports), (2.0, (80, 443)))
            for bad in ({"resources": {"cpus": 1}}, {"ports": [80, 80]}, {"ports": [0]}, {"ports": [True]}):
                with self.assertRaises(ValueError, msg=f"{mod.__name__} {bad}"):
                    mod.SandboxSpec(**bad)
            with self.assertRaises(ValueError):
                mod.SandboxEndpoint("not-a-url")
            self.assertEqual(mod.SandboxEndpoint(" http://h:1 ", {"a": 1}).headers, {"a": "1"})


if __name__ == "__main__":
    unittest.main()
