"""mab.flask: a Flask extension with Flask-MAB's public API, over libmab.

Switch an app from Flask-MAB by changing its import:

    from mab.flask import BanditMiddleware, EpsilonGreedyBandit, choose_arm, reward_endpt

    app = Flask(__name__)
    app.config["MAB_STORAGE_ENGINE"] = "JSONBanditStorage"   # or "LMDBBanditStorage"
    app.config["MAB_STORAGE_OPTS"] = ("./bandit_storage.json",)
    BanditMiddleware(app)
    color = EpsilonGreedyBandit(0.2)
    color.add_arm("green", "#00FF00")
    color.add_arm("red", "#FF0000")
    app.add_bandit("color_btn", color)

    @app.route("/")
    @choose_arm("color_btn")
    def home(color_btn):            # the arm's value
        ...

    @app.route("/buy")
    @reward_endpt("color_btn", 1.0)
    def buy():
        ...

Assignment, stickiness (a signed cookie), rewards counted once per
assignment, the redirect guard and the X-MAB-Debug header are libmab's
adapter hooks (include/mab/adapter.h), called through mab's ctypes binding.
Bandits defined in Python are written to a mab config file under the app's
instance folder; the engine is opened at the first request of each process
(so gunicorn workers each open their own, after fork). docs/python.md has the
settings and what differs from Flask-MAB.
"""
import atexit
import functools
import gc
import hmac
import json
import math
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Optional, Tuple

from flask import Response, abort, current_app, g, has_request_context, redirect, request

import mab

from . import storage as _storage_names
from .bandits import (ID, AnnealingSoftmaxBandit, Bandit, EpsilonGreedyBandit,
                      MABConfigException, NaiveStochasticBandit, SoftmaxBandit, ThompsonBandit,
                      UCB1Bandit)
from .storage import (BanditStorage, JSONBanditStorage, LMDBBanditStorage,
                      MongoBanditStorage)

__all__ = ["BanditMiddleware", "Bandit", "EpsilonGreedyBandit", "NaiveStochasticBandit",
           "SoftmaxBandit", "AnnealingSoftmaxBandit", "ThompsonBandit", "UCB1Bandit",
           "BanditStorage", "JSONBanditStorage", "LMDBBanditStorage", "MongoBanditStorage",
           "choose_arm", "reward_endpt", "reward_and_redirect", "suggest_arm_for",
           "add_bandit", "pull", "reward", "MABConfigException", "close"]

_ID = ID


# ---- settings -> config file ------------------------------------------------

def _storage_config(app):
    """The config's `storage` object from MAB_STORAGE_ENGINE (a name, a class
    or an instance of mab.flask.storage) and MAB_STORAGE_OPTS, or None
    (counters in memory only)."""
    engine = app.config.get("MAB_STORAGE_ENGINE", "BanditStorage")
    if isinstance(engine, str):
        if engine not in _storage_names.BY_NAME:
            raise MABConfigException("MAB_STORAGE_ENGINE %r: expected one of %s" % (
                engine, ", ".join(sorted(_storage_names.BY_NAME))))
        engine = _storage_names.BY_NAME[engine]
    if isinstance(engine, type) and issubclass(engine, BanditStorage):
        engine = _instance(engine, app.config.get("MAB_STORAGE_OPTS") or ())
    if not isinstance(engine, BanditStorage):
        raise MABConfigException("MAB_STORAGE_ENGINE %r: expected a storage name, or a "
                                 "class or instance from mab.flask.storage" % (engine,))
    storage = engine.storage()
    if storage is None:
        return None
    plugin = storage["plugin"]
    if plugin in ("json_file", "lmdb"):
        if not storage.get("path"):
            raise MABConfigException("MAB_STORAGE_OPTS for %s: no path" % type(engine).__name__)
        # Relative to the working directory, as Flask-MAB's file path was.
        storage["path"] = os.path.abspath(str(storage["path"]))
    if plugin == "json_file":
        _refuse_flask_mab_file(storage["path"])
    return storage


