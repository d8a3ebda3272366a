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
    (integer labels in ``[0, len(classes))``): label ``k`` is the class on line ``k + 1`` of
    ``classes.txt`` (its 0-based index). Nothing in an .npz names its classes, so a file coded in
    another order cannot be detected here: write ``y`` from the transfer set's ``classes.txt``.

Each split may use either form (not both), and each must hold at least one image (the local
test set gives the node's local accuracy, which the server requires of every reply).

Class folder names are compared with ``classes.txt`` in Unicode NFC without surrounding spaces
(``fedkd.data.transfer.class_key``), so a folder copied from macOS (NFD) is still its class.
Hidden files and system files (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) are skipped; any
other file that is not a PNG/JPEG image is an error. Symbolic links are followed only when they
stay inside the node's folder, unless the owner allows more (``ReadOptions.allow_symlinks``).
Images whose size differs from the transfer set's are an error unless the owner asks for
resizing (``ReadOptions.resize``: torchvision's antialiased resize, after the EXIF orientation).

Sample order. ImageFolder groups files by class, which would reorder a node's samples, and the
order matters for reproducing a simulated run bit for bit (batches are drawn by position). So if
every image's file stem in a split is a decimal number and together they are exactly 0..N-1, the
samples are put in that order; this is how ``fedkd.data.export`` names its files (``000042.png``
is sample 42). Otherwise (ordinary data) samples are ordered by label, then by file path.

Everything is checked before anything is returned: :func:`scan_node_folder` collects *every*
problem with the path at fault (what ``fedkd check-data`` prints), and :func:`load_node_data`
raises one :class:`NodeDataError` listing them all.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fedkd.data.federation import Federation
from fedkd.data.partition import label_histogram
from fedkd.data.transfer import (
    DataFolderError,
    TransferSet,
    class_key,
    describe_difference,
    fit_image,
    frozen,
    images_array,
    is_image_file,
    npz_arrays,
    open_image,
    uint8_to_float,
)

__all__ = [
    "SPLITS",
    "FolderSource",
    "NodeData",
    "NodeDataError",
    "NodeDataSource",
    "NodeScan",
    "ReadOptions",
    "SimulatedSource",
    "SplitSummary",
    "load_node_data",
    "load_split",
    "scan_node_folder",
    "scan_split",
]

SPLITS = ("train", "test")
# Files an OS leaves in folders; skipped silently (names starting with "." are skipped too).
SYSTEM_FILES = ("thumbs.db", "desktop.ini", "icon\r")


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
    options: ReadOptions = field(default_factory=lambda: ReadOptions())

    @classmethod
    def for_transfer(cls, path: str | os.PathLike, transfer: TransferSet,
                     options: ReadOptions | None = None) -> FolderSource:
        """The folder at ``path``, checked against the transfer set's classes and image shape."""
        return cls(path, transfer.classes, transfer.input_shape, options or ReadOptions())

    def load(self) -> NodeData:
        return load_node_data(self.path, classes=self.classes, input_shape=self.input_shape, options=self.options)


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


# --------------------------------------------------------------------------- scanning and loading


@dataclass(frozen=True)
class ReadOptions:
    """The data owner's choices for reading its own files (node config ``image-size``, ``allow-symlinks``)."""

    resize: bool = False  # resize images of another size to the transfer set's (torchvision, antialiased)
    allow_symlinks: bool = False  # follow symbolic links that lead out of the node's folder


@dataclass
class SplitSummary:
    """What one split holds, for ``fedkd check-data``'s per-node summary."""

    path: Path
    counts: Counter = field(default_factory=Counter)  # class name -> images
    sizes: Counter = field(default_factory=Counter)  # "HxW" as stored -> images
    modes: Counter = field(default_factory=Counter)  # PIL mode (or "npz uint8"/"npz float32") -> images
    ignored: int = 0  # system and hidden files skipped

    @property
    def images(self) -> int:
        return sum(self.counts.values())


@dataclass
class NodeScan:
    """Every problem of a node's folder, what each split holds, and (when there is no problem) its data."""

    path: Path
    problems: list[str] = field(default_factory=list)
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    data: NodeData | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def missing_classes(self, classes: Sequence[str]) -> list[str]:
        """Classes of ``classes.txt`` without a single training image here (fine, but worth knowing)."""
        train = self.splits.get("train")
        return [c for c in classes if train is None or not train.counts.get(c)]

    def error(self, most: int = 20) -> NodeDataError:
        """One error listing the problems (the first ``most``; ``fedkd check-data`` lists every one)."""
        if len(self.problems) == 1:
            return NodeDataError(self.problems[0])
        more = len(self.problems) - most
        return NodeDataError(f"{self.path}: {len(self.problems)} problems in this data:\n"
                             + "\n".join(f"  - {p}" for p in self.problems[:most])
                             + (f"\n  ... and {more} more (`fedkd check-data {self.path}` lists every one)"
                                if more > 0 else ""))


def scan_node_folder(
    path: str | os.PathLike, *, classes: Sequence[str], input_shape: tuple[int, int, int],
    options: ReadOptions | None = None,
) -> NodeScan:
    """Read and check a node's own data folder, collecting every problem instead of stopping at the first.

    Parameters are those of :func:`load_node_data`. Returns a :class:`NodeScan`; its ``data`` is set
    only when ``problems`` is empty.
    """
    root = Path(path)
    classes, input_shape = _check_schema(classes, input_shape)
    options = options or ReadOptions()
    scan = NodeScan(root)
    if not root.is_dir():
        scan.problems.append(f"{root}: node data folder does not exist")
        return scan
    arrays = {}
    for split in SPLITS:
        folder, npz = root / split, root / f"{split}.npz"
        if folder.exists() and npz.exists():
            scan.problems.append(f"{root}: holds both {split}/ and {split}.npz; keep one of them")
            continue
        if not folder.exists() and not npz.exists():
            scan.problems.append(f"{root}: missing {split}/ (ImageFolder layout) or {split}.npz")
            continue
        if folder.exists() and not folder.is_dir():
            scan.problems.append(f"{folder}: is a file; {split}/ must be a folder of class folders")
            continue
        where = folder if folder.exists() else npz
        before = len(scan.problems)
        summary, x, y = _scan_split(where, classes, input_shape, options, root, scan.problems)
        scan.splits[split] = summary
        if summary.images == 0 and len(scan.problems) == before:  # empty, not merely unreadable
            what = "training set" if split == "train" else "local test set (its accuracy is the node's ALMA)"
            scan.problems.append(f"{where}: no images; the {what} must hold at least one image "
                                 f"(in {split}/<class name>/ or {split}.npz)")
        arrays[split] = (x, y)
    if scan.ok:
        (train_x, train_y), (test_x, test_y) = arrays["train"], arrays["test"]
        scan.data = NodeData(train_x=frozen(train_x), train_y=frozen(train_y), test_x=frozen(test_x),
                             test_y=frozen(test_y), path=root)
    return scan


def load_node_data(
    path: str | os.PathLike, *, classes: Sequence[str], input_shape: tuple[int, int, int],
    options: ReadOptions | None = None,
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
        changed only with ``options.resize``.
    options : ReadOptions, optional
        Resizing and symbolic links (default: neither).

    Returns
    -------
    NodeData
        float32 images in [0, 1] (uint8 pixels / 255), int64 labels, in the order described in
        the module docstring.

    Raises
    ------
    NodeDataError
        Listing every problem, each with its path: missing folder or split, both a folder and an
        .npz for one split, unknown class folder, empty class folder, a file that is not an image,
        an unreadable image, wrong image shape, a link out of the folder, bad labels, x/y length
        mismatch, or an empty training or test set.
    """
    scan = scan_node_folder(path, classes=classes, input_shape=input_shape, options=options)
    if not scan.ok:
        raise scan.error()
    return scan.data


def scan_split(
    path: str | os.PathLike, *, classes: Sequence[str], input_shape: tuple[int, int, int],
    options: ReadOptions | None = None,
) -> NodeScan:
    """Check one labelled split (folder or .npz, e.g. a public ``global_test/``): every problem, and its summary
    as ``splits["split"]``; ``data`` stays None."""
    path = Path(path)
    classes, input_shape = _check_schema(classes, input_shape)
    scan = NodeScan(path)
    if not path.exists():
        scan.problems.append(f"{path}: does not exist")
        return scan
    summary, _, _ = _scan_split(path, classes, input_shape, options or ReadOptions(),
                                path if path.is_dir() else path.parent, scan.problems)
    scan.splits["split"] = summary
    return scan


def load_split(
    path: str | os.PathLike, *, classes: Sequence[str], input_shape: tuple[int, int, int],
    options: ReadOptions | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one labelled split: an ImageFolder-layout folder or an ``.npz`` with ``x`` and ``y``.

    Also what reads a public labelled test folder (e.g. an export's ``global_test/``). Returns
    read-only ``(x float32 (N, C, H, W), y int64 (N,))``; N may be 0. Raises
    :class:`NodeDataError` listing every problem, as :func:`load_node_data` does.
    """
    path = Path(path)
    classes, input_shape = _check_schema(classes, input_shape)
    if not path.exists():
        raise NodeDataError(f"{path}: does not exist")
    problems: list[str] = []
    _, x, y = _scan_split(path, classes, input_shape, options or ReadOptions(),
                          path if path.is_dir() else path.parent, problems)
    if problems:
        raise NodeScan(path, problems).error()
    return frozen(x), frozen(y)


def _check_schema(classes: Sequence[str], input_shape) -> tuple[tuple[str, ...], tuple[int, int, int]]:
    classes = tuple(classes)
    if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be unique non-empty names, got {classes!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be (C, H, W) positive ints, got {input_shape!r}")
    return classes, tuple(int(s) for s in shape)


def _scan_split(path: Path, classes: tuple[str, ...], input_shape: tuple[int, int, int], options: ReadOptions,
                node_root: Path, problems: list[str]) -> tuple[SplitSummary, np.ndarray, np.ndarray]:
    """One split (folder or .npz): its summary and arrays; problems are appended, never raised."""
    n_channels, h, w = input_shape
    empty = np.zeros((0, n_channels, h, w), np.float32), np.zeros(0, np.int64)
    summary = SplitSummary(path)
    if path.is_dir():
        x, y = _read_image_folder(path, classes, input_shape, options, node_root, summary, problems)
    else:
        try:
            x, y = _read_npz(path, classes, input_shape, options, summary)
        except NodeDataError as exc:
            problems.append(str(exc))
            return summary, *empty
    if x is None:
        return summary, *empty
    return summary, x, y


def _read_npz(path: Path, classes: tuple[str, ...], input_shape: tuple[int, int, int], options: ReadOptions,
              summary: SplitSummary):
    arrays = npz_arrays(path, ["x", "y"], NodeDataError)
    raw = np.asarray(arrays["x"])
    x = images_array(raw, input_shape, f"{path} x", NodeDataError, resize=options.resize)
    y = np.asarray(arrays["y"])
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or (y.size == 0)):
        raise NodeDataError(f"{path}: y must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise NodeDataError(f"{path}: x holds {x.shape[0]} images but y holds {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise NodeDataError(
            f"{path}: labels must be in [0, {len(classes)}) (the 0-based line numbers of classes.txt), "
            f"found {int(y.min())}..{int(y.max())}"
        )
    y = y.astype(np.int64)
    summary.counts.update(classes[int(label)] for label in y)
    summary.sizes["x".join(map(str, _stored_hw(raw, input_shape)))] += int(y.size)
    summary.modes[f"npz {raw.dtype}"] += int(y.size)
    return x, y


def _stored_hw(raw: np.ndarray, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """Height and width of the images in an .npz ``x`` as stored (N,H,W | N,C,H,W | N,H,W,C), for the summary."""
    if raw.ndim != 4:
        return tuple(raw.shape[1:3])
    channels_last = raw.shape[-1] in (1, 2, 3, 4) and (raw.shape[1] not in (1, 2, 3, 4)
                                                        or raw.shape[1:3] == tuple(input_shape[1:]))
    return tuple(raw.shape[1:3]) if channels_last else tuple(raw.shape[2:])


def _system_file(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _escapes(entry: Path, base: Path, options: ReadOptions) -> str | None:
    """Why following ``entry`` is refused (a link out of the node's folder), or None."""
    if options.allow_symlinks or not entry.is_symlink():
        return None
    target = entry.resolve()
    if target.is_relative_to(base):
        return None
    return (f"{entry}: a symbolic link to {target}, outside the node's folder {base}; copy the file in, or allow "
            "links with --node-config allow-symlinks=true (run config allow_symlinks=true)")


def _read_image_folder(root: Path, classes: tuple[str, ...], input_shape: tuple[int, int, int],
                       options: ReadOptions, node_root: Path, summary: SplitSummary, problems: list[str]):
    """ImageFolder layout (as torchvision's ``make_dataset`` walks it), decoded with PIL; every problem noted."""
    base = node_root.resolve()
    start = len(problems)
    reason = _escapes(root, base, options)
    if reason:
        problems.append(reason)
        return None, None
    by_key = {class_key(name): i for i, name in enumerate(classes)}
    folders: dict[int, Path] = {}
    for entry in sorted(root.iterdir()):
        if _system_file(entry.name):
            summary.ignored += 1
            continue
        reason = _escapes(entry, base, options)
        if reason:
            problems.append(reason)
        elif entry.is_dir():
            label = by_key.get(class_key(entry.name))
            if label is None:
                problems.append(_unknown_class(entry, classes))
            elif label in folders:
                problems.append(f"{entry}: a second folder for class {classes[label]!r} (the other is "
                                f"{folders[label]}; {describe_difference(entry.name, folders[label].name)}); "
                                "merge them")
            else:
                folders[label] = entry
        elif is_image_file(entry.name):
            problems.append(f"{entry}: image outside a class folder; put it in {root}/<class name>/")
    samples: list[tuple[str, int]] = []
    for label, folder in sorted(folders.items(), key=lambda item: item[1].name):
        files = _walk(folder, base, options, summary, problems, seen={folder.resolve()})
        if not files:
            problems.append(f"{folder}: empty class folder; remove a class folder the node has no images of")
        for file in files:
            if is_image_file(file.name):
                samples.append((str(file), label))
            else:
                problems.append(f"{file}: not a PNG/JPEG image (only .png, .jpg and .jpeg are read); move it out "
                                f"of the class folder")
    samples = _ordered(samples)
    pixels = []
    for file, label in samples:
        try:
            img, mode = open_image(file, NodeDataError)
            summary.sizes[f"{img.shape[1]}x{img.shape[2]}"] += 1
            summary.modes[mode] += 1
            summary.counts[classes[label]] += 1
            pixels.append(fit_image(img, input_shape, file, NodeDataError, resize=options.resize))
        except NodeDataError as exc:
            problems.append(str(exc))
    if len(problems) > start:
        return None, None
    n_channels, h, w = input_shape
    if not pixels:
        return np.zeros((0, n_channels, h, w), np.float32), np.zeros(0, np.int64)
    return uint8_to_float(np.stack(pixels)), np.array([label for _, label in samples], dtype=np.int64)


def _walk(folder: Path, base: Path, options: ReadOptions, summary: SplitSummary, problems: list[str],
          seen: set[Path]) -> list[Path]:
    """Files under a class folder, sub-folders included, in sorted order; links checked, loops refused."""
    files = []
    for entry in sorted(folder.iterdir()):
        if _system_file(entry.name):
            summary.ignored += 1
            continue
        reason = _escapes(entry, base, options)
        if reason:
            problems.append(reason)
        elif entry.is_dir():
            real = entry.resolve()
            if real in seen:
                problems.append(f"{entry}: a link back to a folder already read ({real}); remove it")
                continue
            files += _walk(entry, base, options, summary, problems, seen | {real})
        elif entry.is_file():
            files.append(entry)
        else:
            problems.append(f"{entry}: not a regular file (a broken link?)")
    return files


def _unknown_class(entry: Path, classes: tuple[str, ...]) -> str:
    """An unknown class folder, with the class it most resembles and how the two names differ."""
    message = f"{entry}: unknown class folder {entry.name!r}; the classes (classes.txt) are {', '.join(classes)}"
    close = difflib.get_close_matches(class_key(entry.name), classes, n=1, cutoff=0.6)
    close = close or [c for c in classes if c.casefold() == class_key(entry.name).casefold()]
    if close:
        message += f". Did you mean {close[0]!r}? {describe_difference(entry.name, close[0])}"
    return message


def _ordered(samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Export order when file stems number the samples 0..N-1, else by label then path."""
    stems = [Path(file).stem for file, _ in samples]
    if all(s.isascii() and s.isdigit() for s in stems):
        numbers = [int(s) for s in stems]
        if sorted(numbers) == list(range(len(numbers))):
            return [sample for _, sample in sorted(zip(numbers, samples), key=lambda t: t[0])]
    return sorted(samples, key=lambda s: (s[1], s[0]))
