"""Flask-MAB's own example app, ported with only its imports changed
(flask_mab_example.py): it serves, assigns, keeps the assignment and
rewards once, under Flask's test client (JSONBanditStorage, as written) and
under gunicorn with 4 workers on LMDB; the counts in storage are exact."""
import http.client
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import unittest

from support import MAB_CLI, PYTHON, TempDirTest, free_port, tool_env

VISITORS = 24
EXPERIMENTS = {"color_btn": ("green", "red", "blue"), "txt_btn": ("casual", "neutral", "formal")}


def write_templates(root):
    """The example's two templates (ours: the original's markup is not needed)."""
    os.makedirs(os.path.join(root, "example", "templates"), exist_ok=True)
    os.makedirs(os.path.join(root, "example", "static"), exist_ok=True)
    with open(os.path.join(root, "example", "templates", "ui.html"), "w") as f:
        f.write('<button style="color: {{ btn_color }}">{{ btn_text }}</button>\n')
    with open(os.path.join(root, "example", "templates", "btnclick.html"), "w") as f:
        f.write("<p>clicked</p>\n")


def debug_arms(header):
    """{experiment: arm} of an X-MAB-Debug value "KIND; exp:arm;exp:arm"."""
    _kind, _, rest = header.partition("; ")
    return dict(item.split(":", 1) for item in rest.split(";") if item)


def stored(test, config):
    """{experiment: (pulls, rewards)} from `mab stats --json CONFIG`."""
    out = subprocess.run([MAB_CLI, "stats", config, "--json"], capture_output=True, text=True,
                         env=tool_env(), check=True).stdout
    doc = json.loads(out)["experiments"]
    return {e: (sum(a["pulls"] for a in doc[e]["arms"].values()),
                sum(a["rewards"] for a in doc[e]["arms"].values())) for e in doc}


class ExampleTestClient(TempDirTest):
    def test_serves_assigns_rewards_once(self):
        write_templates(self.tmp)
        cwd = os.getcwd()
        os.chdir(self.tmp)  # the example's paths are relative to the working directory
        self.addCleanup(os.chdir, cwd)
        sys.modules.pop("flask_mab_example", None)
        example = importlib.import_module("flask_mab_example")
        self.addCleanup(sys.modules.pop, "flask_mab_example", None)
        import mab.flask
        client = example.app.test_client(use_cookies=False)
        for _ in range(VISITORS):
            r = client.get("/")
            self.assertEqual(r.status_code, 200)
            self.assertIn(b"<button", r.data)
            cookie = r.headers["Set-Cookie"].split(";")[0]
            self.assertTrue(r.headers["X-MAB-Debug"].startswith("STORE; "), r.headers)
            arms = debug_arms(r.headers["X-MAB-Debug"])
            self.assertEqual(set(arms), set(EXPERIMENTS))
            again = client.get("/", headers={"Cookie": cookie})
            self.assertEqual(debug_arms(again.headers["X-MAB-Debug"]), arms)  # sticky
            self.assertTrue(again.headers["X-MAB-Debug"].startswith("SAVED; "))
            for _click in range(2):  # the second click counts nothing
                b = client.get("/btnclick", headers={"Cookie": cookie})
                self.assertEqual(b.status_code, 200)
                self.assertEqual(b.data, b"<p>clicked</p>")
                # Flask-MAB sends X-MAB-Debug on reward responses too
                self.assertTrue(b.headers["X-MAB-Debug"].startswith("SAVED; "), b.headers)
                self.assertEqual(debug_arms(b.headers["X-MAB-Debug"]), arms)
                if "Set-Cookie" in b.headers:  # as a browser: sent back next time
                    cookie = b.headers["Set-Cookie"].split(";")[0]
        # The bandit objects read the app's live counters.
        self.assertEqual(sum(example.color_bandit.pulls), VISITORS)
        self.assertEqual(sum(example.txt_bandit[a]["reward"] for a in EXPERIMENTS["txt_btn"]),
                         VISITORS)
        config = os.path.join(self.tmp, "instance", "mab-test_app.json")
        mab.flask.close(example.app)  # writes ./example/bandit_storage.json
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "example", "bandit_storage.json")))
        self.assertEqual(stored(self, config), {e: (VISITORS, VISITORS) for e in EXPERIMENTS})


WSGI = """
# The example app unchanged; its storage setting swapped for LMDB before its
# init_app runs (json_file is refused with 4 workers).
import os
import mab.flask

_init_app = mab.flask.BanditMiddleware.init_app


def init_app(self, app):
    app.config["MAB_STORAGE_ENGINE"] = "LMDBBanditStorage"
    app.config["MAB_STORAGE_OPTS"] = {"path": os.environ["EXAMPLE_LMDB"]}
    _init_app(self, app)


mab.flask.BanditMiddleware.init_app = init_app
from flask_mab_example import app  # noqa: E402
"""


@unittest.skipUnless(subprocess.run([PYTHON, "-c", "import gunicorn"],
                                    capture_output=True).returncode == 0,
                     "SKIPPED: gunicorn is not importable by " + PYTHON)
class ExampleGunicorn(TempDirTest):
    def test_four_workers_on_lmdb_exact_counts(self):
        write_templates(self.tmp)
        with open(self.path("wsgi_example.py"), "w") as f:
            f.write(textwrap.dedent(WSGI))
        port = free_port()
        env = dict(os.environ, EXAMPLE_LMDB=self.path("lmdb"),
                   PYTHONPATH=self.tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(self.path("gunicorn.log"), "w")
        self.addCleanup(log.close)
        server = subprocess.Popen([PYTHON, "-m", "gunicorn", "--workers", "4", "--bind",
                                   "127.0.0.1:%d" % port, "--graceful-timeout", "20",
                                   "wsgi_example:app"], cwd=self.tmp, env=env, stdout=log,
                                  stderr=log)

        def kill():
            if server.poll() is None:
                server.kill()
                server.wait()
        self.addCleanup(kill)

        def get(path, cookie=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
                r = conn.getresponse()
                return r.status, r.getheader("Set-Cookie"), r.getheader("X-MAB-Debug"), r.read()
            finally:
                conn.close()

        for _ in range(400):  # wait for it to answer (not a timed assertion)
            if server.poll() is not None:
                self.fail("gunicorn exited: " + open(self.path("gunicorn.log")).read())
            try:
                get("/btnclick")  # no cookie: counts nothing
                break
            except OSError:
                time.sleep(0.05)
        for _ in range(VISITORS):
            status, set_cookie, debug, body = get("/")
            self.assertEqual(status, 200, body)
            cookie = set_cookie.split(";")[0]
            arms = debug_arms(debug)
            for _click in range(2):  # as a browser: the reward's cookie is sent back
                status, set_cookie, debug, _ = get("/btnclick", cookie)
                self.assertEqual(status, 200)
                self.assertEqual(debug_arms(debug), arms)
                if set_cookie:
                    cookie = set_cookie.split(";")[0]
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(timeout=120), 0, open(self.path("gunicorn.log")).read())
        config = os.path.join(self.tmp, "instance", "mab-test_app.json")
        self.assertEqual(stored(self, config), {e: (VISITORS, VISITORS) for e in EXPERIMENTS})


if __name__ == "__main__":
    unittest.main()
