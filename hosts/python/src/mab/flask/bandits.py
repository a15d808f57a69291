"""mab.flask.bandits: Flask-MAB's bandit classes (flask_mab.bandits), over
libmab's policies.

A bandit is an experiment: its arms and a policy. Attached to an app
(`app.add_bandit(name, bandit)`) it reads and writes the app's engine in
this process: `bandit["green"]["pulls"]` is the live count in the app's
storage. Used on its own, its first use opens an engine of its own without
storage (counters in memory, gone with the object).

    bandit = EpsilonGreedyBandit(0.1)
    bandit.add_arm("green", "#0f0")
    bandit.add_arm("red", "#f00")
    arm = bandit.suggest_arm()          # {"id": ..., "value": ..., "pulls": ..., "reward": ...}
    bandit.pull_arm(arm["id"])
    bandit.reward_arm(arm["id"], 1.0)

libmab counts a pull when its policy chooses an arm, so `suggest_arm()`
counts the pull and the `pull_arm()` of the same arm that follows it (as in
Flask-MAB's loop: suggest, pull, reward) adds nothing. A `pull_arm()` with
no suggestion before it is written to storage as one more pull (mab_import);
a bandit without storage refuses it (MABConfigException).
"""
import json
import os
import re
import shutil
import tempfile
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

import mab

__all__ = ["Bandit", "EpsilonGreedyBandit", "NaiveStochasticBandit", "SoftmaxBandit",
           "AnnealingSoftmaxBandit", "ThompsonBandit", "UCB1Bandit", "MABConfigException"]

ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class MABConfigException(Exception):
    """The extension's setup is invalid (as in Flask-MAB)."""


def _close_quietly(engine):
    try:
        engine.close()
    except mab.MabError:
        pass


