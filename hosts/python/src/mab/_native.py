"""ctypes declarations of libmab's public API (include/mab/mab.h, adapter.h).

Every structure here mirrors its C declaration field for field;
tests/integration/python/test_layout.py compiles a small C program against the headers
and compares sizes and offsets, so a header change cannot silently break the
binding.
"""
import ctypes
import ctypes.util
import os
import subprocess
import threading

MAB_ERROR_MAX = 512

OK = 0
ENOMEM = -1
EINVAL = -2
ECONFIG = -3
EPLUGIN = -4
ENOTFOUND = -5
ERANGE = -6
ESTORAGE = -7
EBUSY = -8
ECORRUPT = -9
EIO = -10
ECLAIMED = -11
ELATE = -12

OPEN_NO_STORAGE = 0x1
OPEN_SEED = 0x2

_c_size_t = ctypes.c_size_t
_c_str = ctypes.c_char_p
_c_u64 = ctypes.c_uint64


class mab_error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * MAB_ERROR_MAX)]


class mab_options(ctypes.Structure):
    _fields_ = [("struct_size", _c_size_t), ("flags", ctypes.c_uint), ("seed", _c_u64)]


class _Sized(ctypes.Structure):
    """A struct that starts with struct_size (mab.h, "Structs that grow"):
    set to this declaration's size on creation. Arrays of them do not run
    __init__: set the first entry's struct_size by hand (it is the stride)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.struct_size = ctypes.sizeof(self)


class mab_choice(_Sized):
    _fields_ = [("struct_size", _c_size_t), ("arm_index", _c_size_t), ("arm_id", _c_str),
                ("value_json", _c_str), ("probability", ctypes.c_double),
                ("estimated", ctypes.c_int), ("flags", ctypes.c_uint)]


class mab_arm_stats(_Sized):
    _fields_ = [("struct_size", _c_size_t), ("arm_id", _c_str), ("pulls", _c_u64),
                ("rewards", _c_u64), ("reward_sum", ctypes.c_double),
                ("reward_sum_sq", ctypes.c_double), ("mean", ctypes.c_double),
                ("value_json", _c_str)]


class mab_experiment_info(_Sized):
    _fields_ = [("struct_size", _c_size_t), ("id", _c_str), ("policy", _c_str),
                ("policy_path", _c_str), ("n_arms", _c_size_t),
                ("reward_min", ctypes.c_double), ("reward_max", ctypes.c_double),
                ("policy_abi", ctypes.c_uint), ("n_features", _c_size_t)]


class mab_record(ctypes.Structure):
    _fields_ = [("experiment", _c_str), ("arm", _c_str), ("pulls", _c_u64),
                ("rewards", _c_u64), ("reward_sum", ctypes.c_double),
                ("reward_sum_sq", ctypes.c_double)]


MAB_REPORT_TEXT_MAX = 192
MAB_REPORT_DRAWS = 10000


class mab_report_arm(ctypes.Structure):
    _fields_ = [("arm_id", _c_str), ("pulls", _c_u64), ("rewards", _c_u64),
                ("reward_sum", ctypes.c_double), ("mean", ctypes.c_double),
                ("ci_low", ctypes.c_double), ("ci_high", ctypes.c_double),
                ("p_best", ctypes.c_double), ("expected_loss", ctypes.c_double),
                ("share_last_bucket", ctypes.c_double), ("late_rewards", _c_u64)]


class mab_report(ctypes.Structure):
    _fields_ = [("struct_size", _c_size_t), ("experiment", _c_str), ("policy", _c_str),
                ("policy_json", _c_str), ("reward_min", ctypes.c_double),
                ("reward_max", ctypes.c_double), ("model", ctypes.c_int),
                ("draws", ctypes.c_uint), ("seed", _c_u64),
                ("winner_p_best", ctypes.c_double), ("winner_expected_loss", ctypes.c_double),
                ("pulls", _c_u64), ("leader", _c_size_t), ("winner", ctypes.c_int),
                ("n_arms", _c_size_t), ("arm_size", _c_size_t), ("arms", ctypes.c_void_p),
                ("recommendation", ctypes.c_char * MAB_REPORT_TEXT_MAX),
                ("available", ctypes.c_uint), ("holdout_diff", ctypes.c_double),
                ("holdout_diff_low", ctypes.c_double), ("holdout_diff_high", ctypes.c_double),
                ("srm_p_value", ctypes.c_double), ("late_rewards", _c_u64),
                ("srm_status", ctypes.c_char * MAB_REPORT_TEXT_MAX),
                ("bucket_seconds", ctypes.c_int64), ("last_bucket_start", ctypes.c_int64),
                ("n_history", _c_size_t),
                ("history_size", _c_size_t), ("history", ctypes.c_void_p),
                ("rules", ctypes.c_void_p)]


class mab_adapter_counters(_Sized):
    _fields_ = [("struct_size", _c_size_t)] + [(name, _c_u64) for name in (
        "cookies_forged", "cookies_expired", "assignments", "rewards_counted",
        "rewards_refused", "replays_refused", "replay_evictions", "redirects_refused")]


class mab_assignment(_Sized):
    _fields_ = [("struct_size", _c_size_t), ("experiment", _c_str), ("arm_id", _c_str),
                ("value_json", _c_str), ("probability", ctypes.c_double),
                ("is_new", ctypes.c_int), ("arm_index", _c_size_t),
                ("flags", ctypes.c_uint)]


class mab_reward_result(_Sized):
    # `reason` is the enum mab_reward_reason: an int on every ABI we build for.
    _fields_ = [("struct_size", _c_size_t), ("counted", ctypes.c_int), ("reason", ctypes.c_int),
                ("arm_id", _c_str), ("probability", ctypes.c_double)]


class mab_redirect(_Sized):
    _fields_ = [("struct_size", _c_size_t), ("status", ctypes.c_int), ("location", _c_str)]


# The structures the layout test checks, by their C names.
STRUCTS = {cls.__name__: cls for cls in (
    mab_error, mab_options, mab_choice, mab_arm_stats, mab_experiment_info, mab_record,
    mab_report_arm, mab_report, mab_adapter_counters, mab_assignment, mab_reward_result,
    mab_redirect)}

_P = ctypes.c_void_p
_PERR = ctypes.POINTER(mab_error)
VISIT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(mab_record))

# name: (restype, argtypes)
_PROTOTYPES = {
    "mab_strerror": (_c_str, [ctypes.c_int]),
    "mab_version": (_c_str, []),
    "mab_open_ex": (ctypes.c_int, [_c_str, ctypes.POINTER(mab_options), ctypes.POINTER(_P),
                                   _PERR]),
    "mab_close": (ctypes.c_int, [_P, _PERR]),
    "mab_choose": (ctypes.c_int, [_P, _c_str, ctypes.POINTER(mab_choice), _PERR]),
    "mab_arm_lookup": (ctypes.c_int, [_P, _c_str, _c_str, ctypes.POINTER(mab_choice), _PERR]),
    "mab_reward": (ctypes.c_int, [_P, _c_str, _c_str, ctypes.c_double, _PERR]),
    "mab_experiment_count": (_c_size_t, [_P]),
    "mab_experiment_at": (ctypes.c_int, [_P, _c_size_t, ctypes.POINTER(mab_experiment_info),
                                         _PERR]),
    "mab_storage_name": (_c_str, [_P]),
    "mab_stats": (ctypes.c_int, [_P, _c_str, ctypes.POINTER(mab_arm_stats), _c_size_t,
                                 ctypes.POINTER(_c_size_t), _PERR]),
    "mab_flush": (ctypes.c_int, [_P, _PERR]),
    "mab_storage_errors": (_c_u64, [_P]),
    "mab_reset": (ctypes.c_int, [_P, _c_str, _PERR]),
    "mab_export": (ctypes.c_int, [_P, VISIT, _P, _PERR]),
    "mab_import": (ctypes.c_int, [_P, ctypes.POINTER(mab_record), _c_size_t, ctypes.c_int,
                                  _PERR]),
    "mab_report_get": (ctypes.c_int, [_P, _c_str, ctypes.POINTER(mab_report), _PERR]),
    "mab_report_get_buckets": (ctypes.c_int, [_P, _c_str, _c_size_t, ctypes.POINTER(mab_report),
                                              _PERR]),
    "mab_report_json": (ctypes.c_int, [ctypes.POINTER(mab_report), ctypes.POINTER(ctypes.c_void_p),
                                       _PERR]),
    "mab_report_json_free": (None, [ctypes.c_void_p]),
    "mab_report_arm_at": (ctypes.POINTER(mab_report_arm), [ctypes.POINTER(mab_report),
                                                           _c_size_t]),
    "mab_report_free": (None, [ctypes.POINTER(mab_report)]),
    "mab_adapter_open": (ctypes.c_int, [_P, ctypes.POINTER(_P), _PERR]),
    "mab_adapter_reload": (ctypes.c_int, [_P, _P, _PERR]),
    "mab_adapter_close": (None, [_P]),
    "mab_adapter_keygen": (ctypes.c_int, [_c_str, _PERR]),
    "mab_adapter_get_counters": (ctypes.c_int, [_P, ctypes.POINTER(mab_adapter_counters)]),
    "mab_adapter_check_redirect": (ctypes.c_int, [_P, _c_str, _PERR]),
    "mab_request_begin": (ctypes.c_int, [_P, _c_str, _c_str, ctypes.POINTER(_P), _PERR]),
    "mab_request_end": (None, [_P]),
    "mab_request_choose": (ctypes.c_int, [_P, _c_str, ctypes.POINTER(mab_assignment), _PERR]),
    "mab_request_set_features": (ctypes.c_int, [_P, ctypes.POINTER(_c_str),
                                                ctypes.POINTER(ctypes.c_double), _c_size_t,
                                                _PERR]),
    "mab_reward_reason_name": (_c_str, [ctypes.c_int]),
    "mab_request_reward": (ctypes.c_int, [_P, _c_str, ctypes.c_double,
                                          ctypes.POINTER(mab_reward_result), _PERR]),
    "mab_request_redirect": (ctypes.c_int, [_P, _c_str, ctypes.c_double, _c_str,
                                            ctypes.POINTER(mab_reward_result),
                                            ctypes.POINTER(mab_redirect), _PERR]),
    "mab_request_set_cookie": (_c_str, [_P]),
    "mab_request_token": (_c_str, [_P]),
    "mab_request_debug_header": (_c_str, [_P]),
}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Where a platform wheel built by CMake (`--target python-wheel`) bundles
# libmab, with its plugins in _libs/mab/plugins (libmab finds them next to
# itself through dladdr; the plugins' rpath $ORIGIN/../.. finds libmab).
BUNDLED_DIR = os.path.join(_PACKAGE_DIR, "_libs")


class MabError(Exception):
    """A libmab call failed: `code` is the MAB_E* status (negative), `message`
    the library's sentence naming the file, key or id at fault."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        """The code as text, e.g. "MAB_ENOTFOUND"."""
        return CODE_NAMES.get(self.code, "MAB_E%d" % -self.code)

    def __str__(self) -> str:
        return "%s (%s)" % (self.message, self.name)