def _instance(cls, opts):
    """cls from MAB_STORAGE_OPTS: (PATH,) as Flask-MAB took it, or a dict."""
    if isinstance(opts, dict):
        return cls(**opts)
    if isinstance(opts, (list, tuple)) and len(opts) <= 1:
        return cls(*opts)
    raise MABConfigException(
        "MAB_STORAGE_OPTS for %s: expected (PATH,) or a dict of the storage's keys"
        % cls.__name__)


def _refuse_flask_mab_file(path):
    """A file Flask-MAB wrote is not in json_file's format: say how to import it."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return  # missing (json_file creates it) or not JSON (json_file says so)
    if isinstance(data, dict) and data and "format" not in data:
        raise MABConfigException(
            "%s looks like a Flask-MAB storage file, which mab does not read in place: move "
            "it away and import its counters with `mab import CONFIG --from-flask-mab FILE` "
            "(CONFIG: the file mab.flask writes under the instance folder)" % path)


# Storage plugins that one process only may open (json_file locks its file).
_ONE_PROCESS_STORAGE = ("json_file",)


def _storage_plugin(app):
    """The storage plugin the app's engine opens, or None (memory only)."""
    config = app.config.get("MAB_CONFIG")
    if not config:
        storage = _storage_config(app)
        return storage and storage["plugin"]
    try:
        with open(os.path.join(app.root_path, config)) as f:
            storage = json.load(f).get("storage")
    except (OSError, ValueError, AttributeError):
        return None  # mab_open says what is wrong with the file
    return storage.get("plugin") if isinstance(storage, dict) else None


def _gunicorn_workers():
    """The number of worker processes of the gunicorn this process is the
    master or a worker of, else None. gunicorn hands its app no setting or
    environment variable for it, but each worker is forked from the master
    and so holds the master's Arbiter (gunicorn.arbiter), which knows."""
    arbiter = getattr(sys.modules.get("gunicorn.arbiter"), "Arbiter", None)
    if arbiter is None:
        return None
    for obj in gc.get_objects():
        if isinstance(obj, arbiter):
            workers = getattr(obj, "num_workers", None)
            return workers if isinstance(workers, int) else None
    return None


def _refuse_one_process_storage(app):
    """json_file under gunicorn with several workers: every worker but one
    would fail at its first request. Refuse at start-up, naming the fix."""
    workers = _gunicorn_workers()
    if workers is None or workers < 2:
        return
    plugin = _storage_plugin(app)
    if plugin in _ONE_PROCESS_STORAGE:
        raise MABConfigException(
            "app %r: storage %s, which one process only may open, under gunicorn with %d "
            "worker processes: use LMDB, which the workers share (MAB_STORAGE_ENGINE = "
            "\"LMDBBanditStorage\" with MAB_STORAGE_OPTS = {\"path\": DIR}, or \"plugin\": "
            "\"lmdb\" in MAB_CONFIG), or run gunicorn with --workers 1"
            % (app.name, plugin, workers))


def _key_file(app):
    """MAB_SECRET_FILE, or INSTANCE/mab.key created on first use (mode 0600)."""
    path = app.config.get("MAB_SECRET_FILE")
    if path:
        return os.path.abspath(path)
    path = os.path.join(app.instance_path, "mab.key")
    if not os.path.exists(path):
        # Workers starting together race here: write a private file, then
        # link it into place, so nobody ever reads a half-written key.
        tmp = "%s.%d.tmp" % (path, os.getpid())
        if os.path.exists(tmp):
            os.unlink(tmp)
        mab.keygen(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path


def _write_config(app, bandits):
    """Write the mab config for the bandits defined in Python: (its path,
    whether counters stay in memory)."""
    if not bandits:
        raise MABConfigException("no bandits: add one with app.add_bandit(NAME, BANDIT), "
                                 "or name a mab config file in MAB_CONFIG")
    os.makedirs(app.instance_path, exist_ok=True)
    storage = _storage_config(app)
    cookie = {"name": app.config.get("MAB_COOKIE_NAME", "MAB"),
              "path": app.config.get("MAB_COOKIE_PATH", "/")}
    ttl = app.config.get("MAB_COOKIE_TTL")
    if ttl is not None:
        cookie["max_age"] = int(getattr(ttl, "total_seconds", lambda: ttl)())
    for key, setting in (("secure", "MAB_COOKIE_SECURE"), ("domain", "MAB_COOKIE_DOMAIN"),
                         ("same_site", "MAB_COOKIE_SAMESITE")):
        if app.config.get(setting) is not None:
            cookie[key] = app.config[setting]
    config = {
        "plugin_path": mab.plugin_dirs(),
        # Memory only: a placeholder the engine never opens (MAB_OPEN_NO_STORAGE).
        "storage": storage or {"plugin": "json_file",
                               "path": os.path.join(app.instance_path, "mab-unused.json")},
        "secret_file": _key_file(app),
        "cookie": cookie,
        "redirect_allow": list(app.config.get("MAB_REDIRECT_ALLOW", [])),
        "debug_header": bool(app.config.get("MAB_DEBUG_HEADERS", True)),
        "experiments": {name: bandit.to_config() for name, bandit in bandits.items()},
    }
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", app.name)
    path = os.path.join(app.instance_path, "mab-%s.json" % name)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)  # every worker writes the same text; readers never see half
    return path, storage is None


