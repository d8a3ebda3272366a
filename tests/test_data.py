"""Tests for fedkd.data: loaders (on real and tiny generated files), partitioners, federation splits."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from fedkd.data import (
    DATASET_NAMES,
    DatasetNotFoundError,
    FederationSpec,
    IdxFormatError,
    PartitionError,
    build_federation,
    fingerprint,
    label_histogram,
    load_dataset,
    parse_idx,
    partition_labels,
    read_idx,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode an array as an IDX file (the format's own definition, written independently)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    code = codes[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx_set(directory: Path, n_train=12, n_test=6, size=28, gz=(True, False, True, False), seed=0):
    """Write the four MNIST-style IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for (stem, arr), zipped in zip(arrays.items(), gz):
        raw = idx_bytes(arr)
        if zipped:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return arrays


def write_cifar10(root: Path, per_batch=4, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        # Same structure as the original archive: bytes keys, (N, 3072) uint8 data, list labels.
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
        batches[name] = batch
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return batches


def entropy_rows(hist: np.ndarray) -> np.ndarray:
    p = hist / hist.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


# --------------------------------------------------------------------------- loaders


def test_digits_shapes_ranges_and_fixed_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1347, 1, 8, 8) and ds.x_test.shape == (450, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and len(ds.class_names) == 10
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    # Stratified: each class is ~25 % test.
    share = np.bincount(ds.y_test) / (np.bincount(ds.y_test) + np.bincount(ds.y_train))
    assert np.all(np.abs(share - 0.25) < 0.01)
    # Train and test share no image.
    train_rows = {r.tobytes() for r in ds.x_train}
    assert not any(r.tobytes() in train_rows for r in ds.x_test)
    # Cached and read-only: clients share one copy, nobody can change it.
    assert load_dataset("digits") is ds
    with pytest.raises(ValueError):
        ds.x_train[0, 0, 0, 0] = 5.0


def test_digits_read_without_sklearn_equal_load_digits():
    """The fast path (sklearn's digits.csv.gz read directly) gives exactly what load_digits gives."""
    from sklearn.datasets import load_digits

    from fedkd.data.datasets import digits_arrays

    images, labels = digits_arrays()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)


def test_digits_split_does_not_depend_on_global_numpy_state():
    from fedkd.data.datasets import _load_digits

    np.random.seed(123)
    a = _load_digits(None)
    np.random.seed(456)
    b = _load_digits(None)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.x_test, b.x_test)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"{FASHION_DIR} missing (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert np.array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    assert ds.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_idx_parser_roundtrip(tmp_path, zipped, dtype):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5)
    arr = np.abs(arr).astype(dtype) if dtype == np.uint8 else arr.astype(dtype)
    raw = idx_bytes(arr)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if zipped else raw)
    out = read_idx(path)
    assert out.shape == (2, 3, 5) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda raw: b"\x01" + raw[1:], "magic"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "type code"),
        (lambda raw: raw[:-3], "truncated"),
        (lambda raw: raw + b"\x00", "payload"),
        (lambda raw: raw[:6], "header"),
        (lambda raw: raw[:2], "too short"),
    ],
)
def test_idx_parser_rejects_corrupt_files(tmp_path, mutate, words):
    raw = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "bad-idx"
    path.write_bytes(mutate(raw))
    with pytest.raises(IdxFormatError, match=words) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_idx_parser_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 2), np.uint8)))[:-6])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


def test_parse_idx_reports_source_name():
    with pytest.raises(IdxFormatError, match="my-source"):
        parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x05abc", source="my-source")


def test_fashion_mnist_from_generated_files(tmp_path):
    arrays = write_idx_set(tmp_path / "fm")
    ds = load_dataset("fashion-mnist", root=tmp_path / "fm")
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0] * 255.0, arrays["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0


def test_fashion_mnist_accepts_torchvision_layout(tmp_path):
    arrays = write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=(False,) * 4)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])


