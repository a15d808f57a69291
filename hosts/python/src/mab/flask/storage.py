"""mab.flask.storage: Flask-MAB's storage class names (flask_mab.storage).

Counters are kept by libmab's storage plugins, not by these classes: an
instance only names the plugin and its options. Give one to the app as
MAB_STORAGE_ENGINE (the class, an instance, or its name as text) with
MAB_STORAGE_OPTS, as with Flask-MAB:

    app.config["MAB_STORAGE_ENGINE"] = "LMDBBanditStorage"
    app.config["MAB_STORAGE_OPTS"] = {"path": "/var/lib/shop/mab.lmdb"}

or MAB_STORAGE_ENGINE = LMDBBanditStorage("/var/lib/shop/mab.lmdb").
"""
from typing import Any, Dict, Optional

__all__ = ["BanditStorage", "JSONBanditStorage", "LMDBBanditStorage", "MongoBanditStorage"]


class BanditStorage:
    """No storage: each process keeps its counters in memory (Flask-MAB's
    base class)."""

    plugin: Optional[str] = None  # the libmab storage plugin

    def __init__(self, *args: Any, **opts: Any) -> None:
        self.opts: Dict[str, Any] = dict(opts)
        if args:
            self.opts.setdefault("path", args[0])

    def storage(self) -> Optional[Dict[str, Any]]:
        """The config's `storage` object, or None (memory only)."""
        if self.plugin is None:
            return None
        return dict(self.opts, plugin=self.plugin)


class JSONBanditStorage(BanditStorage):
    """The json_file plugin: one JSON file, one process (not for several
    gunicorn workers). JSONBanditStorage(filepath) as in Flask-MAB."""

    plugin = "json_file"

    def __init__(self, filepath: Optional[str] = None, **opts: Any) -> None:
        super().__init__(**opts)
        if filepath is not None:
            self.opts["path"] = filepath


class LMDBBanditStorage(BanditStorage):
    """The lmdb plugin: a directory shared by every process on the machine."""

    plugin = "lmdb"

    def __init__(self, path: Optional[str] = None, **opts: Any) -> None:
        super().__init__(**opts)
        if path is not None:
            self.opts["path"] = path


class MongoBanditStorage(BanditStorage):
    """The mongodb plugin (when libmab was built with it): MongoBanditStorage(
    uri=..., database=..., collection=...), the keys of docs/storage.md."""

    plugin = "mongodb"


# MAB_STORAGE_ENGINE as text -> its class (libmab's plugin names work too).
BY_NAME = {"BanditStorage": BanditStorage, "memory": BanditStorage,
           "JSONBanditStorage": JSONBanditStorage, "json_file": JSONBanditStorage,
           "LMDBBanditStorage": LMDBBanditStorage, "lmdb": LMDBBanditStorage,
           "MongoBanditStorage": MongoBanditStorage, "mongodb": MongoBanditStorage}
