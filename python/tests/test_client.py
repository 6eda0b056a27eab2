"""The synchronous Client against the fake service."""

import os
import tempfile
import threading
import unittest
from pathlib import Path

from gym_apptainer import Client, errors
from gym_apptainer.types import OutputChunk

from .fakeservice import FakeService


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.svc = FakeService().start()
        self.addCleanup(self.svc.stop)
        self.client = Client(self.svc.socket)
        self.addCleanup(self.client.close_connections)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, ignore_errors=True))

    def test_exec_results(self):
        with self.client.create(image="busybox.sif", env={"A": "create"}) as sb:
            r = sb.exec("echo out; echo err >&2; exit 3")
            self.assertEqual((r.exit_code, r.stdout, r.stderr, r.error_type), (3, "out\n", "err\n", None))
            self.assertFalse(r.ok)
            self.assertEqual(sb.exec("echo $A").stdout, "create\n")
            self.assertEqual(sb.exec("echo $A", env={"A": "exec"}).stdout, "exec\n")
            self.assertEqual(sb.exec("cat", stdin=b"\x00bytes").stdout, "\x00bytes")
            r = sb.exec("sleep 5", timeout_s=0)
            self.assertEqual((r.exit_code, r.error_type), (125, "timeout"))

    def test_keep_alive(self):
        with self.client.create(image="busybox.sif") as sb:
            for _ in range(20):
                sb.exec("true")
        self.assertEqual(self.svc.connections, 1)

    def test_stream_arrives_as_produced(self):
        # The command waits for a file that the test uploads only after it
        # has read the command's first line: no output could come otherwise.
        sb = self.client.create(image="busybox.sif")
        gate = Path(self.tmp, "gate")
        gate.write_text("go")
        cmd = 'echo ready; while [ ! -e "$SANDBOX_ROOT/gate" ]; do sleep 0.01; done; echo done >&2; exit 7'
        with sb.exec_stream(cmd) as st:
            seen = []
            for chunk in st:
                self.assertIsInstance(chunk, OutputChunk)
                seen.append((chunk.stream, chunk.data))
                if chunk.data == b"ready\n":
                    self.client.upload(sb.id, gate, "/gate")
        self.assertEqual(seen, [("stdout", b"ready\n"), ("stderr", b"done\n")])
        self.assertEqual(st.exit.exit_code, 7)
        # Its connection went back to the pool (the upload took a second one).
        before = self.svc.connections
        sb.exec("true")
        sb.exec("true")
        self.assertEqual(self.svc.connections, before)

    def test_stream_result(self):
        sb = self.client.create(image="busybox.sif")
        r = sb.exec_stream("printf abc; printf xyz >&2; exit 2").result()
        self.assertEqual((r.exit_code, r.stdout, r.stderr, r.stdout_bytes), (2, "abc", "xyz", 3))

    def test_leaving_a_stream_early_kills_the_command(self):
        sb = self.client.create(image="busybox.sif")
        with sb.exec_stream("echo first; exec sleep 60") as st:
            for chunk in st:
                break
        sb.exec("true")  # a fresh connection works
        for _ in range(500):
            if self.svc.disconnect_kills:
                break
            threading.Event().wait(0.01)
        self.assertEqual(self.svc.disconnect_kills, 1)

    def test_files_round_trip_streamed(self):
        sb = self.client.create(image="busybox.sif")
        src = Path(self.tmp, "big.bin")
        data = os.urandom(3 * 1024 * 1024 + 7)
        src.write_bytes(data)
        self.assertEqual(sb.upload(src, "/sandbox/big.bin"), len(data))
        self.assertGreater(len(self.svc.upload_reads), 10)  # read in pieces, as sent
        dst = Path(self.tmp, "new", "dir", "big.bin")  # parents do not exist
        self.assertEqual(sb.download("/sandbox/big.bin", dst), len(data))
        self.assertEqual(dst.read_bytes(), data)
        self.assertEqual(dst.stat().st_mode & 0o777, 0o644)

    def test_failed_download_leaves_no_file(self):
        sb = self.client.create(image="busybox.sif")
        dst = Path(self.tmp, "d", "x")
        with self.assertRaises(errors.InvalidRequest):
            sb.download("/no/such", dst)
        self.assertFalse(dst.exists())
        self.assertEqual(os.listdir(dst.parent) if dst.parent.exists() else [], [])

    def test_error_answered_before_the_upload_was_read(self):
        # The service answers 404 without reading an 8 MiB body and closes:
        # the caller gets that answer, not a broken pipe.
        src = Path(self.tmp, "big")
        src.write_bytes(os.urandom(8 << 20))
        with self.assertRaises(errors.NotFound):
            self.client.upload("gym-unknown", src, "/x")

    def test_upload_refuses_a_fifo(self):
        sb = self.client.create(image="busybox.sif")
        fifo = os.path.join(self.tmp, "fifo")
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # so opening it does not block
        self.addCleanup(os.close, fd)
        with self.assertRaises(errors.InvalidRequest):
            sb.upload(fifo, "/x")

    def test_status_close_list_gc(self):
        sb = self.client.create(image="busybox.sif", ttl_s=30.5)
        self.assertEqual(sb.status().state, "running")
        self.assertEqual(self.client.endpoint(sb.id, 8080).endpoint, "http://127.0.0.1:8080")
        self.assertEqual(self.svc.requests_to("/sandboxes")[0]["ttl_s"], 31)
        self.assertEqual([s.id for s in self.client.list().sandboxes], [sb.id])
        sb.close()
        sb.close()  # twice is success
        self.assertEqual(sb.status().state, "stopped")
        self.assertEqual(self.client.gc(dry_run=True).closed, [sb.id])
        with self.assertRaises(errors.NotFound) as cm:
            self.client.status("gym-never")
        self.assertEqual(cm.exception.status, 404)

    def test_errors_carry_error_type(self):
        with self.assertRaises(errors.SandboxFailed) as cm:
            self.client.create(image="broken.sif")
        self.assertEqual(cm.exception.error_type, "sandbox")
        with self.assertRaises(errors.InvalidRequest):
            self.client.create(image="")

    def test_forked_child_dials_its_own_connection(self):
        sb = self.client.create(image="busybox.sif")
        sb.exec("true")
        before = self.svc.connections
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its exec must not use the parent's connection
            try:
                ok = sb.exec("echo child").stdout == "child\n"
                os.write(w, b"ok" if ok else b"bad")
            finally:
                os._exit(0)
        os.close(w)
        got = os.read(r, 10)
        os.waitpid(pid, 0)
        os.close(r)
        self.assertEqual(got, b"ok")
        self.assertEqual(self.svc.connections, before + 1)
        self.assertEqual(sb.exec("echo parent").stdout, "parent\n")  # the parent's still works

    def test_threads_share_a_client(self):
        sb = self.client.create(image="busybox.sif")
        results = {}

        def run(i):
            results[i] = sb.exec(f"echo {i}").stdout

        ts = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(results, {i: f"{i}\n" for i in range(16)})


class ConnectionHandling(unittest.TestCase):
    def test_not_a_gym_service(self):
        with FakeService(version_header=False) as svc:
            with self.assertRaises(errors.Internal) as cm:
                Client(svc.socket).info()
            self.assertIn("Gym-Api-Version", str(cm.exception))

    def test_server_closing_connections(self):
        with FakeService(close_after_response=True) as svc:
            c = Client(svc.socket)
            sb = c.create(image="busybox.sif")
            for _ in range(5):
                self.assertEqual(sb.exec("echo x").stdout, "x\n")
                sb.status()
            self.assertEqual(svc.connections, 11)

    def test_no_service(self):
        d = tempfile.mkdtemp()
        with self.assertRaises(errors.ServiceConnectionError):
            Client(os.path.join(d, "none.sock")).info()


if __name__ == "__main__":
    unittest.main()