def test_corrupt_idx_file_in_dataset_gives_clear_error(tmp_path):
    write_idx_set(tmp_path, gz=(False,) * 4)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IdxFormatError, match="t10k-images-idx3-ubyte"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_mnist_in_torchvision_layout_matches_torchvision(tmp_path):
    arrays = write_idx_set(tmp_path / "MNIST" / "raw", gz=(False,) * 4)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_allclose(ds.x_test[:, 0], ref.data.numpy() / 255.0, atol=1e-6)
    np.testing.assert_array_equal(ds.y_test, ref.targets.numpy())


def test_mnist_default_root_from_environment(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "envroot" / "MNIST" / "raw", n_train=7)
    monkeypatch.setenv("FEDKD_DATA_ROOT", str(tmp_path / "envroot"))
    assert load_dataset("mnist").x_train.shape[0] == 7


def test_cifar10_from_generated_pickles(tmp_path):
    batches = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and ds.class_names[0] == "airplane" and ds.num_classes == 10
    # Row layout: 1024 red, then green, then blue values, each row-major 32x32.
    first = batches["data_batch_1"][b"data"][0]
    np.testing.assert_allclose(ds.x_train[0, 1] * 255.0, first[1024:2048].reshape(32, 32), atol=1e-4)
    np.testing.assert_array_equal(ds.y_train[4:8], batches["data_batch_2"][b"labels"])
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][b"labels"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": _Evil(), "labels": []}))
    with pytest.raises(ValueError, match="refusing"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", ["MNIST", "raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "torchvision"]),
        ("fashion-mnist", ["train-images-idx3-ubyte", "dataset-fashion-mnist"]),
        ("cifar10", ["cifar-10-batches-py", "data_batch_1", "test_batch", "batches.meta", "torchvision"]),
    ],
)
def test_missing_files_raise_dataset_not_found(tmp_path, name, expected):
    root = tmp_path / "nothing-here"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=root)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(root) in message
    for word in expected:
        assert word in message


def test_partly_missing_files_are_named(tmp_path):
    write_idx_set(tmp_path / "MNIST" / "raw")
    next((tmp_path / "MNIST" / "raw").glob("t10k-labels*")).unlink()
    with pytest.raises(DatasetNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp_path)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet")
    for name in DATASET_NAMES:
        assert name in str(info.value)


# --------------------------------------------------------------------------- partitioning


def _labels(n_per_class=60, num_classes=10, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), n_per_class))


@pytest.mark.parametrize("scheme", ["dirichlet", "pathological", "iid"])
def test_partition_deterministic_by_seed(scheme):
    y = _labels()
    a = partition_labels(y, 8, scheme=scheme, seed=3)
    b = partition_labels(y, 8, scheme=scheme, seed=3)
    c = partition_labels(y, 8, scheme=scheme, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


@pytest.mark.parametrize("scheme, kwargs", [("dirichlet", {"alpha": 0.1}), ("dirichlet", {"alpha": 10.0}), ("iid", {})])
def test_partition_disjoint_covering_and_min_size(scheme, kwargs):
    y = _labels()
    parts = partition_labels(y, 10, scheme=scheme, min_size=15, seed=0, **kwargs)
    assert len(parts) == 10
    assert all(len(p) >= 15 for p in parts)
    assert all(np.array_equal(p, np.sort(p)) and p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined)) == len(y)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pathological_gives_exactly_k_classes(k):
    y = _labels()
    parts = partition_labels(y, 10, scheme="pathological", classes_per_client=k, min_size=5, seed=1)
    assert [len(np.unique(y[p])) for p in parts] == [k] * 10
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined)) == len(y)  # 10 * k >= 10 classes: all used


def test_label_skew_grows_as_alpha_shrinks():
    y = _labels(100)
    def mean_entropy(alpha):
        parts = partition_labels(y, 10, alpha=alpha, min_size=5, seed=0)
        return entropy_rows(np.stack([label_histogram(y[p], 10) for p in parts])).mean()
    low, mid, high = mean_entropy(0.1), mean_entropy(1.0), mean_entropy(100.0)
    assert low < mid < high
    assert high > 0.95 * np.log(10)  # near-uniform per client


