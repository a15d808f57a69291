"""mab: Python binding of libmab, through ctypes (no compiled extension).

    import mab
    with mab.Engine("shop.json") as engine:
        choice = engine.choose("color_btn")      # choice.arm_id, choice.value
        engine.reward("color_btn", choice.arm_id, 1.0)
        print(engine.stats("color_btn"))

The request hooks of include/mab/adapter.h (signed sticky cookies, rewards
counted once per assignment, the redirect guard) are `Adapter` and `Request`;
`mab.flask` builds a Flask extension on them. Failures raise `MabError`,
carrying the library's status code and sentence.

Storage write failures go to the `logging` logger "mab" (libmab never logs):
the first failure of a streak, a summary every `storage_log_interval`
seconds while it lasts, and the recovery (see Engine).
"""
import collections
import ctypes
import json
import logging
import math
import numbers
import os
import threading
import time
import weakref
from typing import Any, Iterable, List, Optional

from . import _native
from ._native import (OK, ENOMEM, EINVAL, ECONFIG, EPLUGIN, ENOTFOUND, ERANGE, ESTORAGE,
                      EBUSY, ECORRUPT, EIO, ECLAIMED, ELATE, OPEN_NO_STORAGE, OPEN_SEED, library_path,
                      plugin_dirs)

__version__ = "0.2.0"

__all__ = ["Engine", "Adapter", "Request", "MabError", "Choice", "ArmStats", "Experiment",
           "Record", "Assignment", "RewardResult", "Redirect", "version", "strerror",
           "keygen", "library_path", "plugin_dirs", "OK", "ENOMEM", "EINVAL", "ECONFIG",
           "EPLUGIN", "ENOTFOUND", "ERANGE", "ESTORAGE", "EBUSY", "ECORRUPT", "EIO", "ECLAIMED", "ELATE",
           "OPEN_NO_STORAGE", "OPEN_SEED"]

_lib = _native.lib


MabError = _native.MabError
_CODE_NAMES = _native.CODE_NAMES


def _text(raw):
    return None if raw is None else raw.decode("utf-8")


def _bytes(s, what):
    if not isinstance(s, str):
        raise TypeError("%s must be a str, not %s" % (what, type(s).__name__))
    return s.encode("utf-8")


def _probability(p):
    return None if math.isnan(p) else p


def _check(rc, err):
    if rc != OK:
        message = err.message.decode("utf-8", "replace") or _text(_lib.mab_strerror(rc))
        raise MabError(rc, message)


def _value(value_json):
    return None if value_json is None else json.loads(value_json)


def version() -> str:
    """libmab's version string, e.g. "0.2.0"."""
    return _text(_lib.mab_version())


def strerror(code: int) -> str:
    """A static English description of a status code."""
    return _text(_lib.mab_strerror(code))


def keygen(path: "str | os.PathLike[str]") -> None:
    """Create a key file for `secret_file` (32 random bytes, mode 0600).
    Never overwrites: an existing file raises MabError(EIO)."""
    err = _native.mab_error()
    _check(_lib.mab_adapter_keygen(_bytes(str(path), "path"), ctypes.byref(err)), err)


Choice = collections.namedtuple("Choice", "arm_index arm_id value value_json probability")
Choice.__doc__ = """An arm chosen (or looked up): probability is None when the policy cannot
tell (Thompson, and lookups)."""
ArmStats = collections.namedtuple("ArmStats",
                                  "arm_id pulls rewards reward_sum reward_sum_sq mean")
Experiment = collections.namedtuple("Experiment",
                                    "id policy policy_path n_arms reward_min reward_max")
Record = collections.namedtuple("Record",
                                "experiment arm pulls rewards reward_sum reward_sum_sq")


log = logging.getLogger("mab")


