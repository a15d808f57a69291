"""The build backend of the mab Python package (PEP 517), standard library only.

Why not setuptools: pip builds in an isolated environment and installs the
backend's requirements there from a package index, which a machine without
one cannot reach; and the setuptools of some Pythons (65.x) cannot build a
wheel at all without the separate `wheel` package. This backend needs
neither, so `pip install ./hosts/python` and `pip wheel ./hosts/python` work
offline with any Python 3.11, isolated or not.

What goes into the wheel: src/mab (the package, with py.typed), and the
dashboard's files as mab/assets/, copied at build time from the one copy in
web/dashboard (an sdist carries that copy in src/mab/assets). With the
environment variable MAB_WHEEL_BUNDLE=DIR (the CMake target python-wheel
sets it), DIR/libmab.so.1 and DIR/mab/plugins/*.so go into mab/_libs/ and
the wheel is tagged for this platform.
"""
import base64
import hashlib
import io
import os
import sysconfig
import tarfile
import time
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_TREE_DASHBOARD = os.path.join(ROOT, "..", "..", "web", "dashboard")
ASSETS = ("dashboard.html", "dashboard.js", "dashboard.css")
# Files of a build are stamped with one fixed time: the same tree gives the same wheel.
EPOCH = (2024, 1, 1, 0, 0, 0)


def _project():
    path = os.path.join(ROOT, "pyproject.toml")
    if tomllib is None:
        raise RuntimeError("building mab needs Python 3.11+ (tomllib) to read %s" % path)
    with open(path, "rb") as f:
        return tomllib.load(f)["project"]


def _metadata(project):
    lines = ["Metadata-Version: 2.1", "Name: " + project["name"],
             "Version: " + project["version"], "Summary: " + project["description"],
             "Requires-Python: " + project["requires-python"]]
    lines += ["Classifier: " + c for c in project.get("classifiers", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append("Provides-Extra: " + extra)
        lines += ['Requires-Dist: %s ; extra == "%s"' % (r, extra) for r in requirements]
    readme = os.path.join(ROOT, project.get("readme", "README.md"))
    text = open(readme, encoding="utf-8").read() if os.path.exists(readme) else ""
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + text


def _assets_dir():
    packaged = os.path.join(ROOT, "src", "mab", "assets")
    if all(os.path.exists(os.path.join(packaged, a)) for a in ASSETS):
        return packaged  # an unpacked sdist
    if all(os.path.exists(os.path.join(SOURCE_TREE_DASHBOARD, a)) for a in ASSETS):
        return SOURCE_TREE_DASHBOARD
    raise RuntimeError("the dashboard's files (%s) are in neither %s nor %s" % (
        ", ".join(ASSETS), packaged, os.path.normpath(SOURCE_TREE_DASHBOARD)))


def _package_files():
    """(path in the archive, file on disk) of the package and its assets."""
    src = os.path.join(ROOT, "src")
    files = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(src, "mab")):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "_libs", "assets"))
        for name in sorted(filenames):
            if name.endswith((".py", ".typed")):
                path = os.path.join(dirpath, name)
                files.append((os.path.relpath(path, src), path))
    assets = _assets_dir()
    files += [("mab/assets/" + a, os.path.join(assets, a)) for a in ASSETS]
    return files


def _bundle_files(bundle):
    """(path in the wheel, file) of libmab and its plugins from `bundle`."""
    lib = os.path.join(bundle, "libmab.so.1")
    plugins = os.path.join(bundle, "mab", "plugins")
    if not os.path.exists(lib) or not os.path.isdir(plugins):
        raise RuntimeError("MAB_WHEEL_BUNDLE=%s: expected libmab.so.1 and mab/plugins/ there"
                           % bundle)
    files = [("mab/_libs/libmab.so.1", os.path.realpath(lib))]
    files += [("mab/_libs/mab/plugins/" + n, os.path.join(plugins, n))
              for n in sorted(os.listdir(plugins)) if n.endswith(".so")]
    return files


def _add(zf, records, name, data, executable=False):
    info = zipfile.ZipInfo(name, EPOCH)
    info.external_attr = (0o755 if executable else 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    records.append("%s,sha256=%s,%d" % (name, digest, len(data)))


def _tag():
    bundle = os.environ.get("MAB_WHEEL_BUNDLE")
    if not bundle:
        return "py3-none-any", None
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "py3-none-" + platform, bundle


# ---- PEP 517 hooks ----------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    tag, bundle = _tag()
    name = "%s-%s-%s.whl" % (project["name"], project["version"], tag)
    dist_info = "%s-%s.dist-info" % (project["name"], project["version"])
    files = _package_files() + (_bundle_files(bundle) if bundle else [])
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for arcname, path in files:
            with open(path, "rb") as f:
                _add(zf, records, arcname, f.read(), executable=path.endswith(".so"))
        _add(zf, records, dist_info + "/METADATA", _metadata(project).encode())
        _add(zf, records, dist_info + "/WHEEL", (
            "Wheel-Version: 1.0\nGenerator: mab_build\nRoot-Is-Purelib: %s\nTag: %s\n"
            % ("false" if bundle else "true", tag)).encode())
        _add(zf, records, dist_info + "/top_level.txt", b"mab\n")
        records.append(dist_info + "/RECORD,,")
        info = zipfile.ZipInfo(dist_info + "/RECORD", EPOCH)
        info.external_attr = 0o644 << 16
        zf.writestr(info, "\n".join(records) + "\n")
    return name


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    base = "%s-%s" % (project["name"], project["version"])
    name = base + ".tar.gz"
    entries = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml")),
               ("README.md", os.path.join(ROOT, "README.md")),
               ("build_backend/mab_build.py", os.path.abspath(__file__))]
    entries += [("src/" + arc, path) for arc, path in _package_files()]
    mtime = time.mktime(EPOCH + (0, 0, -1))

    def add(tf, arcname, data):
        info = tarfile.TarInfo(base + "/" + arcname)
        info.size, info.mtime, info.mode = len(data), mtime, 0o644
        tf.addfile(info, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tf:
        for arcname, path in entries:
            with open(path, "rb") as f:
                add(tf, arcname, f.read())
        add(tf, "PKG-INFO", _metadata(project).encode())
    return name