MabError.__module__ = "mab"  # where users find it

CODE_NAMES = {v: "MAB_" + k for k, v in (
    ("OK", OK), ("ENOMEM", ENOMEM), ("EINVAL", EINVAL), ("ECONFIG", ECONFIG),
    ("EPLUGIN", EPLUGIN), ("ENOTFOUND", ENOTFOUND), ("ERANGE", ERANGE),
    ("ESTORAGE", ESTORAGE), ("EBUSY", EBUSY), ("ECORRUPT", ECORRUPT), ("EIO", EIO),
    ("ECLAIMED", ECLAIMED), ("ELATE", ELATE))}


def _pkg_config_libdir():
    """`pkg-config --variable=libdir mab`, or (None, why not)."""
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "mab"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return None, "pkg-config mab: %s" % e
    libdir = out.stdout.strip()
    if out.returncode != 0 or not libdir:
        return None, "pkg-config mab: %s" % (out.stderr.strip() or "no such package")
    return libdir, None


def candidates():
    """Where libmab may be, in the order tried (docs/python.md, "Finding
    libmab"): a list of (what, path or soname)."""
    env = os.environ.get("MAB_LIBRARY")
    if env:
        return [("MAB_LIBRARY", env)]  # explicit: nothing else is tried
    found = [("bundled in the wheel", os.path.join(BUNDLED_DIR, "libmab.so.1")),
             # Installed by CMake as <libdir>/mab/python/mab: <libdir>/libmab.so.1.
             ("next to the package installed by CMake",
              os.path.normpath(os.path.join(_PACKAGE_DIR, "..", "..", "..", "libmab.so.1")))]
    libdir, why = _pkg_config_libdir()
    # pkg-config's entry is a path, or the sentence saying why it gave none.
    found.append(("pkg-config mab", os.path.join(libdir, "libmab.so.1") if libdir else why))
    name = ctypes.util.find_library("mab")
    if name:
        found.append(("the system loader (find_library)", name))
    found.append(("the system loader", "libmab.so.1"))
    return found