class _StorageLog:
    """Storage write failures of one engine, for the "mab" logger. libmab
    counts failed writes (mab_storage_errors) and keeps what failed queued;
    a thread checks the count every second: a new failure starts a streak
    (logged with its reason, asked of mab_flush), more failures are
    summarised every `interval` seconds, and after a second without a new
    failure a flush that succeeds ends the streak (logged too). So while
    writes fail, the thread tries one write a second itself."""

    CHECK_S = 1.0

    def __init__(self, engine, interval):
        self.engine_ref = weakref.ref(engine)  # the thread keeps no engine alive
        self.interval = float(interval)
        self.lock = threading.Lock()
        self.errors = engine.storage_errors
        self.failing = False
        self.streak = self.summarised = 0
        self.started = self.last_log = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="mab-storage-log", daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(self.CHECK_S):
            try:
                self.update()
            except MabError:  # the engine closed meanwhile
                return
            except ReferenceError:
                return

    def close(self):
        self.stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join()

    @staticmethod
    def _flush(engine):
        try:
            engine.flush()
            return None
        except MabError as e:
            return e.message

    def update(self, reason=None):
        """reason: the error of a reward that just failed, or None (the timer)."""
        with self.lock:
            engine, now = self.engine_ref(), time.monotonic()
            if engine is None:
                raise ReferenceError("the engine is gone")
            errors = engine.storage_errors
            if errors > self.errors:
                self.streak += errors - self.errors
                self.errors = errors
                if not self.failing:
                    if reason is None:
                        # the count says that a write failed, not why: ask
                        reason = self._flush(engine) or "(it succeeded when retried)"
                        self.streak += engine.storage_errors - self.errors
                        self.errors = engine.storage_errors
                    self.failing = True
                    self.started = self.last_log = now
                    self.summarised = self.streak
                    log.error("%s: writing to storage (%s) failed: %s; what failed stays "
                              "queued and is retried (further failures are summarised every "
                              "%g s)", engine.config_path, engine.storage_name, reason,
                              self.interval)
                elif now - self.last_log >= self.interval:
                    log.error("%s: writing to storage (%s) still fails: %d failed writes in "
                              "the last %.0f s, %d since the first %.0f s ago%s",
                              engine.config_path, engine.storage_name,
                              self.streak - self.summarised, now - self.last_log, self.streak,
                              now - self.started, "; last: " + reason if reason else "")
                    self.last_log = now
                    self.summarised = self.streak
                return
            if not self.failing or reason is not None:
                return
            # no new failure for a second: is what was queued written now?
            failed = self._flush(engine)
            self.errors = engine.storage_errors
            if failed is not None:
                self.streak += 1
                return
            log.warning("%s: writing to storage (%s) succeeds again, after %d failed writes "
                        "in %.0f s", engine.config_path, engine.storage_name, self.streak,
                        now - self.started)
            self.failing = False
            self.streak = self.summarised = 0


