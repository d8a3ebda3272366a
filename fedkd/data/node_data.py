"""A node's own private data, read from its own folder, and the one data-source interface for all nodes.

In a deployment each node holds its data and nobody else does, so a node reads a folder:

``PATH/train/`` and ``PATH/test/``
    torchvision's ImageFolder layout: one sub-folder per class, named as in the transfer set's
    ``classes.txt``, PNG/JPEG images inside. Labels are the class's line in ``classes.txt``,
    not ImageFolder's alphabetical order, so every node and the server agree on what label 3
    means even when a node lacks some classes (a missing class folder is fine; an existing
    empty one is an error, since it is most likely a copying mistake).
``PATH/train.npz`` and ``PATH/test.npz``
    arrays ``x`` (uint8, or float in [0, 1]; (N, H, W), (N, C, H, W) or (N, H, W, C)) and ``y``
    (integer labels in ``[0, len(classes))``).

Each split may use either form (not both). ``test`` may be empty (no class folders) but must
exist; ``train`` must hold at least one image.

Sample order. ImageFolder groups files by class, which would reorder a node's samples, and the
order matters for reproducing a simulated run bit for bit (batches are drawn by position). So if
every image's file stem in a split is a decimal number and together they are exactly 0..N-1, the
samples are put in that order; this is how ``fedkd.data.export`` names its files (``000042.png``
is sample 42). Otherwise (ordinary data) samples are ordered by label, then by file path.

Everything is checked before anything is returned, each problem raising :class:`NodeDataError`
with the path at fault, so a node refuses bad data at start-up, not in the middle of a round.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fedkd.data.federation import Federation
from fedkd.data.partition import label_histogram
from fedkd.data.transfer import (
    DataFolderError,
    TransferSet,
    decode_image_file,
    frozen,
    images_array,
    is_image_file,
    npz_arrays,
    uint8_to_float,
)

__all__ = [
    "SPLITS",
    "FolderSource",
    "NodeData",
    "NodeDataError",
    "NodeDataSource",
    "SimulatedSource",
    "load_node_data",
    "load_split",
]

SPLITS = ("train", "test")


class NodeDataError(DataFolderError):
    """A node's data folder is missing, malformed, or does not match the transfer set."""


@dataclass(frozen=True, eq=False)
class NodeData:
    """One node's private training data and local test set. Arrays are read-only.

    Attributes
    ----------
    train_x : numpy.ndarray of float32, shape (n, C, H, W)
    train_y : numpy.ndarray of int64, shape (n,)
        Private training data; never leaves the node.
    test_x : numpy.ndarray of float32, shape (t, C, H, W)
    test_y : numpy.ndarray of int64, shape (t,)
        The node's local test set (t may be 0).
    path : pathlib.Path or None
        Folder it was read from; None for a simulated node.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    path: Path | None = None

    @property
    def num_samples(self) -> int:
        """Number of private training samples."""
        return int(self.train_y.shape[0])

    def label_histogram(self, num_classes: int) -> np.ndarray:
        """Training label counts, int64 (num_classes,). Private: send only on explicit opt-in."""
        return label_histogram(self.train_y, num_classes)


@runtime_checkable
class NodeDataSource(Protocol):
    """Where a node's data come from; the ClientApp calls ``load()`` and does not care which kind."""

    def load(self) -> NodeData: ...


@dataclass(frozen=True)
class FolderSource:
    """A real node's own folder (see the module docstring for the layout)."""

    path: str | os.PathLike
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]

    @classmethod
    def for_transfer(cls, path: str | os.PathLike, transfer: TransferSet) -> FolderSource:
        """The folder at ``path``, checked against the transfer set's classes and image shape."""
        return cls(path, transfer.classes, transfer.input_shape)

    def load(self) -> NodeData:
        return load_node_data(self.path, classes=self.classes, input_shape=self.input_shape)


@dataclass(frozen=True, eq=False)
class SimulatedSource:
    """A simulated node: client ``client_id`` of a federation built in memory (arrays shared, not copied)."""

    federation: Federation
    client_id: int

    def load(self) -> NodeData:
        n = self.federation.num_clients
        if not isinstance(self.client_id, (int, np.integer)) or not 0 <= self.client_id < n:
            raise ValueError(f"client_id={self.client_id!r} is outside the federation's 0..{n - 1}")
        c = self.federation.clients[int(self.client_id)]
        return NodeData(train_x=c.train_x, train_y=c.train_y, test_x=c.test_x, test_y=c.test_y, path=None)


# --------------------------------------------------------------------------- loading


