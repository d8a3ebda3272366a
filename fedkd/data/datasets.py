"""Image-classification datasets loaded from local files only (nothing is ever downloaded).

Known datasets
--------------
``digits``
    scikit-learn's bundled 8x8 digits (1797 images). It has no official test split, so a
    fixed stratified 25 % test split (seed 0, independent of any run seed) is made here.
``fashion-mnist``
    IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``). Looked up in ``root``
    (or ``root/FashionMNIST/raw``) when given, else in ``/usr/share/datasets/fashion-mnist``
    (Debian package ``dataset-fashion-mnist``), then in ``<data root>/FashionMNIST/raw``.
``mnist``
    torchvision's layout: ``<root>/MNIST/raw/`` holding the same four IDX file names.
``cifar10``
    torchvision's layout: ``<root>/cifar-10-batches-py/`` holding ``data_batch_1`` ..
    ``data_batch_5``, ``test_batch`` and ``batches.meta`` (python pickles).

The data root for ``mnist`` and ``cifar10`` (and the fall-back for ``fashion-mnist``) is
``root`` when given, else the environment variable ``FEDKD_DATA_ROOT``, else
``~/.cache/fedkd/data``.

All images are float32 arrays shaped (N, C, H, W) with values in [0, 1]; labels are int64
(N,). Loaded datasets are cached per process and their arrays are read-only, because every
simulated client of a run shares the same copy.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedkd.data.idx import read_idx

__all__ = [
    "Dataset",
    "DatasetNotFoundError",
    "DATASET_NAMES",
    "FASHION_MNIST_SYSTEM_DIR",
    "default_data_root",
    "load_dataset",
]

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
DATA_ROOT_ENV = "FEDKD_DATA_ROOT"

# Fraction of the digits data kept as its fixed test split, and the seed of that split.
_DIGITS_TEST_FRACTION = 0.25
_DIGITS_SPLIT_SEED = 0

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"
_CIFAR10_META = "batches.meta"

_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says which files go where."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset with a train and a test split.

    Attributes
    ----------
    name : str
        Dataset name as passed to :func:`load_dataset`.
    x_train, x_test : numpy.ndarray of float32, shape (N, C, H, W)
        Images with values in [0, 1]. Read-only.
    y_train, y_test : numpy.ndarray of int64, shape (N,)
        Class indices in ``[0, num_classes)``. Read-only.
    num_classes : int
        Number of classes.
    input_shape : tuple of int
        ``(C, H, W)`` of one image.
    class_names : tuple of str
        Human-readable name of each class, indexed by label.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


def default_data_root() -> str:
    """Data root used when none is given: ``$FEDKD_DATA_ROOT`` or ``~/.cache/fedkd/data``."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return os.path.expanduser(env)
    return os.path.join(os.path.expanduser("~"), ".cache", "fedkd", "data")