class Engine:
    """An open engine (mab_open_ex). Thread-safe, like the C engine; close it
    (or use `with`) to write what is pending. After os.fork() a child must not
    use its parent's engine: it opens its own.

    With storage, storage write failures are logged to the logger "mab"
    (_StorageLog): the first of a streak at ERROR with its reason, a summary
    every `storage_log_interval` seconds while they last, the recovery at
    WARNING. Under `sync: "always"` a reward that could not be made durable
    raises MabError(ESTORAGE): it is not counted as acknowledged (it stays
    queued and libmab retries it)."""

    def __init__(self, config_path: "str | os.PathLike[str]", no_storage: bool = False,
                 seed: Optional[int] = None, storage_log_interval: float = 60.0) -> None:
        opts = _native.mab_options(ctypes.sizeof(_native.mab_options), 0, 0)
        if no_storage:
            opts.flags |= OPEN_NO_STORAGE
        if seed is not None:
            opts.flags |= OPEN_SEED
            opts.seed = seed
        handle = ctypes.c_void_p()
        err = _native.mab_error()
        self._handle = None
        self._storage_log = None
        self._adapters = weakref.WeakSet()
        self._lock = threading.Lock()
        self.config_path = str(config_path)
        _check(_lib.mab_open_ex(_bytes(self.config_path, "config_path"), ctypes.byref(opts),
                                ctypes.byref(handle), ctypes.byref(err)), err)
        self._handle = handle
        if not no_storage:
            self._storage_log = _StorageLog(self, storage_log_interval)

    def _storage_failed(self, error):
        """A call failed with MAB_ESTORAGE: log the streak now, not at the next check."""
        if error.code == ESTORAGE and self._storage_log is not None:
            self._storage_log.update(error.message)

    def _h(self):
        h = self._handle
        if h is None:
            raise MabError(EINVAL, "%s: the engine is closed" % self.config_path)
        return h

    @property
    def closed(self):
        return self._handle is None

    def close(self) -> None:
        """Close adapters opened over this engine, write what is pending and
        free the engine. Raises MabError when the final write failed (the
        engine is freed anyway). Closing twice is a no-op."""
        with self._lock:
            if self._handle is None:
                return
            watcher, self._storage_log = self._storage_log, None
        if watcher is not None:
            watcher.close()  # before the handle goes: it may be flushing
        with self._lock:
            h, self._handle = self._handle, None
        if h is None:
            return
        for adapter in list(self._adapters):
            adapter.close()
        err = _native.mab_error()
        _check(_lib.mab_close(h, ctypes.byref(err)), err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def choose(self, experiment: str) -> Choice:
        """Let the policy choose an arm and count one pull: a Choice."""
        out = _native.mab_choice()
        err = _native.mab_error()
        _check(_lib.mab_choose(self._h(), _bytes(experiment, "experiment"), ctypes.byref(out),
                               ctypes.byref(err)), err)
        return Choice(out.arm_index, _text(out.arm_id), _value(out.value_json),
                      _text(out.value_json), _probability(out.probability))

    def arm(self, experiment: str, arm: str) -> Choice:
        """Describe one arm without counting a pull: a Choice (probability None)."""
        out = _native.mab_choice()
        err = _native.mab_error()
        _check(_lib.mab_arm_lookup(self._h(), _bytes(experiment, "experiment"),
                                   _bytes(arm, "arm"), ctypes.byref(out), ctypes.byref(err)),
               err)
        return Choice(out.arm_index, _text(out.arm_id), _value(out.value_json),
                      _text(out.value_json), None)

    def reward(self, experiment: str, arm: str, value: float = 1.0) -> None:
        """Record a reward for an arm (in the experiment's reward range).
        Under sync "always", MabError(ESTORAGE) when it could not be made durable."""
        err = _native.mab_error()
        try:
            _check(_lib.mab_reward(self._h(), _bytes(experiment, "experiment"),
                                   _bytes(arm, "arm"), float(value), ctypes.byref(err)), err)
        except MabError as e:
            self._storage_failed(e)
            raise

    def experiments(self) -> List[Experiment]:
        """The experiments, in config order: a list of Experiment."""
        h = self._h()
        result = []
        for i in range(_lib.mab_experiment_count(h)):
            info = _native.mab_experiment_info()
            err = _native.mab_error()
            _check(_lib.mab_experiment_at(h, i, ctypes.byref(info), ctypes.byref(err)), err)
            result.append(Experiment(_text(info.id), _text(info.policy),
                                     _text(info.policy_path), info.n_arms, info.reward_min,
                                     info.reward_max))
        return result

    def stats(self, experiment: Optional[str] = None) -> Any:
        """Totals of every arm of `experiment` (a list of ArmStats in config
        order), or of every experiment ({id: [ArmStats, ...]}) without one."""
        if experiment is None:
            return {e.id: self.stats(e.id) for e in self.experiments()}
        h = self._h()
        name = _bytes(experiment, "experiment")
        cap = 8
        while True:
            arms = (_native.mab_arm_stats * cap)()
            arms[0].struct_size = ctypes.sizeof(_native.mab_arm_stats)  # the stride
            n = ctypes.c_size_t()
            err = _native.mab_error()
            _check(_lib.mab_stats(h, name, arms, cap, ctypes.byref(n), ctypes.byref(err)), err)
            if n.value <= cap:
                return [ArmStats(_text(a.arm_id), a.pulls, a.rewards, a.reward_sum,
                                 a.reward_sum_sq, a.mean) for a in arms[:n.value]]
            cap = n.value

    def report(self, experiment: str, history: int = 0) -> Any:
        """Who is winning, and how sure: the core's report of one experiment
        (mab_report_get(), one snapshot of its arms), as the dict of its JSON
        document (mab_report_json(); the same as `mab report --json` per
        experiment and mabd's /v1/report/EXP): "leader", "winner",
        "recommendation", "policy_params", "winner_rule", "model", and per
        arm in "arms" pulls, rewards, mean, "ci_low"/"ci_high" (95% credible
        interval), "p_best", "expected_loss" and "share_last_bucket"; the
        operating rules in force in "rules"; the last `history` time buckets
        (0: libmab's default, MAB_REPORT_HISTORY_DEFAULT) in "history". What
        storage cannot tell yet is None, named in "not_available" and
        explained in "not_available_reasons"."""
        report = _native.mab_report()
        report.struct_size = ctypes.sizeof(report)
        err = _native.mab_error()
        _check(_lib.mab_report_get_buckets(self._h(), _bytes(experiment, "experiment"),
                                           int(history), ctypes.byref(report),
                                           ctypes.byref(err)), err)
        text = ctypes.c_void_p()
        try:
            err = _native.mab_error()
            _check(_lib.mab_report_json(ctypes.byref(report), ctypes.byref(text),
                                        ctypes.byref(err)), err)
            try:
                return json.loads(ctypes.string_at(text.value).decode("utf-8"))
            finally:
                _lib.mab_report_json_free(text)
        finally:
            _lib.mab_report_free(ctypes.byref(report))

    @property
    def storage_name(self):
        return _text(_lib.mab_storage_name(self._h()))

    @property
    def storage_errors(self):
        return _lib.mab_storage_errors(self._h())

    def flush(self) -> None:
        """Write every pending increment now and wait until it is durable."""
        err = _native.mab_error()
        _check(_lib.mab_flush(self._h(), ctypes.byref(err)), err)

    def reset(self, experiment: str) -> None:
        """Zero an experiment's counters, in memory and in storage."""
        err = _native.mab_error()
        _check(_lib.mab_reset(self._h(), _bytes(experiment, "experiment"), ctypes.byref(err)),
               err)

    def export(self) -> List[Record]:
        """Every stored record (arms no longer in the config included): a list of Record."""
        records = []

        def visit(ctx, rec):
            r = rec.contents
            records.append(Record(_text(r.experiment), _text(r.arm), r.pulls, r.rewards,
                                  r.reward_sum, r.reward_sum_sq))
            return 0

        err = _native.mab_error()
        _check(_lib.mab_export(self._h(), _native.VISIT(visit), None, ctypes.byref(err)), err)
        return records

    def import_records(self, records: Iterable[Record], replace: bool = False) -> None:
        """Add Records to storage, all or nothing (replace: the experiments
        named hold exactly these records afterwards)."""
        records = list(records)
        array = (_native.mab_record * max(1, len(records)))()
        keep = []  # the encoded strings must outlive the call
        for slot, r in zip(array, records):
            r = Record(*r)
            exp, arm = _bytes(r.experiment, "experiment"), _bytes(r.arm, "arm")
            keep += [exp, arm]
            slot.experiment, slot.arm = exp, arm
            slot.pulls, slot.rewards = r.pulls, r.rewards
            slot.reward_sum, slot.reward_sum_sq = r.reward_sum, r.reward_sum_sq
        err = _native.mab_error()
        _check(_lib.mab_import(self._h(), array, len(records), 1 if replace else 0,
                               ctypes.byref(err)), err)


Assignment = collections.namedtuple("Assignment",
                                    "experiment arm_id value value_json probability is_new")
RewardResult = collections.namedtuple("RewardResult", "counted reason arm_id")
RewardResult.__doc__ = """reason is None when counted, else "no_cookie", "invalid_cookie",
"no_assignment", "already_rewarded", "replayed", "arm_removed" or "expired"."""
Redirect = collections.namedtuple("Redirect", "status location")

_REASONS = {}


def _reason(code):
    if code == 0:
        return None
    if code not in _REASONS:
        _REASONS[code] = _text(_lib.mab_reward_reason_name(code))
    return _REASONS[code]


class Adapter:
    """The request hooks over an engine (mab_adapter_open): reads the
    config's secret_file, cookie, redirect_allow and debug_header. Usable
    from many threads; each Request belongs to one thread."""

    def __init__(self, engine):
        handle = ctypes.c_void_p()
        err = _native.mab_error()
        self._handle = None
        _check(_lib.mab_adapter_open(engine._h(), ctypes.byref(handle), ctypes.byref(err)), err)
        self._handle = handle
        self.engine = engine
        engine._adapters.add(self)

    def _h(self):
        h = self._handle
        if h is None:
            raise MabError(EINVAL, "the adapter is closed")
        return h

    def close(self):
        h, self._handle = self._handle, None
        if h is not None:
            _lib.mab_adapter_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def reload(self, engine):
        """Serve another engine (a reloaded config), keeping counters and the
        replay memory; on failure nothing changes."""
        err = _native.mab_error()
        _check(_lib.mab_adapter_reload(self._h(), engine._h(), ctypes.byref(err)), err)
        self.engine._adapters.discard(self)
        self.engine = engine
        engine._adapters.add(self)

    def counters(self):
        """The adapter's counters since it was opened, as a dict."""
        c = _native.mab_adapter_counters()
        _lib.mab_adapter_get_counters(self._h(), ctypes.byref(c))
        return {name: getattr(c, name) for name, _ in c._fields_}

    def check_redirect(self, target):
        """Raise MabError(EINVAL) saying why when `target` is refused by the
        redirect guard; return None when it is acceptable."""
        err = _native.mab_error()
        _check(_lib.mab_adapter_check_redirect(self._h(), _bytes(target, "target"),
                                               ctypes.byref(err)), err)

    def begin(self, cookie_header: Optional[str] = None,
              token: Optional[str] = None) -> "Request":
        """Start one request from its Cookie header (or a token): a Request."""
        return Request(self, cookie_header, token)


_SHARED_VALUES = {}  # arm value JSON text -> its immutable Python value


class Request:
    """One HTTP request's view of the visitor's assignments
    (mab_request_begin ... mab_request_end). Use `with`, or call end()."""

    __slots__ = ("_handle", "adapter")

    def __init__(self, adapter, cookie_header=None, token=None):
        handle = ctypes.c_void_p()
        err = _native.mab_error()
        self._handle = None
        self.adapter = adapter
        _check(_lib.mab_request_begin(
            adapter._h(), None if cookie_header is None else _bytes(cookie_header, "cookie"),
            None if token is None else _bytes(token, "token"), ctypes.byref(handle),
            ctypes.byref(err)), err)
        self._handle = handle

    def _h(self):
        h = self._handle
        if h is None:
            raise MabError(EINVAL, "the request has ended")
        return h

    def end(self):
        h, self._handle = self._handle, None
        if h is not None:
            _lib.mab_request_end(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.end()

    def __del__(self):
        self.end()

    def set_features(self, features):
        """Give the request's context features, a mapping of names to numbers,
        for the assignments choose() makes afterwards (replacing earlier
        ones; mab_request_set_features). The policy gets the features its
        config names ("features"); a name it does not use is ignored. None,
        NaN or an infinity is a missing feature (NaN). The values a policy
        uses travel in the cookie: a later reward's update() sees those,
        not the reward request's. Raises TypeError for a value that is not
        a number (bool included) and MabError(EINVAL) for too many."""
        items = list((features or {}).items())
        names = (ctypes.c_char_p * len(items))()
        values = (ctypes.c_double * len(items))()
        for i, (name, value) in enumerate(items):
            if not isinstance(name, str):
                raise TypeError("feature names are str, not %s" % type(name).__name__)
            if value is None:
                value = math.nan
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError("feature %s: expected a number or None, not %s"
                                % (name, type(value).__name__))
            names[i] = _bytes(name, "feature name")
            values[i] = float(value)
        err = _native.mab_error()
        _check(_lib.mab_request_set_features(self._h(), names, values, len(items),
                                             ctypes.byref(err)), err)

    def choose(self, experiment):
        """The visitor's arm of `experiment`: kept from the cookie, or chosen
        now with one pull counted (is_new). An Assignment."""
        out = _native.mab_assignment()
        err = _native.mab_error()
        _check(_lib.mab_request_choose(self._h(), _bytes(experiment, "experiment"),
                                       ctypes.byref(out), ctypes.byref(err)), err)
        value_json = _text(out.value_json)
        return Assignment(experiment, _text(out.arm_id), _value(value_json), value_json,
                          _probability(out.probability), bool(out.is_new))

    def choose_value(self, experiment):
        """choose() for hosts on a hot path: the arm's value only. `experiment`
        is bytes (UTF-8). Values are parsed once per distinct JSON text and
        shared when immutable (str, number, bool, None); lists and objects
        are parsed afresh, so a caller may modify what it gets."""
        out = _native.mab_assignment()
        err = _native.mab_error()
        rc = _lib.mab_request_choose(self._handle, experiment, ctypes.byref(out),
                                     ctypes.byref(err))
        if rc != OK:
            if self._handle is None:
                self._h()
            _check(rc, err)
        raw = out.value_json
        try:
            return _SHARED_VALUES[raw]
        except KeyError:
            value = json.loads(raw)
            if not isinstance(value, (list, dict)):
                if len(_SHARED_VALUES) > 4096:
                    _SHARED_VALUES.clear()
                _SHARED_VALUES[raw] = value
            return value

    def reward(self, experiment, value=1.0):
        """Credit the visitor's arm once per assignment: a RewardResult.
        Under sync "always", MabError(ESTORAGE) when the reward could not be
        made durable: it is not acknowledged (answer 503)."""
        out = _native.mab_reward_result()
        err = _native.mab_error()
        try:
            _check(_lib.mab_request_reward(self._h(), _bytes(experiment, "experiment"),
                                           float(value), ctypes.byref(out), ctypes.byref(err)),
                   err)
        except MabError as e:
            self.adapter.engine._storage_failed(e)
            raise
        return RewardResult(bool(out.counted), _reason(out.reason), _text(out.arm_id))

    def redirect(self, experiment, target, value=1.0):
        """Reward, then redirect: (RewardResult, Redirect). A target refused
        by the guard raises MabError(EINVAL) and counts nothing."""
        result = _native.mab_reward_result()
        where = _native.mab_redirect()
        err = _native.mab_error()
        try:
            _check(_lib.mab_request_redirect(self._h(), _bytes(experiment, "experiment"),
                                             float(value), _bytes(target, "target"),
                                             ctypes.byref(result), ctypes.byref(where),
                                             ctypes.byref(err)), err)
        except MabError as e:
            self.adapter.engine._storage_failed(e)
            raise
        return (RewardResult(bool(result.counted), _reason(result.reason),
                             _text(result.arm_id)),
                Redirect(where.status, _text(where.location)))

    def set_cookie(self):
        """The Set-Cookie header value to send, or None when unchanged."""
        return _text(_lib.mab_request_set_cookie(self._h()))

    def token(self):
        """The signed state as a token for callers without cookies, or None."""
        return _text(_lib.mab_request_token(self._h()))

    def debug_header(self):
        """The X-MAB-Debug header value (config debug_header), or None."""
        return _text(_lib.mab_request_debug_header(self._h()))