# ---- per-app, per-process state ---------------------------------------------


class _State:
    """What the extension keeps for one app: the bandits, and the engine and
    adapter of the current process (opened at its first request)."""

    def __init__(self, app):
        self.app = app
        self.bandits = {}
        self.lock = threading.Lock()
        self.pid = None
        self.engine = None
        self.adapter = None
        self.config_path = None
        self.debug = bool(app.config.get("MAB_DEBUG_HEADERS", True))
        self.series = _Series()
        self.feature_fn = None
        self._atexit = False

    def forked(self):
        """In a child after fork(): forget the parent's engine and adapter (not
        closed: they belong to the parent, whose store handles we share)."""
        self.lock = threading.Lock()
        self.engine = self.adapter = None

    def open(self):
        """The adapter of this process, opening the engine on first use (and
        again in a forked child: a parent's engine is never used)."""
        adapter = self.adapter
        if adapter is not None:
            return adapter
        with self.lock:
            pid = os.getpid()
            if self.adapter is not None and self.pid == pid:
                return self.adapter
            # A parent's engine and adapter (fork after open) are dropped, not
            # closed: they belong to the parent, whose store handles we share.
            self.engine = self.adapter = None
            app = self.app
            _refuse_one_process_storage(app)
            config = app.config.get("MAB_CONFIG")
            if config:
                path, memory = os.path.join(app.root_path, config), False
                debug = None
            else:
                path, memory = _write_config(app, self.bandits)
                debug = bool(app.config.get("MAB_DEBUG_HEADERS", True))
            engine = mab.Engine(path, no_storage=memory, storage_log_interval=float(
                app.config.get("MAB_STORAGE_LOG_INTERVAL", 60)))
            try:
                adapter = mab.Adapter(engine)
            except BaseException:
                engine.close()
                raise
            if debug is None:  # from the config file (already validated by mab_open)
                with open(path) as f:
                    debug = json.load(f).get("debug_header", False) is True
            self.debug = debug
            self.config_path = path
            self.engine, self.adapter, self.pid = engine, adapter, pid
            if not self._atexit:
                atexit.register(self.close)
                self._atexit = True
            return adapter

    def close(self):
        """Close this process's engine, writing what is pending."""
        with self.lock:
            engine, self.engine, self.adapter = self.engine, None, None
            mine = self.pid == os.getpid()
            self.pid = None
        if engine is not None and mine:
            engine.close()


def _state(app=None):
    app = app or current_app
    try:
        return app.extensions["mab"]
    except KeyError:
        raise MABConfigException("mab.flask is not set up for app %r: call "
                                 "BanditMiddleware(app) or init_app(app)" % app.name) from None


def _request():
    """This request's mab.Request, begun from its Cookie header on first use."""
    rq = g.get("_mab_request")
    if rq is None:
        adapter = _state().open()
        rq = adapter.begin(request.headers.get("Cookie"))
        g._mab_request = rq
    return rq