class Bandit:
    """An experiment defined in Python: its arms and a policy of libmab.
    The base class chooses uniformly at random (epsilon-greedy with epsilon
    1), as Flask-MAB's does. `reward_range=(min, max)` sets the reward range
    ([0, 1] by default); `seed` fixes the random stream of a standalone
    bandit (tests)."""

    policy = "epsilon_greedy"  # the policy plugin's name

    def __init__(self, reward_range: Optional[Tuple[float, float]] = None,
                 seed: Optional[int] = None) -> None:
        self._arms: Dict[str, Any] = {}
        self.reward_range = reward_range
        self.seed = seed
        self._lock = threading.Lock()
        self._attached = None  # (the app's mab.flask state, experiment name)
        self._engine = None  # a standalone bandit's own engine
        self._pending: Dict[str, int] = {}  # pulls counted by suggest_arm, not yet pulled

    # -- definition ---------------------------------------------------------

    def add_arm(self, arm_id: str, value: Any = None) -> "Bandit":
        """Add an arm; `value` is any JSON-serialisable value, handed to views."""
        if not isinstance(arm_id, str) or not ID.match(arm_id):
            raise MABConfigException(
                "arm id %r: ids are 1 to 128 characters from A-Z a-z 0-9 _ -" % (arm_id,))
        if arm_id in self._arms:
            raise MABConfigException("arm id %r: added twice" % arm_id)
        if self._engine is not None or (self._attached and self._attached[0].engine):
            raise MABConfigException("arm id %r: add arms before the bandit is first used"
                                     % arm_id)
        json.dumps(value)  # fail here, not at the first request
        self._arms[arm_id] = value
        return self

    def parameters(self) -> Dict[str, Any]:
        """The policy's parameters, as the config file's `policy` object."""
        return {"epsilon": 1.0}

    def to_config(self) -> Dict[str, Any]:
        """The experiment as a mab config's `experiments` entry."""
        experiment: Dict[str, Any] = {"policy": dict(plugin=self.policy, **self.parameters()),
                                      "arms": dict(self._arms)}
        if self.reward_range is not None:
            low, high = self.reward_range
            experiment["reward"] = {"min": low, "max": high}
        return experiment

    @property
    def arms(self) -> List[str]:
        """The arm ids, in the order added."""
        return list(self._arms)

    @property
    def values(self) -> List[Any]:
        """The arm values, in the order of `arms`."""
        return list(self._arms.values())

    @property
    def pulls(self) -> List[int]:
        """Live pull counts, in the order of `arms`."""
        return [a.pulls for a in self._stats()]

    @property
    def reward(self) -> List[float]:
        """Live reward sums, in the order of `arms`."""
        return [a.reward_sum for a in self._stats()]

    # -- the engine behind it -----------------------------------------------

    def _attach(self, state, name: str) -> None:
        if self._engine is not None:
            raise MABConfigException("experiment %r: this bandit was used on its own "
                                     "already; attach a fresh one" % name)
        self._attached = (state, name)

    def _bound(self):
        """(engine, experiment name) this bandit reads and writes."""
        if self._attached is not None:
            state, name = self._attached
            state.open()
            return state.engine, name
        with self._lock:
            if self._engine is None:
                self._engine = self._open_standalone()
            return self._engine, "bandit"

    def _open_standalone(self):
        if not self._arms:
            raise MABConfigException("the bandit has no arms: add_arm() first")
        tmp = tempfile.mkdtemp(prefix="mab-bandit-")
        try:
            path = os.path.join(tmp, "bandit.json")
            with open(path, "w") as f:
                json.dump({"plugin_path": mab.plugin_dirs(),
                           # never opened (MAB_OPEN_NO_STORAGE): counters in memory
                           "storage": {"plugin": "json_file", "path": "unused.json"},
                           "experiments": {"bandit": self.to_config()}}, f)
            engine = mab.Engine(path, no_storage=True, seed=self.seed)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # read at open, not needed after
        weakref.finalize(self, _close_quietly, engine)
        return engine

    def _stats(self):
        engine, name = self._bound()
        return engine.stats(name)

    # -- Flask-MAB's operations ---------------------------------------------

    def suggest_arm(self) -> Dict[str, Any]:
        """Let the policy choose an arm (counting its pull): the arm as a dict
        with "id", "value", "pulls" and "reward" (the reward sum)."""
        engine, name = self._bound()
        choice = engine.choose(name)
        with self._lock:
            self._pending[choice.arm_id] = self._pending.get(choice.arm_id, 0) + 1
        return self[choice.arm_id]

    def pull_arm(self, arm_id: str) -> None:
        """Count a pull of `arm_id`: nothing more when suggest_arm() chose it
        (libmab counted that pull); else one pull added to storage."""
        with self._lock:
            if self._pending.get(arm_id, 0) > 0:
                self._pending[arm_id] -= 1
                return
        engine, name = self._bound()
        if arm_id not in self._arms:
            raise KeyError("arm %r is not in this bandit" % (arm_id,))
        if engine.storage_name == "none":
            raise MABConfigException(
                "pull_arm(%r) without suggest_arm(): libmab counts a pull when its policy "
                "chooses; a bandit without storage cannot add one" % arm_id)
        engine.import_records([mab.Record(name, arm_id, 1, 0, 0.0, 0.0)])

    def reward_arm(self, arm_id: str, reward: float) -> None:
        """Add `reward` (in the reward range) to `arm_id`."""
        engine, name = self._bound()
        engine.reward(name, arm_id, reward)

    def __getitem__(self, arm_id: str) -> Dict[str, Any]:
        if arm_id not in self._arms:
            raise KeyError("arm %r is not in this bandit" % (arm_id,))
        for a in self._stats():
            if a.arm_id == arm_id:
                return {"id": arm_id, "value": self._arms[arm_id], "pulls": a.pulls,
                        "reward": a.reward_sum}
        raise KeyError("arm %r is not in the engine's experiment" % (arm_id,))

    def __contains__(self, arm_id: object) -> bool:
        return arm_id in self._arms

    def __len__(self) -> int:
        return len(self._arms)

    def close(self) -> None:
        """Close a standalone bandit's engine (an attached one is the app's)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


class EpsilonGreedyBandit(Bandit):
    """Explore uniformly with probability epsilon, else the best mean."""
    policy = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.epsilon = epsilon

    def parameters(self) -> Dict[str, Any]:
        return {"epsilon": self.epsilon}


class SoftmaxBandit(Bandit):
    """P(arm) proportional to exp(mean / tau)."""
    policy = "softmax"

    def __init__(self, tau: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.tau = tau

    def parameters(self) -> Dict[str, Any]:
        return {"tau": self.tau}


class AnnealingSoftmaxBandit(SoftmaxBandit):
    """Softmax whose temperature falls as 1 / ln(t): `tau` is accepted for
    Flask-MAB compatibility and not used."""

    def __init__(self, tau: float = 0, **kw: Any) -> None:
        super().__init__(tau, **kw)

    def parameters(self) -> Dict[str, Any]:
        return {"annealing": True}


class ThompsonBandit(Bandit):
    """Thompson sampling with a Beta(alpha0, beta0) prior (`prior`)."""
    policy = "thompson"

    def __init__(self, prior: Tuple[float, float] = (1.0, 1.0), **kw: Any) -> None:
        super().__init__(**kw)
        self.prior = prior

    def parameters(self) -> Dict[str, Any]:
        return {"alpha0": self.prior[0], "beta0": self.prior[1]}


class NaiveStochasticBandit(ThompsonBandit):
    """Flask-MAB's weighted random choice, favouring the arms that earn more.
    libmab has no policy that weights by the raw mean; this is served by
    Thompson sampling with a uniform prior, which also picks each arm with
    the probability that it is the best one (docs/python.md, what differs)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__((1.0, 1.0), **kw)


class UCB1Bandit(Bandit):
    """UCB1: every untried arm first, then mean + sqrt(2 ln t / n)."""
    policy = "ucb1"

    def parameters(self) -> Dict[str, Any]:
        return {}
