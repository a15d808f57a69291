"""Flask-MAB's public surface beyond the example: standalone Bandit objects
(suggest_arm / pull_arm / reward_arm converging on Flask-MAB's own
Monte-Carlo cases), attached bandits reading live counts that match
`mab stats`, NaiveStochasticBandit, the storage class names and instances,
the middleware's methods and reward_and_redirect as a decorator."""
import collections
import json
import random
import subprocess

import flask

import mab.flask as mf
from mab.flask import bandits as mfb
from mab.flask import storage as mfs
from support import MAB_CLI, TempDirTest, tool_env

HORIZON = 4000  # steps of one simulation (Flask-MAB ran 3000 x 250 in one bandit)


def run(bandit, true_probs, seed):
    """Flask-MAB's Monte-Carlo loop: suggest, pull, draw, reward. The arms chosen."""
    draw = random.Random(seed)
    chosen = collections.Counter()
    for _ in range(HORIZON):
        arm = bandit.suggest_arm()
        bandit.pull_arm(arm["id"])
        chosen[arm["id"]] += 1
        if draw.random() <= true_probs[arm["id"]]:
            bandit.reward_arm(arm["id"], 1.0)
    return chosen


def make(cls, seed, *args):
    bandit = cls(*args, seed=seed)
    for arm in ("green", "red", "blue"):
        bandit.add_arm(arm, arm.upper())
    return bandit


