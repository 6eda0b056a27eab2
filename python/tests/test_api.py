"""The request builders and error mapping, without any service."""

import json
import unittest

from gym_apptainer import _api, errors


class TimeoutField(unittest.TestCase):
    def test_nemo_gym_meaning(self):
        self.assertIsNone(_api.timeout_field(None))  # the config's default
        self.assertEqual(_api.timeout_field(0), 0)  # no time at all, not "default"
        self.assertEqual(_api.timeout_field(2.5), 2.5)

    def test_refused(self):
        for bad in (-1, float("nan"), float("inf"), "30", True):
            with self.assertRaises(errors.InvalidRequest, msg=repr(bad)):
                _api.timeout_field(bad)


class ExecBody(unittest.TestCase):
    def body(self, **kw):
        return json.loads(_api.exec_("sb1", "true", **kw).body)

    def test_timeout_null_is_sent(self):
        self.assertIn("timeout_s", self.body())
        self.assertIsNone(self.body()["timeout_s"])
        self.assertEqual(self.body(timeout_s=0)["timeout_s"], 0)

    def test_user_mapping(self):
        self.assertEqual(self.body(user=0)["user"], "root")
        self.assertEqual(self.body(user="root")["user"], "root")
        self.assertEqual(self.body(user=1000)["user"], "1000")
        self.assertEqual(self.body(user="nobody")["user"], "nobody")
        self.assertNotIn("user", self.body())

    def test_stdin(self):
        self.assertEqual(self.body(stdin="text")["stdin"], "text")
        self.assertEqual(self.body(stdin=b"\x00\xff")["stdin_b64"], "AP8=")

    def test_sandbox_id_is_quoted(self):
        self.assertEqual(_api.status("a/b").path, "/v1/sandboxes/a%2Fb")
        with self.assertRaises(errors.InvalidRequest):
            _api.status("")

    def test_remote_path_must_be_absolute(self):
        self.assertEqual(_api.upload("x", "/a b/c").path, "/v1/sandboxes/x/files?path=%2Fa+b%2Fc")
        with self.assertRaises(errors.InvalidRequest):
            _api.download("x", "rel/path")

    def test_image_paths(self):
        import os

        self.assertEqual(_api.local_image("img/busybox.sif"), os.path.abspath("img/busybox.sif"))
        self.assertEqual(_api.local_image("./x"), os.path.abspath("x"))
        for kept in ("/abs/x.sif", "docker://python:3.12", "ubuntu:22.04", "python", "oci-archive:/a.tar",
                     "registry.io/org/img:1"):
            self.assertEqual(_api.local_image(kept), kept)

    def test_upload_mode(self):
        self.assertTrue(_api.upload("x", "/a", 0o755).path.endswith("&mode=0755"))
        self.assertNotIn("mode", _api.upload("x", "/a").path)
        for bad in (-1, 0o10000, True, "755"):
            with self.assertRaises(errors.InvalidRequest):
                _api.upload("x", "/a", bad)

    def test_endpoint_port(self):
        for bad in (0, 65536, True, "80"):
            with self.assertRaises(errors.InvalidRequest):
                _api.endpoint("x", bad)


class Errors(unittest.TestCase):
    def test_each_type_has_its_class_and_builtin(self):
        cases = {
            "invalid": (errors.InvalidRequest, ValueError),
            "not_found": (errors.NotFound, LookupError),
            "timeout": (errors.Timeout, TimeoutError),
            "forbidden": (errors.Forbidden, PermissionError),
            "unavailable": (errors.Unavailable, errors.GymError),
            "sandbox": (errors.SandboxFailed, errors.GymError),
            "interrupted": (errors.Interrupted, errors.GymError),
            "internal": (errors.Internal, errors.GymError),
        }
        for word, (cls, base) in cases.items():
            e = errors.error_from_body(400, json.dumps({"error_type": word, "message": "m"}).encode())
            self.assertIsInstance(e, cls, word)
            self.assertIsInstance(e, base, word)
            self.assertEqual(e.error_type, word)
            self.assertEqual(e.message, "m")

    def test_unknown_word_is_kept(self):
        e = errors.error_from_body(418, b'{"error_type":"teapot","message":"m"}')
        self.assertEqual(type(e), errors.GymError)
        self.assertEqual(e.error_type, "teapot")

    def test_body_without_error_object(self):
        e = errors.error_from_body(502, b"<html>bad gateway</html>")
        self.assertIsInstance(e, errors.Internal)
        self.assertIn("502", str(e))

    def test_version_header(self):
        _api.check_version({"gym-api-version": "1"})
        with self.assertRaises(errors.Internal):
            _api.check_version({})
        with self.assertRaises(errors.Internal):
            _api.check_version({"gym-api-version": "2"})


if __name__ == "__main__":
    unittest.main()
