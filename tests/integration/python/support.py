"""Shared helpers of the Python tests: paths from the environment that
tests/integration/python/run.sh sets (MAB_BUILD_DIR, MAB_SOURCE_DIR), temporary
directories, key files and configs."""
import json
import os
import shutil
import socket
import sys
import tempfile
import unittest

BUILD_DIR = os.environ.get("MAB_BUILD_DIR", "")
SOURCE_DIR = os.environ.get("MAB_SOURCE_DIR", "")
PLUGIN_DIR = os.path.join(BUILD_DIR, "plugins")
MAB_CLI = os.path.join(BUILD_DIR, "bin", "mab")
PYTHON = sys.executable  # the Python under test (run.sh runs the suite in a venv of each)
INSTALLED = os.environ.get("MAB_TEST_INSTALLED") == "1"  # mab pip-installed in a venv

if not BUILD_DIR or not SOURCE_DIR:
    raise unittest.SkipTest("run through tests/integration/python/run.sh (MAB_BUILD_DIR, MAB_SOURCE_DIR)")

import mab  # noqa: E402 (after the environment check)


class TempDirTest(unittest.TestCase):
    """A test with a fresh temporary directory in self.tmp."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mab-py-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write_config(self, name="mab.json", experiments=None, storage=None, **top):
        """Write a config with a key file; return its path."""
        key = self.path("mab.key")
        if not os.path.exists(key):
            mab.keygen(key)
        config = {
            "plugin_path": [PLUGIN_DIR],
            "storage": storage or {"plugin": "json_file", "path": "state.json"},
            "secret_file": "mab.key",
            "experiments": experiments or {
                "color": {"policy": {"plugin": "epsilon_greedy", "epsilon": 0.2},
                          "arms": {"green": "#0f0", "red": "#f00"}},
            },
        }
        config.update(top)
        path = self.path(name)
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        return path


def tool_env(**extra):
    """The environment for programs other than python3 (curl, cc, cmake):
    without the ASan runtime that run.sh preloads for a sanitized libmab
    (curl deadlocks in setlocale with libasan preloaded)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(extra)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