def load_node_data(
    path: str | os.PathLike, *, classes: Sequence[str], input_shape: tuple[int, int, int]
) -> NodeData:
    """Read and check a node's own data folder.

    Parameters
    ----------
    path : str or path-like
        Folder holding ``train/`` or ``train.npz``, and ``test/`` or ``test.npz``.
    classes : sequence of str
        Class names in label index order (the transfer set's ``classes.txt``).
    input_shape : (C, H, W)
        Shape every image must have (the transfer set's). Greyscale/RGB are converted only when
        unambiguous (grey to RGB; RGB with R == G == B to grey; opaque alpha dropped); sizes are
        never changed.

    Returns
    -------
    NodeData
        float32 images in [0, 1] (uint8 pixels / 255), int64 labels, in the order described in
        the module docstring.

    Raises
    ------
    NodeDataError
        Missing folder or split, both a folder and an .npz for one split, unknown class folder,
        empty class folder, unreadable image, wrong image shape, bad labels, x/y length
        mismatch, or an empty training set. The message names the path.
    """
    root = Path(path)
    classes, input_shape = _check_schema(classes, input_shape)
    if not root.is_dir():
        raise NodeDataError(f"{root}: node data folder does not exist")
    arrays = {}
    for split in SPLITS:
        folder, npz = root / split, root / f"{split}.npz"
        if folder.exists() and npz.exists():
            raise NodeDataError(f"{root}: holds both {split}/ and {split}.npz; keep one of them")
        if not folder.exists() and not npz.exists():
            raise NodeDataError(f"{root}: missing {split}/ (ImageFolder layout) or {split}.npz")
        if folder.exists() and not folder.is_dir():
            raise NodeDataError(f"{folder}: is a file; {split}/ must be a folder of class folders")
        arrays[split] = load_split(folder if folder.exists() else npz, classes=classes, input_shape=input_shape)
    train_x, train_y = arrays["train"]
    if train_y.size == 0:
        raise NodeDataError(f"{root}: the training set is empty")
    test_x, test_y = arrays["test"]
    return NodeData(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, path=root)


def load_split(
    path: str | os.PathLike, *, classes: Sequence[str], input_shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read one labelled split: an ImageFolder-layout folder or an ``.npz`` with ``x`` and ``y``.

    Also what reads a public labelled test folder (e.g. an export's ``global_test/``). Returns
    read-only ``(x float32 (N, C, H, W), y int64 (N,))``; N may be 0. Raises
    :class:`NodeDataError` as :func:`load_node_data` does.
    """
    path = Path(path)
    classes, input_shape = _check_schema(classes, input_shape)
    if path.is_dir():
        x, y = _read_image_folder(path, classes, input_shape)
    elif path.is_file():
        x, y = _read_npz(path, classes, input_shape)
    else:
        raise NodeDataError(f"{path}: does not exist")
    return frozen(x), frozen(y)


def _check_schema(classes: Sequence[str], input_shape) -> tuple[tuple[str, ...], tuple[int, int, int]]:
    classes = tuple(classes)
    if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be unique non-empty names, got {classes!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be (C, H, W) positive ints, got {input_shape!r}")
    return classes, tuple(int(s) for s in shape)


def _read_npz(path: Path, classes: tuple[str, ...], input_shape: tuple[int, int, int]):
    arrays = npz_arrays(path, ["x", "y"], NodeDataError)
    x = images_array(arrays["x"], input_shape, f"{path} x", NodeDataError)
    y = np.asarray(arrays["y"])
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or (y.size == 0)):
        raise NodeDataError(f"{path}: y must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise NodeDataError(f"{path}: x holds {x.shape[0]} images but y holds {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise NodeDataError(
            f"{path}: labels must be in [0, {len(classes)}) (the classes of classes.txt), "
            f"found {int(y.min())}..{int(y.max())}"
        )
    return x, y.astype(np.int64)


def _read_image_folder(root: Path, classes: tuple[str, ...], input_shape: tuple[int, int, int]):
    """ImageFolder layout: files found by torchvision's ``make_dataset``, decoded with PIL."""
    from torchvision.datasets.folder import make_dataset

    present, unknown = [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            (present if entry.name in classes else unknown).append(entry.name)
        elif is_image_file(entry.name):
            raise NodeDataError(f"{entry}: image outside a class folder; put it in {root}/<class name>/")
    if unknown:
        raise NodeDataError(
            f"{root}: unknown class folder(s) {', '.join(unknown)}; the classes (classes.txt) are {', '.join(classes)}"
        )
    n_channels, h, w = input_shape
    if not present:
        return np.zeros((0, n_channels, h, w), np.float32), np.zeros(0, np.int64)
    class_to_idx = {name: classes.index(name) for name in present}
    samples = make_dataset(
        root, class_to_idx, is_valid_file=lambda p: not os.path.basename(p).startswith("."), allow_empty=True
    )
    for file, _ in samples:
        if not is_image_file(file):
            raise NodeDataError(f"{file}: not a PNG/JPEG image (only .png, .jpg and .jpeg are read)")
    counts = {name: 0 for name in present}
    idx_to_class = {i: name for name, i in class_to_idx.items()}
    for _, label in samples:
        counts[idx_to_class[label]] += 1
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise NodeDataError(
            f"{root}: empty class folder(s) {', '.join(empty)}; remove a class folder the node has no images of"
        )
    samples = _ordered(samples)
    x = np.stack([decode_image_file(file, NodeDataError, input_shape) for file, _ in samples])
    y = np.array([label for _, label in samples], dtype=np.int64)
    return uint8_to_float(x), y


def _ordered(samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Export order when file stems number the samples 0..N-1, else by label then path."""
    stems = [Path(file).stem for file, _ in samples]
    if all(s.isascii() and s.isdigit() for s in stems):
        numbers = [int(s) for s in stems]
        if sorted(numbers) == list(range(len(numbers))):
            return [sample for _, sample in sorted(zip(numbers, samples), key=lambda t: t[0])]
    return sorted(samples, key=lambda s: (s[1], s[0]))
