"""mab.Engine, mab.Adapter and mab.Request over the real libmab and plugins."""
import glob
import math
import os
import subprocess
import unittest

import mab
from support import BUILD_DIR, PYTHON, TempDirTest, tool_env


class EngineTest(TempDirTest):
    def test_choose_reward_stats_flush(self):
        config = self.write_config(seed=7)
        with mab.Engine(config) as engine:
            self.assertEqual(engine.storage_name, "json_file")
            self.assertEqual([e.id for e in engine.experiments()], ["color"])
            counts = {"green": 0, "red": 0}
            for _ in range(50):
                c = engine.choose("color")
                self.assertEqual(c.value, {"green": "#0f0", "red": "#f00"}[c.arm_id])
                self.assertEqual(c.value_json, '"%s"' % c.value)
                self.assertTrue(0 < c.probability <= 1)
                counts[c.arm_id] += 1
            engine.reward("color", "red", 1)
            engine.reward("color", "red", 0.5)
            stats = {a.arm_id: a for a in engine.stats("color")}
            self.assertEqual(stats["red"].pulls, counts["red"])
            self.assertEqual(stats["red"].rewards, 2)
            self.assertAlmostEqual(stats["red"].reward_sum, 1.5)
            self.assertEqual(set(engine.stats()), {"color"})
            engine.flush()
        # Reopened, the counts come back from json_file.
        with mab.Engine(config) as engine:
            stats = {a.arm_id: a for a in engine.stats("color")}
            self.assertEqual(stats["green"].pulls + stats["red"].pulls, 50)
            self.assertEqual(engine.arm("color", "red").value, "#f00")

    def test_errors_carry_code_and_message(self):
        with self.assertRaises(mab.MabError) as cm:
            mab.Engine(self.path("missing.json"))
        self.assertEqual(cm.exception.code, mab.EIO)
        self.assertIn("missing.json", cm.exception.message)

        config = self.write_config(experiments={"color": {
            "policy": {"plugin": "epsilon_greedy", "epsilon": 1.5},
            "arms": {"a": 1, "b": 2}}})
        with self.assertRaises(mab.MabError) as cm:
            mab.Engine(config)
        self.assertEqual(cm.exception.code, mab.ERANGE if cm.exception.code == mab.ERANGE
                         else mab.ECONFIG)
        self.assertIn("epsilon", str(cm.exception))

        config = self.write_config()
        with mab.Engine(config) as engine:
            for call, code in ((lambda: engine.choose("nope"), mab.ENOTFOUND),
                               (lambda: engine.reward("color", "blue", 1), mab.ENOTFOUND),
                               (lambda: engine.reward("color", "red", 2), mab.ERANGE),
                               (lambda: engine.reward("color", "red", math.nan), mab.EINVAL)):
                with self.assertRaises(mab.MabError) as cm:
                    call()
                self.assertEqual(cm.exception.code, code, str(cm.exception))
            self.assertEqual(sum(a.pulls + a.rewards for a in engine.stats("color")), 0)
            # A second engine on one json_file store in one process: busy.
            with self.assertRaises(mab.MabError) as cm:
                mab.Engine(config)
            self.assertEqual(cm.exception.code, mab.EBUSY)
        with self.assertRaises(mab.MabError) as cm:
            engine.choose("color")
        self.assertIn("closed", cm.exception.message)
        engine.close()  # twice: no-op

    def test_no_storage_and_seed(self):
        config = self.write_config()
        runs = []
        for _ in range(2):
            with mab.Engine(config, no_storage=True, seed=3) as engine:
                self.assertEqual(engine.storage_name, "none")
                runs.append([engine.choose("color").arm_id for _ in range(20)])
        self.assertEqual(runs[0], runs[1])
        self.assertFalse(os.path.exists(self.path("state.json")))

    def test_export_import(self):
        config = self.write_config()
        with mab.Engine(config) as engine:
            engine.import_records([mab.Record("color", "red", 10, 3, 3.0, 3.0)])
            self.assertEqual(engine.stats("color")[1].pulls, 10)
            self.assertEqual(engine.export(), [mab.Record("color", "red", 10, 3, 3.0, 3.0)])
            engine.reset("color")
            self.assertEqual(engine.stats("color")[1].pulls, 0)


    def test_report(self):
        config = self.write_config(experiments={"color": {
            "policy": {"plugin": "epsilon_greedy", "epsilon": 0.2},
            "winner": {"p_best": 0.9, "expected_loss": 0.002},
            "arms": {"green": "#0f0", "red": "#f00"}}})
        with mab.Engine(config) as engine:
            engine.import_records([mab.Record("color", "green", 3000, 150, 150.0, 150.0),
                                   mab.Record("color", "red", 3000, 240, 240.0, 240.0)])
            r = engine.report("color")
            self.assertEqual(r, engine.report("color"))  # one snapshot, one answer
            self.assertEqual((r["experiment"], r["policy"], r["model"]),
                             ("color", "epsilon_greedy", "beta"))
            self.assertEqual(r["policy_params"], {"plugin": "epsilon_greedy", "epsilon": 0.2})
            self.assertEqual(r["winner_rule"], {"p_best": 0.9, "expected_loss": 0.002})
            self.assertEqual((r["leader"], r["winner"]), ("red", True))
            self.assertTrue(r["recommendation"].startswith("winner: red, P(best) "), r)
            for st in engine.stats("color"):
                a = r["arms"][st.arm_id]
                self.assertEqual((a["pulls"], a["rewards"], a["reward_sum"], a["mean"]),
                                 (st.pulls, st.rewards, st.reward_sum, st.mean))
                self.assertLess(a["ci_low"], st.mean)
                self.assertGreater(a["ci_high"], st.mean)
                self.assertIsNone(a["share_last_bucket"])
            self.assertIsNone(r["srm_p_value"])
            self.assertIn("srm_p_value", r["not_available"])
            with self.assertRaises(mab.MabError) as e:
                engine.report("nope")
            self.assertEqual(e.exception.code, mab.ENOTFOUND)


