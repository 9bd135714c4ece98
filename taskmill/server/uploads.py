"""Installing files shipped by ``Executor.upload_file`` on a worker."""

from __future__ import annotations

import importlib
import os
import sys


def install_upload(directory: str, filename: str, data: bytes) -> str:
    """Write ``filename`` into ``directory`` and make it importable; a module
    already imported from it is reloaded.  Returns the file's path."""
    if os.path.basename(filename) != filename or filename.startswith("."):
        raise ValueError(f"upload_file needs a plain file name, got {filename!r}")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, filename)
    with open(path, "wb") as f:
        f.write(data)
    entry = path if filename.endswith((".zip", ".egg")) else directory
    if entry not in sys.path:
        sys.path.insert(0, entry)
    importlib.invalidate_caches()
    if filename.endswith(".py"):
        name = filename[:-3]
        module = sys.modules.get(name)
        if module is not None:
            importlib.reload(module)
        else:
            importlib.import_module(name)
    return path
