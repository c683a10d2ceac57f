"""Datasets kept in an object store (``--data-root s3://bucket/prefix``) are copied to
each node's local disk the first time a worker or actor there needs them, once per
node, and read locally from then on.

On the cluster ``ANTRAY_DATA_CACHE`` points at the node's NVMe (cluster.yaml mounts it
at /data); elsewhere the copy goes to the temp directory. A lock file makes the workers
and the generator actor of one node share a single copy; a marker written after the
copy completes means an interrupted copy is redone, never half-used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.storage import REMOTE_SCHEMES, Storage

CACHE_ENV = "ANTRAY_DATA_CACHE"
MARKER = ".antray-synced"


def is_uri(root: str | None) -> bool:
    return bool(root) and root.split("://", 1)[0] in REMOTE_SCHEMES and "://" in root


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "antray-data")


def local_copy(uri: str, endpoint: str | None = None) -> str:
    """The local directory holding the data at ``uri`` (copied here on first use)."""
    from filelock import FileLock
    from pyarrow.fs import LocalFileSystem, copy_files

    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    dest = cache_dir() / digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if not (dest / MARKER).exists():
            shutil.rmtree(dest, ignore_errors=True)  # an interrupted copy starts over
            fs, path = Storage.parse(uri, endpoint).filesystem()
            local = LocalFileSystem()
            copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=local)
            (dest / MARKER).write_text(uri)
    return str(dest)


def check_uri(uri: str, endpoint: str | None = None) -> None:
    """On the driver: the data prefix exists and holds files (not a full listing)."""
    from pyarrow.fs import FileSelector, FileType

    from orchestrator.storage import probe_endpoint

    storage = Storage.parse(uri, endpoint)
    if storage.endpoint:
        probe_endpoint(storage.endpoint)
    try:
        fs, path = storage.filesystem(timeouts=True)
        info = fs.get_file_info(path)
        found = info.type == FileType.Directory and fs.get_file_info(
            FileSelector(path, recursive=False)
        )
    except (OSError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"data root {uri} cannot be read: {first}") from None
    if not found:
        raise UserError(f"data root {uri} is empty or missing")
