"""Storage faults through the binding and mab.flask: under sync "always" a
reward that could not be made durable raises MabError(ESTORAGE) and
mab.flask answers 503, not an acknowledgement; the failure streak goes to
the "mab" logger (first failure, summary, recovery). The disk is a small
tmpfs mounted by the test (root); where mounting is impossible the test is
skipped and says so."""
import logging
import os
import subprocess
import sys
import threading
import time
import unittest

import mab
import mab.flask as mf
import shop_app
from support import TempDirTest

POLL_S = 30  # bound on waiting for libmab's writer and the log thread (not a timing assertion)


class Records(logging.Handler):
    """The "mab" logger's records, from any thread."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.guard = threading.Lock()
        self.messages = []

    def emit(self, record):
        with self.guard:
            self.messages.append((record.levelname, record.getMessage()))

    def matching(self, text):
        with self.guard:
            return [m for m in self.messages if text in m[1]]

    def wait_for(self, text):
        for _ in range(POLL_S * 10):
            if self.matching(text):
                return True
            time.sleep(0.1)
        return False


class FullDiskTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.disk = self.path("disk")
        os.makedirs(self.disk)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", self.disk],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            sys.stderr.write("\n" + "=" * 70 + "\nSKIPPED: cannot mount a tmpfs for the full-disk "
                             "tests: %s\n" % mounted.stderr.strip() + "=" * 70 + "\n")
            raise unittest.SkipTest("cannot mount a tmpfs: " + mounted.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", self.disk], check=True)
        self.records = Records()
        logger = logging.getLogger("mab")
        logger.addHandler(self.records)
        self.addCleanup(logger.removeHandler, self.records)

    def fill(self):
        fd = os.open(os.path.join(self.disk, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096) > 0:
                pass
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)

    def make_room(self):
        os.unlink(os.path.join(self.disk, "filler"))

    def test_binding_raises_and_logs_the_streak(self):
        config = self.write_config(storage={"plugin": "json_file", "sync": "always",
                                            "path": os.path.join(self.disk, "state.json")})
        engine = mab.Engine(config, storage_log_interval=1)
        self.addCleanup(engine.close)
        adapter = mab.Adapter(engine)
        with adapter.begin() as rq:
            rq.choose("color")
            self.assertTrue(rq.reward("color").counted)
        self.fill()
        # json_file appends each reward to its journal, whose last page may
        # still have room: rewards are written (and counted) until one is not.
        raised = None
        for _ in range(300):
            with adapter.begin() as rq:
                rq.choose("color")
                try:
                    self.assertTrue(rq.reward("color").counted)
                except mab.MabError as e:
                    raised = e
            if raised:
                break
        self.assertIsNotNone(raised, "no reward failed on a full disk (300 tried)")
        self.assertEqual(raised.code, mab.ESTORAGE)
        self.assertIn("No space left on device", raised.message)
        first = self.records.matching("writing to storage (json_file) failed")
        self.assertEqual(len(first), 1, self.records.messages)
        self.assertEqual(first[0][0], "ERROR")
        self.assertIn("No space left on device", first[0][1])
        self.assertTrue(self.records.wait_for("writing to storage (json_file) still fails"),
                        self.records.messages)
        self.assertEqual(len(self.records.matching("writing to storage (json_file) failed")), 1,
                         "a streak has one first failure: %s" % self.records.messages)
        self.make_room()
        self.assertTrue(self.records.wait_for("writing to storage (json_file) succeeds again"),
                        self.records.messages)
        with adapter.begin() as rq:
            rq.choose("color")
            self.assertTrue(rq.reward("color").counted)
        sys.stderr.write("\nthe streak in the log: %s\n" % [m for _, m in self.records.messages])

    def test_flask_answers_503(self):
        app = shop_app.create_app(self.path("instance"), MAB_DEBUG_HEADERS=False,
                                  MAB_STORAGE_ENGINE="JSONBanditStorage",
                                  MAB_STORAGE_OPTS={"path": os.path.join(self.disk, "s.json"),
                                                    "sync": "always"})
        self.addCleanup(mf.close, app)
        c = app.test_client(use_cookies=False)

        def cookie():
            for header in c.get("/").headers.getlist("Set-Cookie"):
                if header.startswith("MAB="):
                    return header.split(";")[0]
            self.fail("no cookie")

        self.assertEqual(c.get("/buy", headers={"Cookie": cookie()}).status_code, 200)
        self.fill()
        # Rewards land in the journal's last page while it has room (see above).
        for _ in range(300):
            r = c.get("/buy", headers={"Cookie": cookie()})
            if r.status_code != 200:
                break
        self.assertEqual(r.status_code, 503, r.data)
        self.assertNotIn(b"No space", r.data)  # the reason is logged, not sent
        r = c.get("/r?to=/thanks", headers={"Cookie": cookie()})
        self.assertEqual(r.status_code, 503, r.data)
        self.assertIsNone(r.headers.get("Location"))
        self.assertEqual(len(self.records.matching("writing to storage (json_file) failed")), 1,
                         self.records.messages)
        self.make_room()
        self.assertTrue(self.records.wait_for("writing to storage (json_file) succeeds again"),
                        self.records.messages)
        self.assertEqual(c.get("/buy", headers={"Cookie": cookie()}).status_code, 200)


if __name__ == "__main__":
    unittest.main()
