"""pytest plugin (-p capture_saves): copies every file Graph.save and
Base.save write to $CAPTURE_DIR/<test id>-<n>.safetensors, so that two
builds' files can be compared byte for byte (compare_builds.sh)."""
import os
import re
import shutil

import fibration._core as core

_current = ["none"]
_count = {}


def _wrap(cls):
    save = cls.save

    def capturing_save(self, path, dtype=0):
        save(self, path, dtype)
        where = os.environ.get("CAPTURE_DIR")
        if where:
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", _current[0])
            n = _count.get(key, 0)
            _count[key] = n + 1
            shutil.copyfile(path, os.path.join(where, "%s-%03d.safetensors" % (key, n)))

    cls.save = capturing_save


_wrap(core.Graph)
_wrap(core.Base)


def pytest_runtest_setup(item):
    _current[0] = item.nodeid