def test_partition_impossible_min_size_raises():
    y = _labels(10)
    with pytest.raises(PartitionError, match="min_size"):
        partition_labels(y, 20, scheme="iid", min_size=6)
    with pytest.raises(PartitionError, match="min_size"):
        partition_labels(y, 20, scheme="dirichlet", alpha=0.01, min_size=4)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"num_clients": 0}, "num_clients"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"scheme": "shards"}, "scheme"),
        ({"scheme": "pathological", "classes_per_client": 11}, "classes_per_client"),
        ({"min_size": 0}, "min_size"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_partition_bad_arguments_name_the_argument(kwargs, word):
    args = {"num_clients": 5, **kwargs}
    with pytest.raises(ValueError, match=word):
        partition_labels(_labels(), **args)


def test_label_histogram():
    np.testing.assert_array_equal(label_histogram(np.array([0, 2, 2, 4]), 6), [1, 0, 2, 0, 1, 0])
    with pytest.raises(ValueError, match="num_classes"):
        label_histogram(np.array([0, 6]), 6)


# --------------------------------------------------------------------------- federation

SMALL = FederationSpec(num_clients=6, alpha=0.3, transfer_size=300, local_test_size=120, seed=1)


def test_transfer_set_disjoint_from_every_client():
    fed = build_federation(SMALL)
    ds = load_dataset("digits")
    assert fed.transfer_x.shape == (300, 1, 8, 8) and fed.num_clients == 6
    transfer = set(fed.transfer_indices.tolist())
    seen: set[int] = set()
    for i, client in enumerate(fed.clients):
        assert client.client_id == i
        idx = set(client.train_indices.tolist())
        assert not idx & transfer and not idx & seen
        seen |= idx
        # The bookkeeping is truthful: the arrays are those rows of the training split.
        np.testing.assert_array_equal(client.train_x, ds.x_train[client.train_indices])
        np.testing.assert_array_equal(client.train_y, ds.y_train[client.train_indices])
        np.testing.assert_array_equal(client.label_histogram, np.bincount(client.train_y, minlength=10))
    np.testing.assert_array_equal(fed.transfer_x, ds.x_train[fed.transfer_indices])
    # Content check too (digits has no duplicate images).
    transfer_rows = {r.tobytes() for r in fed.transfer_x}
    assert not any(r.tobytes() in transfer_rows for c in fed.clients for r in c.train_x)
    np.testing.assert_array_equal(fed._transfer_labels_for_audit, ds.y_train[fed.transfer_indices])
    assert fed.label_histograms.shape == (6, 10)


def test_fingerprint_stable_across_builds_and_changes_with_seed():
    build_federation.cache_clear()
    a = build_federation(SMALL)
    build_federation.cache_clear()
    b = build_federation(FederationSpec(num_clients=6, alpha=0.3, transfer_size=300, local_test_size=120, seed=1))
    assert a is not b
    assert a.transfer_fingerprint == b.transfer_fingerprint == fingerprint(b.transfer_x)
    np.testing.assert_array_equal(a.transfer_x, b.transfer_x)
    for ca, cb in zip(a.clients, b.clients):
        np.testing.assert_array_equal(ca.train_indices, cb.train_indices)
        np.testing.assert_array_equal(ca.test_y, cb.test_y)
    other = build_federation(FederationSpec(num_clients=6, alpha=0.3, transfer_size=300, local_test_size=120, seed=2))
    assert other.transfer_fingerprint != a.transfer_fingerprint
    assert build_federation(SMALL) is build_federation(SMALL)  # cached per process


def test_fingerprint_sees_values_shape_and_dtype():
    x = np.zeros((4, 1, 2, 2), dtype=np.float32)
    y = x.copy()
    y[3, 0, 1, 1] = 1e-7
    fps = {fingerprint(x), fingerprint(y), fingerprint(x.reshape(2, 2, 2, 2)), fingerprint(x.astype(np.float64))}
    assert len(fps) == 4
    assert fingerprint(x) == fingerprint(x.copy()) and len(fingerprint(x)) == 16
    assert fingerprint(x.astype(">f4")) == fingerprint(x)  # byte order does not matter


def test_local_test_sets_follow_client_label_distribution():
    fed = build_federation(SMALL)
    for client in fed.clients:
        assert client.test_x.shape == (120, 1, 8, 8)
        counts = np.bincount(client.test_y, minlength=10)
        exact = client.label_histogram / client.label_histogram.sum() * 120
        assert np.all(np.abs(counts - exact) < 1.0)
        assert np.all(counts[client.label_histogram == 0] == 0)
    # Clients differ, so their local test sets differ.
    hists = np.stack([np.bincount(c.test_y, minlength=10) for c in fed.clients])
    assert len({h.tobytes() for h in hists}) > 1
    assert len(fed.global_test_y) == 450  # None = the whole test split


def test_eval_split_val_never_uses_test_images():
    spec = FederationSpec(num_clients=6, alpha=0.3, transfer_size=300, local_test_size=120, seed=1, eval_split="val")
    fed = build_federation(spec)
    ds = load_dataset("digits")
    test_rows = {r.tobytes() for r in ds.x_test}
    train_rows = {r.tobytes() for r in ds.x_train}
    eval_rows = [r.tobytes() for r in fed.global_test_x] + [r.tobytes() for c in fed.clients for r in c.test_x]
    assert not any(r in test_rows for r in eval_rows)
    assert all(r in train_rows for r in eval_rows)
    # Validation images are held out: not private data of any client, not in the transfer set.
    used = {r.tobytes() for r in fed.transfer_x} | {r.tobytes() for c in fed.clients for r in c.train_x}
    assert not any(r in used for r in eval_rows)
    assert abs(len(fed.global_test_y) - 0.15 * len(ds.y_train)) <= 10
    # Training data and transfer set are the same as with eval_split="test".
    ref = build_federation(SMALL)
    assert fed.transfer_fingerprint == ref.transfer_fingerprint
    for a, b in zip(fed.clients, ref.clients):
        np.testing.assert_array_equal(a.train_indices, b.train_indices)


def test_private_pool_and_global_test_subsampling():
    spec = FederationSpec(num_clients=4, partition="iid", transfer_size=200, private_pool_size=240, global_test_size=100)
    fed = build_federation(spec)
    assert sum(c.num_samples for c in fed.clients) == 240
    assert all(c.num_samples == 60 for c in fed.clients)
    assert fed.global_test_x.shape == (100, 1, 8, 8)
    assert len({r.tobytes() for r in fed.global_test_x}) == 100


def test_pathological_federation():
    fed = build_federation(FederationSpec(num_clients=5, partition="pathological", classes_per_client=2, transfer_size=200))
    assert np.all((fed.label_histograms > 0).sum(axis=1) == 2)
    for c in fed.clients:
        assert set(np.unique(c.test_y)) == set(np.unique(c.train_y))


def test_federation_arrays_are_read_only():
    fed = build_federation(SMALL)
    for arr in (fed.transfer_x, fed.global_test_x, fed.clients[0].train_x, fed.clients[0].test_y):
        with pytest.raises(ValueError):
            arr.flat[0] = 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_clients": 0}, "num_clients"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": -0.5}, "alpha"),
        ({"eval_split": "train"}, "eval_split"),
        ({"partition": "shards"}, "partition"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"eval_split": "val", "val_fraction": 0.0}, "val_fraction"),
        ({"transfer_size": 0}, "transfer_size"),
        ({"local_test_size": -1}, "local_test_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_spec_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FederationSpec(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"transfer_size": 5000}, "transfer_size"),
        ({"transfer_size": 1100, "private_pool_size": 500}, "private_pool_size"),
        ({"global_test_size": 451}, "global_test_size"),
        ({"num_clients": 200, "min_partition_size": 10}, "min_size"),
    ],
)
def test_spec_too_large_for_data_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_federation(FederationSpec(**kwargs))


def test_spec_is_hashable_and_equal_by_value():
    assert hash(SMALL) == hash(FederationSpec(num_clients=6, alpha=0.3, transfer_size=300, local_test_size=120, seed=1))
    assert SMALL != FederationSpec()
