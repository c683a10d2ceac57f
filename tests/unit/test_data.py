"""Data-root resolution and MNIST read straight from the IDX .gz files."""

import gzip

import pytest

from trainers.data import DataMissingError, load_mnist, resolve_data_root


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