def _after_request(state, response):
    rq = g.pop("_mab_request", None)
    if rq is not None:
        try:
            cookie = rq.set_cookie()
            if cookie is not None:
                response.headers.add("Set-Cookie", cookie)
            if state.debug:
                debug = rq.debug_header()
                rewarded = g.pop("_mab_rewarded", None)
                if debug is None and rewarded:
                    # A reward-only request: Flask-MAB sends the arms the
                    # visitor's cookie holds, as SAVED.
                    debug = "SAVED; " + ";".join("%s:%s" % kv for kv in rewarded.items())
                if debug is not None:
                    response.headers["X-MAB-Debug"] = debug
        finally:
            rq.end()
    return response


def _teardown_request(exc):
    rq = g.pop("_mab_request", None)
    if rq is not None:
        rq.end()


# ---- the extension ----------------------------------------------------------


def add_bandit(app: Any, name: str, bandit: Optional[Bandit] = None) -> None:
    """Attach a bandit for an experiment (bound as app.add_bandit(name, bandit))."""
    if not isinstance(name, str) or not _ID.match(name):
        raise MABConfigException(
            "experiment %r: ids are 1 to 128 characters from A-Z a-z 0-9 _ -" % (name,))
    if not isinstance(bandit, Bandit):
        raise MABConfigException("experiment %r: expected a Bandit, got %r" % (name, bandit))
    if app.config.get("MAB_CONFIG"):
        raise MABConfigException("experiment %r: MAB_CONFIG is set, so experiments come "
                                 "from %s; add it there" % (name, app.config["MAB_CONFIG"]))
    state = _state(app)
    if state.adapter is not None:
        raise MABConfigException("experiment %r: add bandits before the first request" % name)
    bandit._attach(state, name)
    state.bandits[name] = bandit


class BanditMiddleware:
    """The Flask extension. `BanditMiddleware(app)`, or `BanditMiddleware()`
    then `init_app(app)` for the app-factory pattern."""

    def __init__(self, app: Any = None, feature_fn: Optional[Callable] = None) -> None:
        self.app = app
        self.feature_fn = feature_fn
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any, feature_fn: Optional[Callable] = None) -> None:
        for key, default in (("MAB_COOKIE_NAME", "MAB"), ("MAB_COOKIE_PATH", "/"),
                             ("MAB_COOKIE_TTL", None), ("MAB_DEBUG_HEADERS", True),
                             ("MAB_STORAGE_ENGINE", "BanditStorage"),
                             ("MAB_STORAGE_OPTS", ())):
            app.config.setdefault(key, default)
        _refuse_one_process_storage(app)
        state = _State(app)
        # The context features of every request: feature_fn(request) -> {name: number}
        # (docs/python.md), from here or from app.config["MAB_FEATURE_FN"].
        state.feature_fn = (feature_fn or getattr(self, "feature_fn", None)
                            or app.config.get("MAB_FEATURE_FN"))
        if state.feature_fn is not None and not callable(state.feature_fn):
            raise MABConfigException("feature_fn (MAB_FEATURE_FN) must be callable: "
                                     "feature_fn(request) -> {name: number}")
        app.extensions["mab"] = state
        os.register_at_fork(after_in_child=state.forked)
        app.add_bandit = functools.partial(add_bandit, app)
        app.after_request(functools.partial(_after_request, state))
        app.teardown_request(_teardown_request)
        if app.config.get("MAB_DASHBOARD_URL"):
            _mount_dashboard(app)

    @staticmethod
    def close(app):
        """Close the app's engine in this process (it reopens on the next request)."""
        _state(app).close()

    # The module's functions as methods too: mab = BanditMiddleware(app);
    # @mab.choose_arm("color_btn") ... (the form of Flask-MAB's README).
    @staticmethod
    def choose_arm(name, features=None):
        """choose_arm(name, features), as a method."""
        return choose_arm(name, features)

    @staticmethod
    def reward_endpt(name, value=1):
        """reward_endpt(name, value), as a method."""
        return reward_endpt(name, value)

    @staticmethod
    def suggest_arm_for(key: str, also_pull: bool = True,
                        features: Optional[dict] = None) -> Tuple[str, Any]:
        """suggest_arm_for(key, also_pull, features), as a method."""
        return suggest_arm_for(key, also_pull, features)

    @staticmethod
    def reward_and_redirect(name, target=None, value=1.0):
        """reward_and_redirect(...), as a method."""
        return reward_and_redirect(name, target, value)

    def add_bandit(self, name, bandit=None, app=None):
        """add_bandit on the app this middleware was created with (or `app`)."""
        app = app or self.app
        if app is None:
            raise MABConfigException("add_bandit: this BanditMiddleware has no app; use "
                                     "app.add_bandit(name, bandit)")
        add_bandit(app, name, bandit)

    def __getitem__(self, name):
        """The bandit of experiment `name` (of the current app, or of `self.app`)."""
        app = self.app if self.app is not None else current_app
        return _state(app).bandits[name]


