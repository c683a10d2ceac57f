import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process here, with pytest's own exit status, without Python's
    interpreter teardown.

    Ray sessions started and shut down in this process leave native threads behind
    (the GCS client's io thread, gRPC pollers, the AWS SDK's event loop of the S3 tests);
    one of them can touch freed state while the interpreter finalises, and a CI run
    whose 509 tests had all passed ended in "Segmentation fault" after pytest's summary
    (Ray's issue #31145 describes the same class of crash). Every result, report and
    cache file is written by now; only the teardown is skipped."""
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None:  # e.g. --help, or a usage error: leave the normal exit alone
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Real MNIST: $ANTRAY_DATA_ROOT, else ../shared/data beside the repo."""
    root = Path(os.environ.get("ANTRAY_DATA_ROOT", SHARED_DATA))
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found under {root} (set ANTRAY_DATA_ROOT)")
    return root