class MonteCarloTest(TempDirTest):
    """Flask-MAB's cases (tests/monte_carlo): the best arm is chosen most."""

    CASES = [
        (mfb.EpsilonGreedyBandit, (0.3,), dict(green=0.9, blue=0.1, red=0.1), "green"),
        (mfb.SoftmaxBandit, (0.3,), dict(green=0.2, red=0.2, blue=0.93), "blue"),
        (mfb.AnnealingSoftmaxBandit, (), dict(green=0.2, red=0.2, blue=0.93), "blue"),
        (mfb.ThompsonBandit, (), dict(green=0.2, red=0.2, blue=0.93), "blue"),
        (mfb.NaiveStochasticBandit, (), dict(green=0.2, red=0.2, blue=0.93), "blue"),
        (mfb.UCB1Bandit, (), dict(green=0.2, red=0.2, blue=0.93), "blue"),
    ]

    def test_converges(self):
        for cls, args, probs, best in self.CASES:
            with self.subTest(cls.__name__):
                bandit = make(cls, 7, *args)
                chosen = run(bandit, probs, 11)
                self.assertEqual(chosen.most_common(1)[0][0], best, chosen)
                # The counts the bandit reports are the engine's: every pull once.
                self.assertEqual(sum(bandit.pulls), HORIZON)
                self.assertEqual({a: bandit[a]["pulls"] for a in bandit.arms}, dict(chosen))
                self.assertEqual(bandit[best]["value"], best.upper())
                bandit.close()

    def test_base_bandit_is_uniform(self):
        bandit = make(mfb.Bandit, 3)
        chosen = run(bandit, dict(green=1.0, red=0.0, blue=0.0), 5)
        for arm in bandit.arms:  # 4000 uniform draws: each near 1333, far from 0 or all
            self.assertGreater(chosen[arm], HORIZON // 6, chosen)

    def test_standalone_without_storage(self):
        bandit = make(mfb.EpsilonGreedyBandit, 1, 0.1)
        self.assertEqual(bandit.pulls, [0, 0, 0])
        # libmab counts a pull when it chooses: a pull with no suggestion before
        # it cannot be added to an engine without storage, and says so.
        with self.assertRaises(mf.MABConfigException) as cm:
            bandit.pull_arm("red")
        self.assertIn("without suggest_arm", str(cm.exception))
        with self.assertRaises(KeyError):
            bandit["purple"]
        with self.assertRaises(mf.MABConfigException):
            bandit.add_arm("late")  # the engine is open
        empty = mfb.EpsilonGreedyBandit()
        with self.assertRaises(mf.MABConfigException):
            empty.suggest_arm()


class AttachedBanditTest(TempDirTest):
    def app(self, name="attached", **config):
        app = flask.Flask(name, instance_path=self.path("instance-" + name))
        app.testing = True
        app.config.update(config)
        ext = mf.BanditMiddleware(app)
        self.addCleanup(mf.close, app)
        return app, ext

    def test_live_counts_match_mab_stats(self):
        lmdb = self.path("lmdb")
        app, ext = self.app(MAB_STORAGE_ENGINE=mfs.LMDBBanditStorage(lmdb))
        color = mf.EpsilonGreedyBandit(0.5).add_arm("green", "#0f0").add_arm("red", "#f00")
        ext.add_bandit("color", color)  # the middleware's method

        @app.route("/")
        @ext.choose_arm("color")  # the middleware's methods, as Flask-MAB's README shows
        def home(color):
            return color

        @app.route("/buy")
        @ext.reward_endpt("color", 1.0)
        def buy():
            return "ok"

        @app.route("/go")
        @mf.reward_and_redirect("color", "/thanks")  # the decorator form
        def go():
            return "ignored"

        @app.route("/next")
        @mf.reward_and_redirect("color")  # the view returns the target
        def next_():
            return "https://evil.example/"  # not allowed: 400, nothing counted

        client = app.test_client(use_cookies=False)
        cookies = []
        for _ in range(30):
            r = client.get("/")
            cookies.append(r.headers["Set-Cookie"].split(";")[0])
        for cookie in cookies[:10]:
            self.assertEqual(client.get("/buy", headers={"Cookie": cookie}).status_code, 200)
        for cookie in cookies[10:15]:
            r = client.get("/go", headers={"Cookie": cookie})
            self.assertEqual((r.status_code, r.headers["Location"].rsplit("/", 1)[-1]),
                             (303, "thanks"))
        r = client.get("/next", headers={"Cookie": cookies[20]})
        self.assertEqual(r.status_code, 400)
        # Standalone operations on an attached bandit act on the app's engine.
        arm = color.suggest_arm()
        color.pull_arm(arm["id"])  # counted by suggest_arm: adds nothing
        color.pull_arm("green")  # no suggestion before it: one pull added to storage
        color.reward_arm("red", 1.0)
        with app.app_context():  # Flask-MAB's module-level pull and reward
            mf.pull("color", "red")
            mf.reward("color", "green", 0.5)
            with self.assertRaises(mf.MABConfigException):
                mf.reward("nope", "green")
            with self.assertRaises(mf.MABConfigException):
                mf.pull("nope", "green")
        live = {a: (color[a]["pulls"], color[a]["reward"]) for a in color.arms}
        self.assertEqual(sum(p for p, _ in live.values()), 33)
        self.assertEqual(sum(r for _, r in live.values()), 16.5)
        self.assertIs(ext["color"], color)
        app.extensions["mab"].engine.flush()
        config = app.extensions["mab"].config_path
        out = subprocess.run([MAB_CLI, "stats", config, "--json"], capture_output=True,
                             text=True, env=tool_env(), check=True).stdout
        arms = json.loads(out)["experiments"]["color"]["arms"]
        self.assertEqual({a: (v["pulls"], v["reward_sum"]) for a, v in arms.items()}, live)

    def test_storage_names_classes_and_instances(self):
        state = self.path("state.json")
        for engine, opts in (("JSONBanditStorage", (state,)), (mfs.JSONBanditStorage, (state,)),
                             (mfs.JSONBanditStorage(state), ()), ("json_file", {"path": state})):
            with self.subTest(engine=engine):
                app, _ = self.app("s%d" % id(engine), MAB_STORAGE_ENGINE=engine,
                                  MAB_STORAGE_OPTS=opts)
                app.add_bandit("color", mf.UCB1Bandit().add_arm("a").add_arm("b"))
                app.route("/")(mf.choose_arm("color")(lambda color: "x"))
                app.test_client(use_cookies=False).get("/")
                self.assertEqual(app.extensions["mab"].engine.storage_name, "json_file")
                mf.close(app)
        app, _ = self.app("mem", MAB_STORAGE_ENGINE=mfs.BanditStorage())
        app.add_bandit("color", mf.UCB1Bandit().add_arm("a").add_arm("b"))
        app.route("/")(mf.choose_arm("color")(lambda color: "x"))
        app.test_client(use_cookies=False).get("/")
        self.assertEqual(app.extensions["mab"].engine.storage_name, "none")
        bad, _ = self.app("bad", MAB_STORAGE_ENGINE=42)
        bad.add_bandit("color", mf.UCB1Bandit().add_arm("a").add_arm("b"))
        bad.route("/")(mf.choose_arm("color")(lambda color: "x"))
        with self.assertRaises(mf.MABConfigException):
            bad.test_client(use_cookies=False).get("/")

    def test_flask_mab_import_paths(self):
        # Every name a Flask-MAB app imports exists under mab.flask.
        for name in ("BanditMiddleware", "choose_arm", "reward_endpt", "suggest_arm_for",
                     "add_bandit", "pull", "reward", "MABConfigException"):
            self.assertTrue(hasattr(mf, name), name)
        for name in ("Bandit", "EpsilonGreedyBandit", "NaiveStochasticBandit", "SoftmaxBandit",
                     "AnnealingSoftmaxBandit", "ThompsonBandit"):
            self.assertTrue(issubclass(getattr(mfb, name), mfb.Bandit), name)
        for name in ("BanditStorage", "JSONBanditStorage", "LMDBBanditStorage",
                     "MongoBanditStorage"):
            self.assertTrue(issubclass(getattr(mfs, name), mfs.BanditStorage), name)
        self.assertIs(mf.EpsilonGreedyBandit, mfb.EpsilonGreedyBandit)