def close(app: Any = None) -> None:
    """Close the app's engine in this process, writing what is pending."""
    _state(app).close()


def _features(features):
    """The context features for a choice now: feature_fn(request), if one is
    configured, updated with `features` (a dict, or a callable taking the
    request); None when there are none."""
    fn = _state().feature_fn
    merged = dict(fn(request) or {}) if fn is not None else None
    if callable(features):
        features = features(request)
    if features:
        merged = dict(merged or {}, **features)
    return merged


def _request_with(features):
    """_request(), with the context features of a choice set on it."""
    rq = _request()
    merged = _features(features)
    if merged is not None or g.get("_mab_features_set"):
        rq.set_features(merged or {})
        g._mab_features_set = merged is not None
    return rq


def suggest_arm_for(key, also_pull=True, features=None):
    """The visitor's arm of experiment `key`: (arm_id, value). Kept from the
    cookie, or chosen now (one pull counted) with the request's context
    features: feature_fn(request) updated with `features` ({name: number},
    or a callable taking the request). `also_pull` is accepted for
    Flask-MAB compatibility: a new assignment always counts its pull."""
    a = _request_with(features).choose(key)
    return a.arm_id, a.value


def pull(bandit_id: str, arm: str) -> None:
    """Count one pull of `arm` of experiment `bandit_id` in the current app
    (Flask-MAB's flask_mab.pull): the bandit's pull_arm()."""
    bandit = _state().bandits.get(bandit_id)
    if bandit is None:
        raise MABConfigException("No experiment defined for bandit key: %s" % bandit_id)
    bandit.pull_arm(arm)


def reward(bandit_id: str, arm: str, reward_amt: float = 1) -> None:
    """Add a reward to `arm` of experiment `bandit_id` in the current app,
    with no cookie involved (Flask-MAB's flask_mab.reward): counted every
    time it is called; reward_endpt is the once-per-assignment form."""
    state = _state()
    state.open()
    try:
        state.engine.reward(bandit_id, arm, reward_amt)
    except mab.MabError as e:
        if e.code == mab.ENOTFOUND:
            raise MABConfigException(e.message) from None
        raise


def choose_arm(name: str, features: Any = None) -> Callable[[Callable], Callable]:
    """Route decorator: the view receives the visitor's arm value of
    experiment `name` as the keyword argument `name`. Stack it for several
    experiments; each is assigned (and counted) at most once per request.
    A new assignment is chosen with the request's context features:
    feature_fn(request) (BanditMiddleware(app, feature_fn=...)) updated
    with `features`, a dict or a callable taking the request."""

    experiment = name.encode()

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            kwargs[name] = _request_with(features).choose_value(experiment)
            return view(*args, **kwargs)
        return wrapper
    return decorator


def reward_endpt(name: str, value: float = 1) -> Callable[[Callable], Callable]:
    """Route decorator: when the view returns, reward the visitor's arm of
    `name` with `value`, once per assignment (a replayed or already
    rewarded cookie counts nothing)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            response = view(*args, **kwargs)
            _reward(name, value)
            return response
        return wrapper
    return decorator


def _reward(name, value):
    """Reward the visitor's arm of `name`, noting it for X-MAB-Debug."""
    try:
        result = _request().reward(name, value)
    except mab.MabError as e:
        _refuse_not_durable(e)
        raise
    _note_rewarded(name, result)
    return result


