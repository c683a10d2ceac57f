"""Where Train and Tune keep checkpoints: a local path, a mount every node sees, or an
object store (``s3://bucket/prefix``, ``gs://bucket/prefix``).

URIs stay strings (``Path`` would turn ``s3://b`` into ``s3:/b``). The run directory on
the driver keeps config, metrics and MLflow; ``storage.json`` there records where the
run's checkpoints live so ``--resume`` finds them again, through Ray's ``Result`` and
pyarrow, wherever they are.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.errors import UserError

RECORD_FILE = "storage.json"
LOCAL_SUBDIR = "ray"  # default storage: <run dir>/ray
LOCAL_RUN_NAME = "train"  # Train run name under the default storage (one run per dir)
REMOTE_SCHEMES = ("s3", "gs")
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Storage:
    """A storage root: an absolute local path or ``scheme://bucket/prefix``."""

    root: str
    endpoint: str | None = None  # S3-compatible endpoint, e.g. http://127.0.0.1:9000

    @classmethod
    def parse(cls, value: str, endpoint: str | None = None) -> Storage:
        scheme = urlparse(value).scheme
        if scheme in REMOTE_SCHEMES:
            bucket = value.split("://", 1)[1].strip("/")
            if not bucket:
                raise UserError(f"runtime.storage {value!r}: expected {scheme}://bucket/prefix")
            return cls(f"{scheme}://{bucket}", endpoint if scheme == "s3" else None)
        if "://" in value:
            raise UserError(
                f"runtime.storage {value!r}: expected a local path, s3://... or gs://..."
            )
        return cls(str(Path(value).expanduser().resolve()))  # (an endpoint is for s3://)

    @property
    def scheme(self) -> str:
        return urlparse(self.root).scheme if "://" in self.root else ""

    @property
    def is_remote(self) -> bool:
        return self.scheme in REMOTE_SCHEMES

    def join(self, *parts: str) -> Storage:
        return Storage(posixpath.join(self.root, *parts), self.endpoint)

    def run_config_args(self) -> dict[str, Any]:
        """``storage_path`` (and ``storage_filesystem`` where an endpoint must be given)
        for Train's and Tune's ``RunConfig``."""
        fs = self._custom_filesystem()
        if fs is None:
            return {"storage_path": self.root}
        return {"storage_path": self.root.split("://", 1)[1], "storage_filesystem": fs}

    def filesystem(self, *, timeouts: bool = False) -> tuple[Any, str]:
        """(pyarrow filesystem, path on it); ``timeouts``: short ones, for probes."""
        import pyarrow.fs

        fs = self._custom_filesystem(timeouts=timeouts)
        if fs is not None:
            return fs, self.root.split("://", 1)[1]
        if not self.is_remote:
            return pyarrow.fs.LocalFileSystem(), self.root
        return pyarrow.fs.FileSystem.from_uri(self.root)

    def _custom_filesystem(self, *, timeouts: bool = False) -> Any | None:
        if not self.endpoint:
            return None
        import pyarrow.fs

        parsed = urlparse(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}")
        extra: dict[str, Any] = {}
        if timeouts:
            extra = {
                "connect_timeout": PROBE_TIMEOUT_S,
                "request_timeout": 2 * PROBE_TIMEOUT_S,
                "retry_strategy": pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1),
            }
        # Credentials: pyarrow's default AWS chain (environment, profile, instance role);
        # nothing secret is stored in the (picklable) filesystem object.
        return pyarrow.fs.S3FileSystem(
            endpoint_override=parsed.netloc,
            scheme=parsed.scheme or "https",
            region=os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            **extra,
        )


def storage_for_run(runtime: Any, run_dir: Path) -> Storage:
    """``runtime.storage`` or the default ``<run dir>/ray``."""
    if runtime.storage:
        return Storage.parse(runtime.storage, runtime.storage_endpoint)
    return Storage(str(run_dir / LOCAL_SUBDIR))


def new_run_name(storage: Storage, run_dir: Path) -> str:
    """A stable name for this run's Train experiment under ``storage``. Shared storage
    holds many runs: the run directory's name plus a random suffix keeps them apart."""
    if storage.root == str(run_dir / LOCAL_SUBDIR):
        return LOCAL_RUN_NAME
    return f"{run_dir.name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class RunLocation:
    storage: Storage
    name: str

    @property
    def experiment(self) -> Storage:
        return self.storage.join(self.name)

    def write(self, run_dir: Path) -> None:
        record = {
            "storage": self.storage.root,
            "endpoint": self.storage.endpoint,
            "name": self.name,
        }
        (run_dir / RECORD_FILE).write_text(json.dumps(record, indent=1))

    @classmethod
    def read(cls, run_dir: Path) -> RunLocation:
        """The recorded location; run directories from before the record existed used
        the default local storage."""
        path = run_dir / RECORD_FILE
        if not path.exists():
            return cls(Storage(str(run_dir / LOCAL_SUBDIR)), LOCAL_RUN_NAME)
        try:
            record = json.loads(path.read_text())
            return cls(Storage(record["storage"], record.get("endpoint")), record["name"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path} is corrupt: cannot tell where the checkpoints are") from None


def location_for(runtime: Any, run_dir: Path, *, resume: bool) -> RunLocation:
    """Where this run's checkpoints go (new run) or are (``resume``)."""
    if not resume:
        storage = storage_for_run(runtime, run_dir)
        return RunLocation(storage, new_run_name(storage, run_dir))
    recorded = RunLocation.read(run_dir)
    if runtime.storage:
        wanted = Storage.parse(runtime.storage, runtime.storage_endpoint)
        if wanted.root != recorded.storage.root:
            raise UserError(
                f"--resume: this run keeps its checkpoints in {recorded.storage.root}, "
                f"but runtime.storage is {wanted.root}"
            )
        # The endpoint may move (a test server on a new port, a new MinIO host).
        return RunLocation(wanted, recorded.name)
    return recorded


def latest_checkpoint(location: RunLocation) -> Any | None:
    """The run's latest registered checkpoint, read back through Ray's ``Result`` (the
    checkpoint manager's snapshot), on whatever filesystem holds it; None if none yet."""
    from ray.train import Result

    fs, path = location.experiment.filesystem()
    try:
        result = Result.from_path(path, storage_filesystem=fs)
    except RuntimeError:  # no experiment folder or no snapshot yet: nothing saved
        return None
    return result.checkpoint


def probe_endpoint(endpoint: str) -> None:
    """A TCP connection to an S3-compatible endpoint, in seconds (the AWS SDK would retry
    an unreachable one for minutes)."""
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot reach the storage endpoint {endpoint}: {exc.strerror or exc}"
        ) from None


def probe_storage(storage: Storage) -> None:
    """Fail in seconds when the storage is unreachable or not writable: write and delete a
    small file where the checkpoints will go."""
    if storage.endpoint:
        probe_endpoint(storage.endpoint)
    try:
        fs, path = storage.filesystem(timeouts=True)
        fs.create_dir(path, recursive=True)
        probe = posixpath.join(path, f".antray-probe-{uuid.uuid4().hex[:8]}")
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError, RuntimeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"storage {storage.root} is not writable: {first}") from None
