"""The shop app under gunicorn with 4 worker processes sharing one LMDB
store: sticky assignments and rewards across workers, an exact number of
requests (curl), and exact totals in storage after a graceful stop. The app
is loaded with --preload and makes one request in gunicorn's master before
the workers fork, so each worker must open its own engine after the fork."""
import collections
import http.client
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import mab
try:
    import gunicorn as _gunicorn  # noqa: F401 (run with this Python: python -m gunicorn)
except ImportError:
    raise unittest.SkipTest("SKIPPED: gunicorn is not importable by " + sys.executable)

from support import PYTHON, TempDirTest, free_port, tool_env

VISITORS = 200      # each: choose, sticky choose, reward, reward again
ANONYMOUS = 1000    # GET / without a cookie, through curl
WORKERS = 4

WSGI = """
import os
import shop_app

app = shop_app.create_app(os.environ["SHOP_INSTANCE"], MAB_DEBUG_HEADERS=False,
                          MAB_STORAGE_ENGINE="LMDBBanditStorage",
                          MAB_STORAGE_OPTS={"path": os.environ["SHOP_LMDB"]})
# One request in the master, before the fork: opens an engine there.
assert app.test_client(use_cookies=False).get("/").status_code == 200
"""


class GunicornTest(TempDirTest):
    def start(self):
        with open(self.path("wsgi_shop.py"), "w") as f:
            f.write(textwrap.dedent(WSGI))
        self.port = free_port()
        env = dict(os.environ, SHOP_INSTANCE=self.path("instance"), SHOP_LMDB=self.path("lmdb"),
                   PYTHONPATH=self.tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(self.path("gunicorn.log"), "w")
        self.server = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "--workers", str(WORKERS), "--preload",
             "--bind", "127.0.0.1:%d" % self.port, "--graceful-timeout", "20",
             "wsgi_shop:app"], cwd=self.tmp, env=env, stdout=self.log, stderr=self.log)
        self.addCleanup(self.kill)
        for _ in range(200):
            if self.server.poll() is not None:
                self.fail("gunicorn exited: " + self.read_log())
            try:
                status, _, _ = self.get("/plain")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("gunicorn did not answer: " + self.read_log())

    def read_log(self):
        with open(self.path("gunicorn.log")) as f:
            return f.read()

    def kill(self):
        if self.server.poll() is None:
            self.server.kill()
            self.server.wait()
        self.log.close()

    def stop(self):
        """Graceful stop by pid: workers finish and close their engines."""
        self.server.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.wait(timeout=60), 0, self.read_log())

    def get(self, path, cookie=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            r = conn.getresponse()
            body = r.read()
            set_cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
            return r.status, body, dict(r.getheaders(), cookies=set_cookie)
        finally:
            conn.close()

    def visitor(self, workers, errors):
        try:
            status, body, h = self.get("/")
            assert status == 200 and len(h["cookies"]) == 1, (status, h)
            cookie = h["cookies"][0].split(";")[0]
            workers.add(h["X-Worker"])
            for _ in range(2):  # sticky in whichever worker answers
                status, again, h2 = self.get("/", cookie)
                assert (status, again, h2["cookies"]) == (200, body, []), (again, body, h2)
                workers.add(h2["X-Worker"])
            status, _, h = self.get("/buy", cookie)
            assert status == 200 and len(h["cookies"]) == 1, h
            rewarded = h["cookies"][0].split(";")[0]
            status, _, _ = self.get("/buy", rewarded)  # counts nothing: already rewarded
            assert status == 200
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    def test_four_workers_lmdb_exact_totals(self):
        self.start()
        workers, errors = set(), []
        threads = []
        for i in range(VISITORS):
            t = threading.Thread(target=self.visitor, args=(workers, errors))
            threads.append(t)
            t.start()
            if len(threads) >= 16:
                threads.pop(0).join()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreaterEqual(len(workers), 2, "every request went to one worker")
        self.assertNotIn(str(self.server.pid), workers)

        # Exactly ANONYMOUS requests without cookies, 16 at a time, with curl.
        with open(self.path("urls"), "w") as f:
            f.write('url = "http://127.0.0.1:%d/"\noutput = "/dev/null"\n' % self.port
                    * ANONYMOUS)
        out = subprocess.run(["curl", "-s", "--parallel", "--parallel-max", "16", "-K",
                              self.path("urls"), "-w", "%{http_code}\n"],
                             capture_output=True, text=True, check=True, timeout=300,
                             env=tool_env()).stdout.split()
        self.assertEqual(collections.Counter(out), {"200": ANONYMOUS})
        self.stop()

        config = os.path.join(self.path("instance"), "mab-shop.json")
        with mab.Engine(config) as engine:
            self.assertEqual(engine.storage_name, "lmdb")
            stats = engine.stats()
        # + 1: the master's request before the fork.
        for experiment in ("color", "txt"):
            arms = stats[experiment]
            self.assertEqual(sum(a.pulls for a in arms), VISITORS + ANONYMOUS + 1, arms)
            self.assertEqual(sum(a.rewards for a in arms), VISITORS, arms)
            self.assertEqual(sum(a.reward_sum for a in arms), VISITORS, arms)
        sys.stderr.write("gunicorn: %d workers answered; totals exact: %s\n" % (
            len(workers), {e: sum(a.pulls for a in arms) for e, arms in stats.items()}))


JSON_WSGI = """
import os
import shop_app

app = shop_app.create_app(os.environ["SHOP_INSTANCE"], MAB_DEBUG_HEADERS=False,
                          MAB_STORAGE_ENGINE="JSONBanditStorage",
                          MAB_STORAGE_OPTS=(os.environ["SHOP_JSON"],))
"""


class GunicornJsonFileTest(TempDirTest):
    """json_file is one process's storage: under gunicorn with several
    workers mab.flask refuses it at start-up, with one message naming LMDB;
    with one worker it serves."""

    def gunicorn(self, workers, *extra):
        with open(self.path("wsgi_json.py"), "w") as f:
            f.write(textwrap.dedent(JSON_WSGI))
        self.port = free_port()
        env = dict(os.environ, SHOP_INSTANCE=self.path("instance"),
                   SHOP_JSON=self.path("state.json"),
                   PYTHONPATH=self.tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(self.path("gunicorn.log"), "w")
        self.addCleanup(log.close)
        server = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "--workers", str(workers), *extra,
             "--bind", "127.0.0.1:%d" % self.port, "wsgi_json:app"],
            cwd=self.tmp, env=env, stdout=log, stderr=log)

        def kill():
            if server.poll() is None:
                server.kill()
                server.wait()
        self.addCleanup(kill)
        return server

    def read_log(self):
        with open(self.path("gunicorn.log")) as f:
            return f.read()

    def refused(self, *extra):
        server = self.gunicorn(4, *extra)
        try:
            rc = server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.fail("gunicorn with 4 workers and json_file storage kept running: "
                      + self.read_log())
        self.assertNotEqual(rc, 0, self.read_log())
        log = self.read_log()
        self.assertIn("storage json_file, which one process only may open, under gunicorn "
                      "with 4 worker processes: use LMDB", log)
        self.assertIn('MAB_STORAGE_ENGINE = "LMDBBanditStorage"', log)
        return log

    def test_four_workers_preloaded_refused_at_start(self):
        log = self.refused("--preload")
        self.assertEqual(log.count("which one process only may open"), 1, log)
        self.assertFalse(os.path.exists(self.path("state.json")), "a worker opened the store")

    def test_four_workers_refused_at_start(self):
        self.refused()

    def test_one_worker_serves(self):
        server = self.gunicorn(1)
        for _ in range(200):
            if server.poll() is not None:
                self.fail("gunicorn exited: " + self.read_log())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/")
                status = conn.getresponse().status
                conn.close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.fail("gunicorn did not answer: " + self.read_log())
        self.assertEqual(status, 200, self.read_log())
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(timeout=60), 0, self.read_log())


if __name__ == "__main__":
    unittest.main()