def _note_rewarded(name, result):
    """Remember the visitor's arm of `name` for X-MAB-Debug (Flask-MAB sends
    SAVED with the cookie's arms on reward responses too)."""
    arm = result.arm_id
    if arm is None and result.reason == "already_rewarded" and _state().debug:
        # The cookie holds this arm (rewarded before): look it up; a kept
        # assignment counts no pull.
        arm = _request().choose(name).arm_id
    if arm is not None:
        rewarded = g.get("_mab_rewarded")
        if rewarded is None:
            rewarded = g._mab_rewarded = {}
        rewarded[name] = arm


def _refuse_not_durable(error):
    """sync "always" and the reward could not be made durable: 503, not an
    acknowledgement (the reason is in the "mab" log, not in the answer)."""
    if error.code == mab.ESTORAGE:
        abort(503, description="The reward could not be stored; try again later.")


def reward_and_redirect(name: str, target: Optional[str] = None, value: float = 1.0) -> Any:
    """Reward the visitor's arm of `name`, then a 303 redirect to `target`.

    In a view, return it: `return reward_and_redirect("color", "/thanks")`.
    Outside a request it is a route decorator: `@reward_and_redirect("color",
    "/thanks")` answers every request of the view with the reward and the
    redirect (the view runs first; with no `target`, the URL the view returns
    is the target). Targets must be relative paths or match
    MAB_REDIRECT_ALLOW (the config's redirect_allow); any other answers 400
    and counts nothing."""
    if not has_request_context():
        def decorator(view):
            @functools.wraps(view)
            def wrapper(*args, **kwargs):
                returned = view(*args, **kwargs)
                where = target if target is not None else returned
                if not isinstance(where, str):
                    raise MABConfigException(
                        "reward_and_redirect(%r) without a target: the view must return "
                        "the URL to redirect to, not %r" % (name, type(where).__name__))
                return _redirect(name, where, value)
            return wrapper
        return decorator
    if target is None:
        raise MABConfigException("reward_and_redirect(%r): no target" % (name,))
    return _redirect(name, target, value)


def _redirect(name, target, value):
    try:
        result, where = _request().redirect(name, target, value)
    except mab.MabError as e:
        if e.code == mab.EINVAL:
            abort(400, description=e.message)
        _refuse_not_durable(e)
        raise
    _note_rewarded(name, result)
    return redirect(where.location, code=where.status)


# ---- dashboard ----------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
# The package's copy (a wheel, an sdist install, cmake --install), else the
# one in the source tree: hosts/python/src/mab/flask -> <src>/web/dashboard.
_ASSET_DIRS = (os.path.normpath(os.path.join(_HERE, "..", "assets")),
               os.path.normpath(os.path.join(_HERE, "..", "..", "..", "..", "..", "web",
                                             "dashboard")))
_PAGE_HEADERS = {
    "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"}
_WILSON_Z = 1.959963984540054
_SHARE_WINDOW_S = 3600


def _asset(name):
    for d in _ASSET_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return f.read()
    raise MABConfigException("dashboard asset %s not found in %s" % (name, _ASSET_DIRS))


def _admin_token(app):
    token = app.config.get("MAB_DASHBOARD_TOKEN")
    path = app.config.get("MAB_DASHBOARD_TOKEN_FILE")
    if path:
        with open(path) as f:
            token = f.readline().strip()
    if not token or len(token) < 16:
        raise MABConfigException("MAB_DASHBOARD_URL is set: the dashboard needs an admin "
                                 "token of 16+ characters in MAB_DASHBOARD_TOKEN or the first "
                                 "line of MAB_DASHBOARD_TOKEN_FILE")
    return token


class _Series:
    """The dashboard's samples of this process (taken when the dashboard is
    asked, at most one per interval)."""

    def __init__(self, interval_s=60, keep=1440):
        self.interval_s, self.keep = interval_s, keep
        self.samples = []

    def sample(self, engine, now):
        if self.samples and now - self.samples[-1]["t"] < self.interval_s:
            return
        point = {e.id: {a.arm_id: [a.pulls, a.reward_sum] for a in engine.stats(e.id)}
                 for e in engine.experiments()}
        self.samples = (self.samples + [{"t": now, "e": point}])[-self.keep:]

    def baseline(self, since, exp, arm):
        for s in self.samples:
            if s["t"] >= since and arm in s["e"].get(exp, {}):
                return s["e"][exp][arm][0], s["t"]
        return None


