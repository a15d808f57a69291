"""Context features through mab.flask (Flask's test client) and the binding,
to the echo fixture policy (tests/fixtures/policy_echo.c: it plays the arm
its first feature names; update() sums that feature per arm at pulls and in
exp[0] at rewards, counts missing ones in exp[1], sums reward times in
exp[2]). Features come from feature_fn(request) or keyword arguments; a
reward's update sees the choice's features from the cookie."""
import json
import math
import os
import shutil

import flask

import mab
import mab.flask as mf
from support import BUILD_DIR, TempDirTest

ECHO = os.path.join(BUILD_DIR, "tests", "fixtures", "policy_echo.so")


def cookie_of(response):
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("MAB="):
            return header.split(";")[0]
    return None


class ContextTest(TempDirTest):
    def make_app(self, feature_fn=None, **settings):
        config = self.write_config(experiments={
            "ctx": {"policy": {"plugin": ECHO, "features": ["slot", "hour"]},
                    "arms": {"a": 1, "b": 2, "c": 3}}},
            cookie={"name": "MAB"})
        app = flask.Flask("ctx", instance_path=self.path("instance"))
        app.config.update(TESTING=True, MAB_CONFIG=config, **settings)
        mf.BanditMiddleware(app, feature_fn=feature_fn)
        self.addCleanup(mf.close, app)

        @app.route("/fn")
        @mf.choose_arm("ctx")
        def by_fn(ctx):
            return flask.jsonify(arm=ctx)

        @app.route("/kw")
        def by_kw():
            slot = flask.request.args.get("slot")
            arm, value = mf.suggest_arm_for(
                "ctx", features={"slot": None if slot is None else float(slot)})
            return flask.jsonify(arm=arm)

        @app.route("/deco")
        @mf.choose_arm("ctx", features=lambda request: {"slot": 1})
        def by_decorator(ctx):
            return flask.jsonify(arm=ctx)

        @app.route("/buy")
        @mf.reward_endpt("ctx", 1.0)
        def buy():
            return "bought"
        return app

    def echo_stats(self, app):
        """(per-arm pull sums, experiment values) from storage."""
        app.extensions["mab"].engine.flush()
        # What the store holds durably: json_file's snapshot and journal,
        # copied, opened (which replays the journal) and closed (which folds
        # it into the copy's snapshot), then read.
        copy = self.path("copy")
        os.makedirs(copy, exist_ok=True)
        for name in ("state.json", "state.json.journal"):
            shutil.copy(self.path(name), os.path.join(copy, name))
        with open(app.config["MAB_CONFIG"]) as f:
            config = json.load(f)
        config["storage"]["path"] = os.path.join(copy, "state.json")
        copy_config = self.path("copy-config.json")
        with open(copy_config, "w") as f:
            json.dump(config, f)
        with mab.Engine(copy_config):
            pass
        with open(os.path.join(copy, "state.json")) as f:
            state = json.load(f)
        stats = {s.get("arm"): s["values"] for s in state.get("policy_stats", [])
                 if s["experiment"] == "ctx"}
        return {a: v[0] for a, v in stats.items() if a}, stats.get(None, [0, 0, 0])

    def test_feature_fn_and_keywords_reach_choose_and_update(self):
        slot = {"now": 2.0}
        app = self.make_app(feature_fn=lambda request: {"slot": slot["now"], "hour": 9,
                                                        "unused": 1})
        c = app.test_client(use_cookies=False)
        r = c.get("/fn")
        self.assertEqual(r.get_json()["arm"], 3)  # arm c: slot 2 reached choose
        cookie = cookie_of(r)
        self.assertIsNotNone(cookie)
        # The reward's request has other features: update sees the cookie's.
        slot["now"] = 0.0
        self.assertEqual(c.get("/buy", headers={"Cookie": cookie}).status_code, 200)
        arms, ex = self.echo_stats(app)
        self.assertEqual(arms.get("c"), 2.0)
        self.assertEqual(ex[0], 2.0, ex)
        self.assertEqual(ex[1], 0.0, ex)

        # Keyword features win over feature_fn's of the same name.
        r = c.get("/kw?slot=1")
        self.assertEqual(r.get_json()["arm"], "b")
        c.get("/buy", headers={"Cookie": cookie_of(r)})
        r = c.get("/deco")
        self.assertEqual(r.get_json()["arm"], 2)
        arms, ex = self.echo_stats(app)
        self.assertEqual(arms.get("b"), 2.0)  # two pulls with slot 1
        self.assertEqual(ex[0], 3.0, ex)      # rewards: slot 2, then slot 1

    def test_missing_and_not_finite(self):
        app = self.make_app()
        c = app.test_client(use_cookies=False)
        for slot in ("nan", "inf", "-inf", None):
            url = "/kw" if slot is None else "/kw?slot=" + slot
            r = c.get(url)
            self.assertEqual(r.get_json()["arm"], "a", slot)  # missing: arm 0
            c.get("/buy", headers={"Cookie": cookie_of(r)})
        arms, ex = self.echo_stats(app)
        self.assertEqual(ex[1], 8.0, ex)  # each pull and each reward saw it missing
        self.assertEqual(ex[0], 0.0, ex)
        # No feature_fn and no keywords: missing too.
        r = c.get("/fn")
        self.assertEqual(r.get_json()["arm"], 1)

    def test_bad_feature_values_raise(self):
        app = self.make_app(feature_fn=lambda request: {"slot": "2"})
        with self.assertRaises(TypeError):
            app.test_client(use_cookies=False).get("/fn")
        with self.assertRaises(mf.MABConfigException):
            mf.BanditMiddleware(flask.Flask("x"), feature_fn=42)

    def test_binding_set_features(self):
        config = self.write_config(experiments={
            "ctx": {"policy": {"plugin": ECHO, "features": ["slot"]},
                    "arms": {"a": 1, "b": 2, "c": 3}}})
        with mab.Engine(config, no_storage=True) as engine, mab.Adapter(engine) as adapter:
            with adapter.begin() as rq:
                rq.set_features({"slot": 2, "other": True and 1})
                self.assertEqual(rq.choose("ctx").arm_id, "c")
                token = rq.token()
            with adapter.begin(token=token) as rq:
                rq.set_features({"slot": 0})
                self.assertTrue(rq.reward("ctx").counted)
            with adapter.begin() as rq:
                with self.assertRaises(TypeError):
                    rq.set_features({"slot": True})
                with self.assertRaises(TypeError):
                    rq.set_features({1: 2.0})
                with self.assertRaises(mab.MabError) as e:
                    rq.set_features({"f%d" % i: 1 for i in range(257)})
                self.assertEqual(e.exception.code, mab.EINVAL)
                rq.set_features({"slot": math.inf})
                self.assertEqual(rq.choose("ctx").arm_id, "a")