def load_dataset(name: str = "digits", root: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset from local files (cached per process).

    Parameters
    ----------
    name : str
        One of ``DATASET_NAMES``: ``"digits"``, ``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``.
    root : str or path-like, optional
        Where the files are; see the module docstring for each dataset's layout and the
        default locations (``FEDKD_DATA_ROOT``, ``~/.cache/fedkd/data``). Ignored for
        ``digits``, which ships with scikit-learn.

    Returns
    -------
    Dataset
        Shared, read-only arrays: copy them before modifying in place.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    DatasetNotFoundError
        If the dataset's files are missing.
    fedkd.data.idx.IdxFormatError
        If an IDX file is corrupt.
    """
    if not isinstance(name, str) or name not in _LOADERS:
        raise ValueError(f"name={name!r} is not a known dataset; known names: {', '.join(DATASET_NAMES)}")
    # Resolve the root before the cache, so changing FEDKD_DATA_ROOT is not masked by it.
    resolved = None
    if name != "digits" and root is not None:
        resolved = os.path.abspath(os.path.expanduser(os.fspath(root)))
    return _load_cached(name, resolved)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str | None) -> Dataset:
    return _LOADERS[name](root)


def _finish(name, x_train, y_train, x_test, y_test, num_classes, class_names) -> Dataset:
    """Validate loaded arrays, freeze them and build the Dataset."""
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}: {split} images {x.shape} do not match labels {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name}: {split} labels outside [0, {num_classes})")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{name}: train image shape {x_train.shape[1:]} != test image shape {x_test.shape[1:]}")
    arrays = []
    for a, dtype in ((x_train, np.float32), (y_train, np.int64), (x_test, np.float32), (y_test, np.int64)):
        a = np.ascontiguousarray(a, dtype=dtype)
        a.setflags(write=False)
        arrays.append(a)
    return Dataset(
        name=name,
        x_train=arrays[0],
        y_train=arrays[1],
        x_test=arrays[2],
        y_test=arrays[3],
        num_classes=int(num_classes),
        input_shape=tuple(int(s) for s in x_train.shape[1:]),
        class_names=tuple(class_names),
    )


# --------------------------------------------------------------------------- digits


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) with values 0..16, labels): what ``sklearn.datasets.load_digits`` returns.

    Read straight from the ``digits.csv.gz`` that scikit-learn ships (the file ``load_digits`` parses),
    because importing scikit-learn takes about a second and a deployed ClientApp is a fresh process
    every round. Falls back to ``load_digits`` if that file is not where scikit-learn keeps it.
    """
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(csv, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _load_digits(_root: str | None) -> Dataset:
    images, labels = digits_arrays()
    # 0..16 to the nearest of 0..255 (half up), then scaled like every uint8 dataset: an image file holds
    # uint8, so a digits federation exported to PNG folders reads back bit-identical (fedkd export).
    u8 = ((images.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)
    x = (u8.astype(np.float32) / 255.0)[:, None, :, :]
    y = labels.astype(np.int64)
    # Fixed split, independent of the run seed, so the test set never changes between runs.
    rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
    test_mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n_test = int(round(_DIGITS_TEST_FRACTION * len(members)))
        test_mask[rng.choice(members, size=n_test, replace=False)] = True
    return _finish(
        "digits", x[~test_mask], y[~test_mask], x[test_mask], y[test_mask],
        10, tuple(str(d) for d in range(10)),
    )


# --------------------------------------------------------------------------- IDX datasets


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_dir_complete(directory: Path) -> bool:
    return all(_find_idx_file(directory, stem) is not None for stem in _IDX_FILES.values())


def _missing_idx_message(name: str, searched: list[Path], hint: str) -> str:
    files = ", ".join(f"{stem}[.gz]" for stem in _IDX_FILES.values())
    places = "; ".join(str(p) for p in searched)
    details = []
    for p in searched:
        if not p.is_dir():
            details.append(f"{p}: directory does not exist")
        else:
            missing = [s for s in _IDX_FILES.values() if _find_idx_file(p, s) is None]
            details.append(f"{p}: missing {', '.join(missing)}")
    return (
        f"{name} not found. Put the four IDX files ({files}) into one of: {places}. "
        f"{hint} Searched: {' | '.join(details)}."
    )


def _read_idx_split(directory: Path, name: str) -> tuple[np.ndarray, ...]:
    parts = {key: read_idx(_find_idx_file(directory, stem)) for key, stem in _IDX_FILES.items()}
    out = []
    for split in ("train", "test"):
        images, labels = parts[f"{split}_images"], parts[f"{split}_labels"]
        if images.ndim != 3:
            raise ValueError(f"{name}: {split} images must be a 3-D IDX array (N, H, W), got shape {images.shape}")
        if labels.ndim != 1:
            raise ValueError(f"{name}: {split} labels must be a 1-D IDX array, got shape {labels.shape}")
        x = images.astype(np.float32)[:, None, :, :] / 255.0
        out.extend([x, labels.astype(np.int64)])
    return tuple(out)


def _load_fashion_mnist(root: str | None) -> Dataset:
    if root is not None:
        searched = [Path(root), Path(root) / "FashionMNIST" / "raw"]
    else:
        searched = [Path(FASHION_MNIST_SYSTEM_DIR), Path(default_data_root()) / "FashionMNIST" / "raw"]
    directory = next((d for d in searched if _idx_dir_complete(d)), None)
    if directory is None:
        raise DatasetNotFoundError(
            _missing_idx_message(
                "fashion-mnist",
                searched,
                "On Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in "
                f"{FASHION_MNIST_SYSTEM_DIR}; torchvision's FashionMNIST/raw layout also works.",
            )
        )
    x_tr, y_tr, x_te, y_te = _read_idx_split(directory, "fashion-mnist")
    return _finish("fashion-mnist", x_tr, y_tr, x_te, y_te, 10, _FASHION_CLASSES)


def _load_mnist(root: str | None) -> Dataset:
    base = Path(root) if root is not None else Path(default_data_root())
    directory = base / "MNIST" / "raw"
    if not _idx_dir_complete(directory):
        raise DatasetNotFoundError(
            _missing_idx_message(
                "mnist",
                [directory],
                "This is torchvision's layout (torchvision.datasets.MNIST(root, download=False)); "
                f"set root= or ${DATA_ROOT_ENV} to the folder that contains MNIST/.",
            )
        )
    x_tr, y_tr, x_te, y_te = _read_idx_split(directory, "mnist")
    return _finish("mnist", x_tr, y_tr, x_te, y_te, 10, tuple(str(d) for d in range(10)))


# --------------------------------------------------------------------------- CIFAR-10


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays.

    CIFAR-10's batches are pickles; refusing every other global means a tampered file
    in the data folder cannot run code when it is loaded.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")


def _read_cifar_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        try:
            # latin1 decodes the python-2 byte strings of the original archive.
            obj = _ArrayOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable CIFAR-10 batch pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # Keys are bytes in the original python-2 files and str in re-pickled ones.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_cifar_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{path}: CIFAR-10 data must be (N, 3072) uint8 with N labels, got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(root: str | None) -> Dataset:
    base = Path(root) if root is not None else Path(default_data_root())
    directory = base / _CIFAR10_DIR
    needed = (*_CIFAR10_TRAIN, _CIFAR10_TEST, _CIFAR10_META)
    missing = [n for n in needed if not (directory / n).is_file()]
    if missing:
        where = "directory does not exist" if not directory.is_dir() else f"missing {', '.join(missing)}"
        raise DatasetNotFoundError(
            f"cifar10 not found. Put {', '.join(needed)} (torchvision's layout, the python version "
            f"'cifar-10-python.tar.gz' unpacked) into {directory}; set root= or ${DATA_ROOT_ENV} to the "
            f"folder that contains {_CIFAR10_DIR}/. Searched: {directory}: {where}."
        )
    train = [_read_cifar_batch(directory / n) for n in _CIFAR10_TRAIN]
    x_test, y_test = _read_cifar_batch(directory / _CIFAR10_TEST)
    meta = _read_cifar_pickle(directory / _CIFAR10_META)
    names = meta.get("label_names", _CIFAR10_CLASSES)
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    x_train = np.concatenate([b[0] for b in train]).astype(np.float32) / 255.0
    y_train = np.concatenate([b[1] for b in train])
    return _finish("cifar10", x_train, y_train, x_test.astype(np.float32) / 255.0, y_test, len(names), names)


_LOADERS = {
    "digits": _load_digits,
    "fashion-mnist": _load_fashion_mnist,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
}
DATASET_NAMES = tuple(_LOADERS)
# What each dataset holds (train split, test split): sizes are bounded by these before anything is loaded.
DATASET_SIZES = {"digits": (1348, 449), "fashion-mnist": (60000, 10000), "mnist": (60000, 10000),
                 "cifar10": (50000, 10000)}
assert set(DATASET_SIZES) == set(DATASET_NAMES)