def _wilson(p, n):
    if n <= 0:
        return 0.0, 1.0
    z2 = _WILSON_Z * _WILSON_Z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = _WILSON_Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


def _dashboard_data(state):
    """The same document as mabd's GET /v1/dashboard."""
    state.open()
    engine = state.engine
    now = int(time.time())
    state.series.sample(engine, now)
    experiments = []
    for info in engine.experiments():
        arms = engine.stats(info.id)
        span = info.reward_max - info.reward_min
        total = sum(a.pulls for a in arms)
        window, since = [], now
        for a in arms:
            base = state.series.baseline(now - _SHARE_WINDOW_S, info.id, a.arm_id)
            if base:
                window.append(a.pulls - base[0] if a.pulls >= base[0] else a.pulls)
                since = min(since, base[1])
            else:
                window.append(a.pulls)
        window_total = sum(window)
        rows = []
        for a, w in zip(arms, window):
            lo, hi, rate = info.reward_min, info.reward_max, None
            if a.pulls:
                p = min(1.0, max(0.0, (a.mean - info.reward_min) / span))
                plo, phi = _wilson(p, a.pulls)
                rate = a.mean
                lo, hi = info.reward_min + plo * span, info.reward_min + phi * span
            share = (w / window_total if window_total else
                     a.pulls / total if total else None)
            rows.append({"id": a.arm_id, "value": engine.arm(info.id, a.arm_id).value,
                         "pulls": a.pulls, "rewards": a.rewards,
                         "reward_sum": a.reward_sum, "rate": _finite(rate), "lo": lo,
                         "hi": hi, "share": _finite(share)})
        # Leader, P(best), expected loss, the recommendation and the policy's
        # parameters: libmab's report, as mabd's dashboard has it.
        experiments.append({"id": info.id, "policy": info.policy,
                            "reward_min": info.reward_min, "reward_max": info.reward_max,
                            "pulls": total, "share_since": since if window_total else 0,
                            "arms": rows, "report": engine.report(info.id)})
    return {"now": now, "interval_s": state.series.interval_s,
            "share_window_s": _SHARE_WINDOW_S, "storage": engine.storage_name,
            "experiments": experiments, "series": state.series.samples}


def _mount_dashboard(app):
    """mabd's dashboard page under MAB_DASHBOARD_URL, for the admin token only
    (Authorization: Bearer TOKEN, or ?access_token=TOKEN to open it in a browser)."""
    prefix = "/" + app.config["MAB_DASHBOARD_URL"].strip("/")
    token = _admin_token(app)
    # web/dashboard's files, served as they are: the page loads its assets and
    # its data relative to its own URL (prefix + "/").
    html = _asset("dashboard.html")
    script = _asset("dashboard.js")
    style = _asset("dashboard.css")

    def authorized():
        given = request.args.get("access_token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(view):
        @functools.wraps(view)
        def wrapper():
            if not authorized():
                return Response(json.dumps({"error": "admin token required"}) + "\n", 401,
                                {"WWW-Authenticate": "Bearer"},
                                mimetype="application/json")
            return view()
        return wrapper

    def page():
        return Response(html, 200, _PAGE_HEADERS, mimetype="text/html")

    def data():
        return Response(json.dumps(_dashboard_data(_state())) + "\n",
                        mimetype="application/json")

    def asset(text, mimetype):
        return lambda: Response(text, 200, {"Cache-Control": "max-age=300",
                                            "X-Content-Type-Options": "nosniff"},
                                mimetype=mimetype)

    app.add_url_rule(prefix + "/", "mab_dashboard", guarded(page))
    app.add_url_rule(prefix + "/v1/dashboard", "mab_dashboard_data", guarded(data))
    app.add_url_rule(prefix + "/assets/dashboard.js", "mab_dashboard_js",
                     asset(script, "text/javascript"))
    app.add_url_rule(prefix + "/assets/dashboard.css", "mab_dashboard_css",
                     asset(style, "text/css"))
