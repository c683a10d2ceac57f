"""Exit 0 when this Python already has antray and its pinned dependencies (a baked image,
see docker/Dockerfile), else 1: cluster.yaml's setup command installs only then."""

import sys
from importlib import metadata

PINNED = {"torch": "2.14.1", "torchvision": "0.29.1", "ray": "2.60.0", "foolbox": "3.3.4"}
PRESENT = ("antray", "mlflow", "pydantic", "pyarrow", "filelock")


def ready() -> bool:
    try:
        for name, version in PINNED.items():
            # local builds carry a suffix (2.14.1+cu130)
            if metadata.version(name).split("+")[0] != version:
                return False
        for name in PRESENT:
            metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(0 if ready() else 1)
