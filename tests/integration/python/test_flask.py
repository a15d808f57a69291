"""mab.flask with Flask's test client: assignment, stickiness, rewards once,
redirects and the guard, stacked decorators, the app factory, blueprints,
MAB_CONFIG, JSONBanditStorage, the dashboard and the errors."""
import json
import os
import re
import unittest
import urllib.parse
from urllib.parse import urljoin

import flask

import mab
import mab.flask as mf
import shop_app
from support import PLUGIN_DIR, TempDirTest

COLORS = {"green": "#00FF00", "red": {"hex": "#FF0000", "name": "red"}}
TEXTS = {"casual": "Hey dude, wanna buy me?", "neutral": "Add to cart"}
TOKEN = "admin-token-0123456789"


def cookie_of(response):
    """The MAB cookie's "name=value", or None."""
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("MAB="):
            return header.split(";")[0]
    return None


class FlaskTest(TempDirTest):
    def app(self, **settings):
        app = shop_app.create_app(self.path("instance"), TESTING=True, **settings)
        self.addCleanup(mf.close, app)
        return app

    def get(self, client, url, cookie=None, **kw):
        headers = {"Cookie": cookie} if cookie else {}
        return client.get(url, headers=headers, **kw)

    def totals(self, app, experiment):
        engine = app.extensions["mab"].engine
        return {a.arm_id: (a.pulls, a.rewards) for a in engine.stats(experiment)}

    def test_assign_sticky_reward_once(self):
        app = self.app()
        c = app.test_client(use_cookies=False)
        r = self.get(c, "/")
        self.assertEqual(r.status_code, 200)
        cookie = cookie_of(r)
        self.assertIsNotNone(cookie, r.headers)
        set_cookie = r.headers["Set-Cookie"]
        self.assertIn("Path=/", set_cookie)
        self.assertIn("HttpOnly", set_cookie)
        first = r.get_json()
        self.assertIn(first["color"], list(COLORS.values()))
        self.assertIn(first["txt"], list(TEXTS.values()))
        self.assertTrue(r.headers["X-MAB-Debug"].startswith("STORE; "))
        # Stacked decorators: one pull per experiment for the request.
        self.assertEqual(sum(p for p, _ in self.totals(app, "color").values()), 1)
        self.assertEqual(sum(p for p, _ in self.totals(app, "txt").values()), 1)

        for _ in range(3):
            r = self.get(c, "/", cookie)
            self.assertEqual(r.get_json(), first)
            self.assertIsNone(cookie_of(r))
            self.assertTrue(r.headers["X-MAB-Debug"].startswith("SAVED; "))
        self.assertEqual(sum(p for p, _ in self.totals(app, "color").values()), 1)

        r = self.get(c, "/buy", cookie)
        self.assertEqual(r.data, b"bought")
        rewarded = cookie_of(r)
        self.assertIsNotNone(rewarded)
        for replay in (rewarded, cookie):  # the new cookie, then the old copy
            r = self.get(c, "/buy", replay)
            self.assertEqual(r.status_code, 200)
        color = [k for k, v in COLORS.items() if v == first["color"]][0]
        self.assertEqual(self.totals(app, "color")[color], (1, 1))
        self.assertEqual(sum(n for _, n in self.totals(app, "txt").values()), 1)
        counters = app.extensions["mab"].adapter.counters()
        self.assertEqual(counters["replays_refused"], 2)  # color and txt

        # No cookie: the reward counts nothing; the page still answers.
        self.assertEqual(self.get(c, "/buy").status_code, 200)
        self.assertEqual(sum(n for _, n in self.totals(app, "color").values()), 1)
        # A forged cookie: a fresh assignment, counted as forged.
        r = self.get(c, "/", "MAB=AAAA" + cookie[8:])
        self.assertIsNotNone(cookie_of(r))
        self.assertEqual(app.extensions["mab"].adapter.counters()["cookies_forged"], 1)
        # A page without experiments gets no cookie and no header.
        r = self.get(c, "/plain")
        self.assertIsNone(cookie_of(r))
        self.assertNotIn("X-MAB-Debug", r.headers)

    def test_redirect_and_refused_open_redirect(self):
        app = self.app(MAB_REDIRECT_ALLOW=["https://shop.example.com/"])
        c = app.test_client(use_cookies=False)
        cookie = cookie_of(self.get(c, "/"))
        for target in ("//evil.example/", "https://evil.example/", "/\\evil", "/%2F%2Fevil",
                       "javascript:alert(1)", "https://shop.example.com.evil/"):
            r = self.get(c, "/r?to=" + urllib.parse.quote(target, safe=""), cookie)
            self.assertEqual(r.status_code, 400, target)
            self.assertNotIn("Location", r.headers)
        self.assertEqual(sum(n for _, n in self.totals(app, "color").values()), 0)
        r = self.get(c, "/r?to=/thanks", cookie)
        self.assertEqual((r.status_code, r.headers["Location"]), (303, "/thanks"))
        self.assertIsNotNone(cookie_of(r))
        r = self.get(c, "/r?to=https://shop.example.com/cart", cookie_of(r))
        self.assertEqual((r.status_code, r.headers["Location"]),
                         (303, "https://shop.example.com/cart"))
        self.assertEqual(sum(n for _, n in self.totals(app, "color").values()), 1)

    def test_settings_reach_the_cookie(self):
        app = self.app(MAB_COOKIE_NAME="bandit", MAB_COOKIE_PATH="/shop",
                       MAB_COOKIE_TTL=600, MAB_DEBUG_HEADERS=False)
        r = app.test_client(use_cookies=False).get("/shop/item")
        set_cookie = r.headers["Set-Cookie"]
        self.assertTrue(set_cookie.startswith("bandit="), set_cookie)
        self.assertIn("Path=/shop", set_cookie)
        self.assertIn("Max-Age=600", set_cookie)
        self.assertNotIn("X-MAB-Debug", r.headers)
        self.assertIn(r.get_json()["color"], list(COLORS.values()))

    def test_app_factory_and_blueprints(self):
        apps = []
        for name in ("one", "two"):
            app = shop_app.create_app(self.path(name), TESTING=True, MAB_STORAGE_ENGINE="JSONBanditStorage",
                                      MAB_STORAGE_OPTS=(self.path(name + ".json"),))
            self.addCleanup(mf.close, app)
            apps.append(app)
        for app in apps:
            c = app.test_client(use_cookies=False)
            cookie = cookie_of(c.get("/shop/item"))
            self.assertEqual(c.get("/shop/buy", headers={"Cookie": cookie}).data, b"thanks")
            self.assertEqual(sum(n for _, n in self.totals(app, "color").values()), 1)
            self.assertEqual(sum(p for p, _ in self.totals(app, "txt").values()), 0)
        # Each app has its own engine, key file and state file.
        self.assertIsNot(apps[0].extensions["mab"].engine, apps[1].extensions["mab"].engine)
        self.assertTrue(os.path.exists(self.path("one", "mab.key")))
        # A cookie of one app is not valid for the other (different keys).
        cookie = cookie_of(apps[0].test_client(use_cookies=False).get("/"))
        r = apps[1].test_client(use_cookies=False).get("/", headers={"Cookie": cookie})
        self.assertIsNotNone(cookie_of(r))

    def test_json_bandit_storage_keeps_counts(self):
        state = self.path("bandit_storage.json")
        settings = dict(MAB_STORAGE_ENGINE="JSONBanditStorage", MAB_STORAGE_OPTS=(state,))
        app = self.app(**settings)
        c = app.test_client(use_cookies=False)
        for _ in range(5):
            self.get(c, "/buy", cookie_of(self.get(c, "/")))
        mf.close(app)
        with open(state) as f:
            stored = json.load(f)
        self.assertEqual(stored["format"], "mab-json-storage")
        color = stored["experiments"]["color"]
        self.assertEqual(sum(a["pulls"] for a in color.values()), 5)
        self.assertEqual(sum(a["rewards"] for a in color.values()), 5)
        # The same app started again continues from the file.
        app2 = self.app(**settings)
        app2.test_client(use_cookies=False).get("/")
        self.assertEqual(sum(p for p, _ in self.totals(app2, "color").values()), 6)

    def test_a_flask_mab_file_is_refused_with_advice(self):
        state = self.path("old.json")
        with open(state, "w") as f:
            json.dump({"color": {"arms": ["green", "red"], "pulls": [3, 4],
                                 "reward": [1, 2], "values": ["#0f0", "#f00"]}}, f)
        app = self.app(MAB_STORAGE_ENGINE="JSONBanditStorage", MAB_STORAGE_OPTS=(state,))
        with self.assertRaises(mf.MABConfigException) as cm:
            app.test_client(use_cookies=False).get("/")
        self.assertIn("--from-flask-mab", str(cm.exception))

    def test_lmdb_storage(self):
        app = self.app(MAB_STORAGE_ENGINE="LMDBBanditStorage",
                       MAB_STORAGE_OPTS={"path": self.path("lmdb"), "sync": "always"})
        c = app.test_client(use_cookies=False)
        self.get(c, "/buy", cookie_of(self.get(c, "/")))
        self.assertEqual(app.extensions["mab"].engine.storage_name, "lmdb")
        mf.close(app)
        config = app.extensions["mab"].config_path
        with mab.Engine(config) as engine:
            self.assertEqual(sum(a.rewards for a in engine.stats("color")), 1)

    def test_memory_storage_by_default(self):
        app = self.app()
        app.test_client(use_cookies=False).get("/")
        self.assertEqual(app.extensions["mab"].engine.storage_name, "none")

    def test_mab_config(self):
        config = self.write_config(experiments={
            "color": {"policy": {"plugin": "ucb1"}, "arms": {"green": "g", "red": "r"}},
            "txt": {"policy": {"plugin": "softmax", "annealing": True},
                    "arms": {"casual": 1, "neutral": 2}}},
            cookie={"name": "MAB"}, debug_header=True)
        app = self.app(MAB_CONFIG=config)
        with self.assertRaises(mf.MABConfigException):
            app.add_bandit("more", mf.UCB1Bandit().add_arm("a").add_arm("b"))
        c = app.test_client(use_cookies=False)
        r = c.get("/")
        self.assertIn(r.get_json()["color"], ("g", "r"))
        self.assertIn(r.get_json()["txt"], (1, 2))
        self.assertTrue(r.headers["X-MAB-Debug"].startswith("STORE"))
        self.assertEqual(app.extensions["mab"].engine.storage_name, "json_file")
        self.assertEqual(app.extensions["mab"].config_path, config)

    def test_every_bandit_class(self):
        app = flask.Flask("classes", instance_path=self.path("classes"))
        app.testing = True
        mf.BanditMiddleware(app)
        self.addCleanup(mf.close, app)
        bandits = {"eg": mf.EpsilonGreedyBandit(0.5), "sm": mf.SoftmaxBandit(0.2),
                   "asm": mf.AnnealingSoftmaxBandit(), "th": mf.ThompsonBandit(),
                   "ucb": mf.UCB1Bandit(), "rng": mf.UCB1Bandit(reward_range=(0, 10))}
        for name, bandit in bandits.items():
            bandit.add_arm("a", [1, 2]).add_arm("b", None)
            app.add_bandit(name, bandit)

        @app.route("/<name>")
        def show(name):
            arm, value = mf.suggest_arm_for(name)
            return flask.jsonify(arm=arm, value=value)

        @app.route("/rng/reward")
        @mf.reward_endpt("rng", 7.5)
        def reward_rng():
            return "ok"

        c = app.test_client(use_cookies=False)
        for name in bandits:
            got = c.get("/" + name).get_json()
            self.assertEqual(got["value"], {"a": [1, 2], "b": None}[got["arm"]])
        cookie = cookie_of(c.get("/rng"))
        c.get("/rng/reward", headers={"Cookie": cookie})
        engine = app.extensions["mab"].engine
        policies = {e.id: e.policy for e in engine.experiments()}
        self.assertEqual(policies, {"eg": "epsilon_greedy", "sm": "softmax", "asm": "softmax",
                                    "th": "thompson", "ucb": "ucb1", "rng": "ucb1"})
        self.assertEqual(sum(a.reward_sum for a in engine.stats("rng")), 7.5)

    def test_errors(self):
        with self.assertRaises(mf.MABConfigException):
            mf.EpsilonGreedyBandit().add_arm("no spaces")
        with self.assertRaises(mf.MABConfigException):
            mf.EpsilonGreedyBandit().add_arm("a").add_arm("a")
        empty = flask.Flask("empty", instance_path=self.path("empty"))
        empty.testing = True
        mf.BanditMiddleware(empty)

        @empty.route("/")
        @mf.choose_arm("color")
        def home(color):
            return color

        with self.assertRaises(mf.MABConfigException) as cm:
            empty.test_client(use_cookies=False).get("/")
        self.assertIn("no bandits", str(cm.exception))
        with self.assertRaises(mf.MABConfigException):
            empty.add_bandit("bad name", mf.UCB1Bandit())

        app = self.app()

        @app.route("/unknown")
        @mf.choose_arm("nope")
        def unknown(nope):
            return "never"

        with self.assertRaises(mab.MabError) as cm:
            app.test_client(use_cookies=False).get("/unknown")
        self.assertEqual(cm.exception.code, mab.ENOTFOUND)
        # Out of range policy parameter: libmab's sentence names the key.
        bad = flask.Flask("bad", instance_path=self.path("bad"))
        bad.testing = True
        mf.BanditMiddleware(bad)
        bad.add_bandit("color", mf.EpsilonGreedyBandit(1.5).add_arm("a").add_arm("b"))
        bad.route("/")(mf.choose_arm("color")(lambda color: "x"))
        with self.assertRaises(mab.MabError) as cm:
            bad.test_client(use_cookies=False).get("/")
        self.assertIn("epsilon", cm.exception.message)
        storage = flask.Flask("s", instance_path=self.path("s"))
        storage.testing = True
        storage.config["MAB_STORAGE_ENGINE"] = "MongoBanditStorage"
        mf.BanditMiddleware(storage)
        storage.add_bandit("color", mf.UCB1Bandit().add_arm("a").add_arm("b"))
        storage.route("/")(mf.choose_arm("color")(lambda color: "x"))
        # MongoBanditStorage names the mongodb plugin, which says what it lacks.
        with self.assertRaises(mab.MabError) as cm:
            storage.test_client(use_cookies=False).get("/")
        self.assertIn("storage.uri", cm.exception.message)
        unknown_storage = flask.Flask("u", instance_path=self.path("u"))
        unknown_storage.testing = True
        unknown_storage.config["MAB_STORAGE_ENGINE"] = "NoSuchStorage"
        mf.BanditMiddleware(unknown_storage)
        unknown_storage.add_bandit("color", mf.UCB1Bandit().add_arm("a").add_arm("b"))
        unknown_storage.route("/")(mf.choose_arm("color")(lambda color: "x"))
        with self.assertRaises(mf.MABConfigException) as cm:
            unknown_storage.test_client(use_cookies=False).get("/")
        self.assertIn("NoSuchStorage", str(cm.exception))
        # The dashboard without a token refuses to mount.
        dash = flask.Flask("d", instance_path=self.path("d"))
        dash.testing = True
        dash.config["MAB_DASHBOARD_URL"] = "/_mab"
        with self.assertRaises(mf.MABConfigException):
            mf.BanditMiddleware(dash)

    def test_dashboard(self):
        app = self.app(MAB_DASHBOARD_URL="/_mab", MAB_DASHBOARD_TOKEN=TOKEN)
        c = app.test_client(use_cookies=False)
        for _ in range(3):
            self.get(c, "/buy", cookie_of(self.get(c, "/")))
        self.assertEqual(c.get("/_mab/").status_code, 401)
        self.assertEqual(c.get("/_mab/v1/dashboard?access_token=wrong").status_code, 401)
        r = c.get("/_mab/", headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(r.status_code, 200)
        page = r.data.decode()
        # The one dashboard of web/dashboard, served unchanged; every URL in it
        # is relative, so it resolves under the prefix.
        tree = os.path.join(os.environ["MAB_SOURCE_DIR"], "web", "dashboard")
        with open(os.path.join(tree, "dashboard.html"), encoding="utf-8") as f:
            self.assertEqual(page, f.read())
        refs = re.findall(r'(?:href|src)="([^"]+)"', page)
        self.assertEqual(sorted(refs), ["assets/dashboard.css", "assets/dashboard.js"])
        for ref in refs:
            self.assertEqual(c.get(urljoin("/_mab/", ref)).status_code, 200, ref)
        self.assertIn("Content-Security-Policy", r.headers)
        data = c.get("/_mab/v1/dashboard?access_token=" + TOKEN).get_json()
        color = [e for e in data["experiments"] if e["id"] == "color"][0]
        self.assertEqual(color["pulls"], 3)
        self.assertEqual(sum(a["rewards"] for a in color["arms"]), 3)
        for arm in color["arms"]:
            if arm["pulls"]:
                self.assertLessEqual(arm["lo"], arm["rate"])
                self.assertLessEqual(arm["rate"], arm["hi"])
        # The report, through libmab's own function: the same document as
        # Engine.report (and mabd's /v1/report/EXP).
        report = color["report"]
        self.assertEqual(list(report["arms"]), [a["id"] for a in color["arms"]])
        self.assertIn(report["leader"], report["arms"])
        self.assertAlmostEqual(sum(a["p_best"] for a in report["arms"].values()), 1.0)
        self.assertTrue(report["recommendation"].startswith(("winner: ", "keep exploring: ")))
        self.assertEqual(report["policy_params"]["plugin"], color["policy"])
        for arm in color["arms"]:
            self.assertEqual(report["arms"][arm["id"]]["pulls"], arm["pulls"])
            self.assertIn("value", arm)  # the page draws an arm valued as a colour in it
        # What the page draws beyond the table, the same fields as mabd's
        # dashboard (both embed libmab's report): the rules in force, the
        # stored time buckets, why a field is null. This app keeps its
        # counters in memory (no storage): no history, and the reason.
        for key in ("rules", "history", "bucket_seconds", "last_bucket_start", "holdout",
                    "srm_p_value", "winner_rule", "not_available", "not_available_reasons"):
            self.assertIn(key, report)
        self.assertEqual(report["rules"], {"state": "running", "serve": None, "floor": 0,
                                           "burn_in": 0, "holdout": None,
                                           "attribution_window": 0})
        self.assertIsNone(report["history"])
        self.assertIn("history", report["not_available"])
        self.assertIn("keeps no time buckets", report["not_available_reasons"]["history"])
        self.assertIsNone(report["srm_p_value"])
        self.assertIn("srm_p_value", report["not_available_reasons"])
        self.assertEqual(len(data["series"]), 1)
        js = c.get("/_mab/assets/dashboard.js").data.decode()
        with open(os.path.join(tree, "dashboard.js"), encoding="utf-8") as f:
            self.assertEqual(js, f.read())
        self.assertIn('fetch("v1/dashboard"', js)  # relative: /_mab/v1/dashboard here

    def test_dashboard_history(self):
        """With JSONBanditStorage (json_file keeps time buckets) the dashboard's
        report carries the stored buckets, the share of the last one, and
        Engine.report(history=N) bounds them."""
        state = self.path("history-state.json")
        app = self.app(MAB_DASHBOARD_URL="/_mab", MAB_DASHBOARD_TOKEN=TOKEN,
                       MAB_STORAGE_ENGINE="JSONBanditStorage", MAB_STORAGE_OPTS=(state,))
        c = app.test_client(use_cookies=False)
        for _ in range(4):
            self.get(c, "/buy", cookie_of(self.get(c, "/")))
        data = c.get("/_mab/v1/dashboard?access_token=" + TOKEN).get_json()
        color = [e for e in data["experiments"] if e["id"] == "color"][0]
        report = color["report"]
        self.assertEqual(report["bucket_seconds"], 3600)
        self.assertNotIn("history", report["not_available"])
        self.assertGreaterEqual(len(report["history"]), 1)
        for arm in color["arms"]:
            self.assertEqual(sum(b["arms"][arm["id"]]["pulls"] for b in report["history"]),
                             arm["pulls"])
            self.assertEqual(sum(b["arms"][arm["id"]]["rewards"] for b in report["history"]),
                             arm["rewards"])
        last = [b for b in report["history"] if b["pulls"]][-1]
        self.assertEqual(report["last_bucket_start"], last["start"])
        for arm_id, a in report["arms"].items():
            self.assertEqual(a["share_last_bucket"], last["arms"][arm_id]["pulls"] / last["pulls"])
        engine = mf._state(app).engine
        self.assertEqual(engine.report("color", history=1)["history"], report["history"][-1:])
        with self.assertRaises(mab.MabError):
            engine.report("color", history=8761)


if __name__ == "__main__":
    unittest.main()