def _load():
    tried = []
    for what, candidate in candidates():
        if what == "pkg-config mab" and not candidate.startswith("/"):
            tried.append(candidate)  # why pkg-config gave nothing
            continue
        if os.sep in candidate and not os.path.exists(candidate):
            tried.append("%s: %s (missing)" % (what, candidate))
            continue
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as e:
            tried.append("%s: %s (%s)" % (what, candidate, e))
            continue
        for name, (res, args) in _PROTOTYPES.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                tried.append("%s: %s (no %s: another libmab version?)" % (what, candidate, name))
                break
            fn.restype = res
            fn.argtypes = args
        else:
            return lib, candidate
    raise MabError(ENOTFOUND, "libmab not found; set MAB_LIBRARY to the path of libmab.so.1, "
                   "or install libmab (pkg-config mab). Tried, in order: " + "; ".join(tried))


class _Lazy:
    """libmab, loaded at first use: `import mab` never fails for want of it;
    the first call that needs it raises MabError naming every place tried."""

    def __init__(self):
        self._lib = None
        self._path = None
        self._lock = threading.Lock()

    def load(self):
        if self._lib is None:
            with self._lock:
                if self._lib is None:
                    loaded, self._path = _load()
                    # Later calls find the functions in the instance's
                    # dict, without going through __getattr__.
                    for name in _PROTOTYPES:
                        setattr(self, name, getattr(loaded, name))
                    self._lib = loaded
        return self._lib

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)


lib = _Lazy()


def library_path() -> str:
    """The file libmab was loaded from (resolved through /proc/self/maps);
    loads it if need be (MabError when it cannot be found)."""
    lib.load()
    loaded = lib._path
    if os.sep in loaded:
        return os.path.realpath(loaded)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libmab.so"):
                    return path
    except OSError:
        pass
    return loaded


def plugin_dirs() -> list:
    """Directories holding the policy and storage plugins that go with this
    libmab: $MAB_PLUGIN_PATH (colon-separated) if set, else the build tree's
    plugins/ next to lib/, else <libdir>/mab/plugins of the loaded library
    (an install, or the wheel's _libs/mab/plugins)."""
    env = os.environ.get("MAB_PLUGIN_PATH")
    if env:
        return [d for d in env.split(":") if d]
    libdir = os.path.dirname(library_path())
    dirs = []
    for d in (os.path.join(libdir, "..", "plugins"), os.path.join(libdir, "mab", "plugins")):
        d = os.path.normpath(d)
        if os.path.isdir(d):
            dirs.append(d)
    return dirs
