"""Data-root resolution and MNIST read straight from the IDX .gz files."""

import gzip

import pytest
import torch

from trainers.data import (
    DataMissingError,
    load_mnist,
    load_split,
    resolve_data_root,
    split_indices,
)


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTRAY_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "cli")).path == tmp_path / "cli"
    assert resolve_data_root(None).path == tmp_path / "env"
    assert not resolve_data_root(None).may_download
    monkeypatch.delenv("ANTRAY_DATA_ROOT")
    assert resolve_data_root(None).may_download


def test_real_mnist_shapes(mnist_root):
    test = load_mnist(resolve_data_root(str(mnist_root)), train=False)
    x, y = test.tensors
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and int(y.max()) == 9


def test_truncated_idx_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + bytes(100))
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(DataMissingError, match="truncated"):
        load_mnist(resolve_data_root(str(tmp_path)), train=False)


def test_validation_split_is_carved_from_training_images_and_seeded():
    root = resolve_data_root("unused")
    train = load_split("synthetic", root, "train", val_size=64, limit=500)
    val = load_split("synthetic", root, "val", val_size=64, limit=500)
    again = load_split("synthetic", root, "val", val_size=64, limit=500)
    assert len(train) == 500 and len(val) == 64
    # disjoint parts of the same training images, the same on every call
    assert not set(train.indices) & set(val.indices)
    assert val.indices == again.indices
    assert torch.equal(val[0][0], again[0][0])
    other_seed = load_split("synthetic", root, "val", val_size=64, limit=500, split_seed=1)
    assert other_seed.indices != val.indices


def test_split_indices_partition_and_bounds():
    train, val = split_indices(100, val_size=10, seed=3)
    assert sorted(train + val) == list(range(100)) and len(val) == 10
    with pytest.raises(ValueError):
        split_indices(10, val_size=10, seed=0)