class AdapterTest(TempDirTest):
    def test_sticky_reward_once_replay_redirect(self):
        config = self.write_config(debug_header=True, redirect_allow=["https://shop.example/"])
        with mab.Engine(config) as engine, mab.Adapter(engine) as adapter:
            with adapter.begin() as rq:
                a = rq.choose("color")
                self.assertTrue(a.is_new)
                cookie = rq.set_cookie()
                self.assertEqual(rq.debug_header(), "STORE; color:" + a.arm_id)
            self.assertTrue(cookie.startswith("mab=") and "HttpOnly" in cookie)
            header = cookie.split(";")[0]
            with adapter.begin(header) as rq:
                b = rq.choose("color")
                self.assertEqual((b.arm_id, b.is_new), (a.arm_id, False))
                self.assertIsNone(rq.set_cookie())
                result = rq.reward("color")
                self.assertEqual(result, mab.RewardResult(True, None, a.arm_id))
                rewarded = rq.set_cookie().split(";")[0]
            with adapter.begin(rewarded) as rq:
                self.assertEqual(rq.reward("color").reason, "already_rewarded")
            with adapter.begin(header) as rq:  # the old copy of the cookie
                self.assertEqual(rq.reward("color").reason, "replayed")
            with adapter.begin("mab=forged") as rq:
                self.assertEqual(rq.reward("color").reason, "invalid_cookie")
            with adapter.begin() as rq:
                result, where = rq.redirect("color", "/thanks")
                self.assertEqual(where, mab.Redirect(303, "/thanks"))
                self.assertEqual(result.reason, "no_cookie")
                with self.assertRaises(mab.MabError) as cm:
                    rq.redirect("color", "//evil.example/")
                self.assertEqual(cm.exception.code, mab.EINVAL)
            adapter.check_redirect("https://shop.example/cart")
            with self.assertRaises(mab.MabError):
                adapter.check_redirect("https://shop.example.evil/")
            counters = adapter.counters()
            self.assertEqual(counters["assignments"], 1)
            self.assertEqual(counters["rewards_counted"], 1)
            self.assertEqual(counters["replays_refused"], 1)
            self.assertEqual(counters["redirects_refused"], 1)  # check_redirect alone counts nothing
            stats = {s.arm_id: s for s in engine.stats("color")}
            self.assertEqual((stats[a.arm_id].pulls, stats[a.arm_id].rewards), (1, 1))

    def test_token_for_callers_without_cookies(self):
        with mab.Engine(self.write_config()) as engine:
            adapter = mab.Adapter(engine)
            with adapter.begin(token="") as rq:
                arm = rq.choose("color").arm_id
                token = rq.token()
            with adapter.begin(token=token) as rq:
                self.assertEqual(rq.choose("color").arm_id, arm)
        # Closing the engine closed its adapter.
        with self.assertRaises(mab.MabError):
            adapter.begin()

    def test_adapter_needs_secret_file(self):
        config = self.write_config()
        os.unlink(self.path("mab.key"))
        with mab.Engine(config) as engine:
            with self.assertRaises(mab.MabError) as cm:
                mab.Adapter(engine)
            self.assertEqual(cm.exception.code, mab.EIO)
            self.assertIn("mab.key", cm.exception.message)

    def test_keygen_never_overwrites(self):
        mab.keygen(self.path("k"))
        self.assertEqual(os.stat(self.path("k")).st_mode & 0o777, 0o600)
        with self.assertRaises(mab.MabError) as cm:
            mab.keygen(self.path("k"))
        self.assertEqual(cm.exception.code, mab.EIO)


class InstalledPackageTest(TempDirTest):
    def test_installed_package_finds_its_library_and_plugins(self):
        prefix = self.path("prefix")
        subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], check=True,
                       capture_output=True, env=tool_env())
        package = glob.glob(os.path.join(prefix, "lib*", "**", "mab", "python"),
                            recursive=True)
        self.assertEqual(len(package), 1, package)
        self.assertTrue(os.path.exists(os.path.join(package[0], "mab", "assets",
                                                    "dashboard.js")))
        config = self.write_config()
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAB_LIBRARY", "MAB_PLUGIN_PATH", "PYTHONPATH")}
        env["PYTHONPATH"] = package[0]
        # Without plugin_path: the plugins come from the install, found
        # through the library's location.
        code = """
import json, sys, mab
config = json.load(open(sys.argv[1]))
del config["plugin_path"]
config["plugin_path"] = mab.plugin_dirs()
json.dump(config, open(sys.argv[1], "w"))
with mab.Engine(sys.argv[1]) as engine:
    engine.choose("color")
print(mab.library_path())
print(mab.plugin_dirs()[0])
"""
        out = subprocess.run([PYTHON, "-c", code, config], env=env, check=True,
                             capture_output=True, text=True, cwd=self.tmp).stdout.split()
        self.assertTrue(out[0].startswith(prefix), out)
        self.assertTrue(out[1].startswith(prefix) and out[1].endswith("mab/plugins"), out)


if __name__ == "__main__":
    unittest.main()
