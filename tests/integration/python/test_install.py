"""The package as pip installs it: run.sh pip-installs hosts/python into a
fresh venv and runs this suite from outside the source tree, so `mab` here
is the installed copy (checked). Also: libmab not found is a MabError at
first use naming every place looked in, not an error at import; the wheel
built by CMake (target python-wheel) installs into another fresh venv and
works with no libmab on the system and no MAB_* variables."""
import glob
import os
import subprocess
import unittest
import venv
import zipfile

import mab
from support import BUILD_DIR, INSTALLED, PYTHON, SOURCE_DIR, TempDirTest, tool_env

NO_MAB_ENV = {k: v for k, v in os.environ.items()
              if k not in ("MAB_LIBRARY", "MAB_PLUGIN_PATH", "PYTHONPATH")}


class InstalledTest(TempDirTest):
    @unittest.skipUnless(INSTALLED, "SKIPPED: mab is not pip-installed (run through run.sh)")
    def test_mab_is_the_installed_package(self):
        package = os.path.dirname(os.path.realpath(mab.__file__))
        self.assertFalse(package.startswith(os.path.realpath(SOURCE_DIR) + os.sep), package)
        self.assertIn("site-packages", package)
        self.assertTrue(os.path.exists(os.path.join(package, "py.typed")))
        # The dashboard's files were copied into the package at build time.
        for name in ("dashboard.html", "dashboard.js", "dashboard.css"):
            with open(os.path.join(package, "assets", name)) as got, \
                    open(os.path.join(SOURCE_DIR, "web", "dashboard", name)) as want:
                self.assertEqual(got.read(), want.read(), name)
        import mab.flask as mf
        self.assertEqual(os.path.dirname(mf._ASSET_DIRS[0]), package)

    def test_pip_wheel_offline(self):
        # No index: pip's isolated build has nothing to install (requires = []).
        subprocess.run([PYTHON, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "-w",
                        self.tmp, os.path.join(SOURCE_DIR, "hosts", "python")], check=True,
                       cwd=self.tmp, env=dict(os.environ, PIP_NO_INDEX="1"))
        wheel = os.path.join(self.tmp, "mab-%s-py3-none-any.whl" % mab.__version__)
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            self.assertEqual(zf.read("mab/assets/dashboard.js"),
                             open(os.path.join(SOURCE_DIR, "web", "dashboard", "dashboard.js"),
                                  "rb").read())
        self.assertIn("mab/py.typed", names)
        self.assertIn("mab/flask/storage.py", names)
        self.assertFalse([n for n in names if "_libs" in n], names)  # pure: no libmab

    def test_missing_library_is_a_mab_error_at_first_use(self):
        code = ("import mab, mab.flask\n"
                "print('imported')\n"
                "try:\n"
                "    mab.version()\n"
                "except mab.MabError as e:\n"
                "    print(e.code == mab.ENOTFOUND, e)\n")
        env = dict(NO_MAB_ENV, MAB_LIBRARY=self.path("nowhere", "libmab.so.1"),
                   PYTHONPATH=os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True,
                             cwd=self.tmp, check=True).stdout
        self.assertTrue(out.startswith("imported\nTrue "), out)
        self.assertIn("MAB_LIBRARY: " + self.path("nowhere", "libmab.so.1") + " (missing)", out)
        # Without MAB_LIBRARY, every place is named, in order.
        env.pop("MAB_LIBRARY")
        env["PKG_CONFIG_PATH"] = env["PKG_CONFIG_LIBDIR"] = self.tmp  # no mab.pc there
        out = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True,
                             cwd=self.tmp, check=True).stdout
        if "True" not in out:
            self.skipTest("SKIPPED: a libmab is installed on this system")
        places = ["bundled in the wheel", "next to the package installed by CMake",
                  "pkg-config mab", "the system loader"]
        tried = out[out.index("Tried, in order:"):]
        found = [tried.index(p) for p in places]
        self.assertEqual(found, sorted(found), out)

    def test_python_m_mab(self):
        config = self.write_config()
        with mab.Engine(config) as engine:
            engine.choose("color")
            engine.import_records([mab.Record("color", "green", 3000, 150, 150.0, 150.0),
                                   mab.Record("color", "red", 3000, 240, 240.0, 240.0)])
        for command, expect in (("check", "epsilon_greedy"), ("stats", "green"),
                                ("report", "winner: red, P(best) >0.999, expected loss ")):
            out = subprocess.run([PYTHON, "-m", "mab", command, config], capture_output=True,
                                 text=True, check=True, cwd=self.tmp).stdout
            self.assertIn(expect, out)
        # One implementation: `python -m mab report` and `stats --json` print
        # what the C tool prints, byte for byte (both call libmab's report).
        tool = os.path.join(BUILD_DIR, "bin", "mab")
        for args in (["report", config], ["report", config, "--json"],
                     ["report", config, "color", "--json"], ["stats", config, "--json"]):
            py = subprocess.run([PYTHON, "-m", "mab"] + args, capture_output=True, text=True,
                                check=True, cwd=self.tmp).stdout
            c = subprocess.run([tool] + args, capture_output=True, text=True, check=True,
                               cwd=self.tmp, env=tool_env()).stdout
            self.assertEqual(py, c, args)
        r = subprocess.run([PYTHON, "-m", "mab", "report", config, "nope"], capture_output=True,
                           text=True, cwd=self.tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn('no experiment "nope"', r.stderr)
        r = subprocess.run([PYTHON, "-m", "mab", "stats", self.path("none.json")],
                           capture_output=True, text=True, cwd=self.tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn("none.json", r.stderr)


class WheelTest(TempDirTest):
    def test_cmake_wheel_works_without_libmab_on_the_system(self):
        subprocess.run(["cmake", "--build", BUILD_DIR, "--target", "python-wheel"], check=True,
                       capture_output=True, env=tool_env())
        wheels = glob.glob(os.path.join(BUILD_DIR, "python-wheel", "mab-*-linux_*.whl"))
        self.assertEqual(len(wheels), 1, wheels)
        env_dir = self.path("venv")
        venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
        python = os.path.join(env_dir, "bin", "python")
        # The Python under test's pip installs into the venv's site-packages.
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip()
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--target", site, wheels[0]], check=True, env=NO_MAB_ENV)
        self.assertTrue(os.path.exists(os.path.join(site, "mab", "_libs", "libmab.so.1")))
        config = self.write_config(storage={"plugin": "lmdb", "path": "lmdb"})
        code = """
import json, sys, mab
config = json.load(open(sys.argv[1]))
del config["plugin_path"]  # libmab finds the bundled plugins next to itself
json.dump(config, open(sys.argv[1], "w"))
with mab.Engine(sys.argv[1]) as engine:
    engine.choose("color")
    print(engine.storage_name)
print(mab.library_path())
print(mab.plugin_dirs()[0])
"""
        # No MAB_*, no PYTHONPATH: only what the wheel brought.
        r = subprocess.run([python, "-c", code, config], env=NO_MAB_ENV, capture_output=True,
                           text=True, cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        storage, lib, plugins = r.stdout.split()
        self.assertEqual(storage, "lmdb")
        self.assertEqual(lib, os.path.realpath(os.path.join(site, "mab", "_libs", "libmab.so.1")))
        self.assertEqual(plugins, os.path.join(os.path.realpath(site), "mab", "_libs", "mab",
                                               "plugins"))
        # The plugins load their libmab through their rpath ($ORIGIN/../..).
        out = subprocess.run(["readelf", "-d", os.path.join(site, "mab", "_libs", "mab",
                                                            "plugins", "lmdb.so")],
                             capture_output=True, text=True, env=tool_env()).stdout
        self.assertIn("[$ORIGIN/../..]", out)


if __name__ == "__main__":
    unittest.main()
