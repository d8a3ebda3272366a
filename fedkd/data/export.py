"""Write a simulated federation to per-node folders, so a study can move to real hosts with the same data.

Layout of ``out_dir`` (every image a PNG; PNG is lossless, so nothing changes on the way)::

    manifest.json                     counts per node, transfer fingerprint, the FederationSpec
    transfer/classes.txt              class folder names, one per line, in label index order
    transfer/000000.png ...           X_t in transfer order (read back in sorted file-name order)
    node-<i>/train/<class>/<j>.png    client i's training sample j (ImageFolder layout)
    node-<i>/test/<class>/<j>.png     client i's local test sample j
    global_test/<class>/<j>.png       the global test set (optional; public and labelled)

``<j>`` is the sample's position in the simulation's array, zero-padded; ImageFolder groups files
by class, and ``fedkd.data.node_data`` restores position order from these numbers, so reading
a node's folder gives arrays bit-identical to the simulated client's, in the same order. A class
a node has no samples of gets no folder. Class names become folder names through
``safe_class_name`` (``/`` and ``\\`` to ``_``: Fashion-MNIST's "T-shirt/top" is "T-shirt_top"),
and ``classes.txt`` lists the folder names. The transfer set's labels are never written.

Exactness: a PNG holds uint8 pixels, so only arrays whose every value is exactly ``k/255`` (as
float32 ``k / 255``) survive a round trip. Anything else is refused with :class:`ExportError`
before a single file is written, rather than exported slightly changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedkd.data.federation import Federation, fingerprint
from fedkd.data.transfer import (
    CLASSES_FILE,
    load_transfer_set,
    safe_class_name,
    uint8_to_float,
    write_classes,
    write_png_file,
)

__all__ = [
    "EXPORT_FORMAT",
    "GLOBAL_TEST_DIR",
    "MANIFEST_FILE",
    "TRANSFER_DIR",
    "ExportError",
    "ExportManifest",
    "NodeExport",
    "export_federation",
    "node_dir_name",
    "to_uint8_exact",
]

EXPORT_FORMAT = "fedkd-export-1"
MANIFEST_FILE = "manifest.json"
TRANSFER_DIR = "transfer"
GLOBAL_TEST_DIR = "global_test"
_MIN_DIGITS = 6


class ExportError(ValueError):
    """The federation cannot be exported as asked (lossy pixels, bad class names, occupied out_dir)."""


@dataclass(frozen=True)
class NodeExport:
    """What was written for one node: its folder name and sample counts (no labels)."""

    name: str
    train: int
    test: int


@dataclass(frozen=True)
class ExportManifest:
    """Summary of an export, also written as ``manifest.json``.

    Attributes
    ----------
    out_dir : pathlib.Path
    classes : tuple of str
        Class folder names in label index order (``transfer/classes.txt``).
    input_shape : (C, H, W)
    transfer_size : int
    transfer_fingerprint : str
        What a deployed node and server compute from ``transfer/`` (pixels and class list,
        ``fedkd.data.transfer.transfer_fingerprint``); the pixels equal the simulation's
        (checked by reading back).
    nodes : tuple of NodeExport
        ``nodes[i]`` is ``node-<i>``.
    global_test : int or None
        Size of ``global_test/``; None when it was not written.
    spec : dict
        The ``FederationSpec`` the federation was built from, for provenance.
    """

    out_dir: Path
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    transfer_size: int
    transfer_fingerprint: str
    nodes: tuple[NodeExport, ...]
    global_test: int | None
    spec: dict

    def to_json(self) -> dict:
        """The ``manifest.json`` content (paths relative to ``out_dir``, so the folder can move)."""
        return {
            "format": EXPORT_FORMAT,
            "classes": list(self.classes),
            "input_shape": list(self.input_shape),
            "transfer": {"dir": TRANSFER_DIR, "size": self.transfer_size, "fingerprint": self.transfer_fingerprint},
            "nodes": [dataclasses.asdict(n) for n in self.nodes],
            "global_test": None if self.global_test is None else {"dir": GLOBAL_TEST_DIR, "size": self.global_test},
            "spec": self.spec,
        }


def node_dir_name(client_id: int) -> str:
    """Folder name of client ``client_id``: ``node-<i>``."""
    return f"node-{int(client_id)}"


def to_uint8_exact(x: np.ndarray, what: str) -> np.ndarray:
    """The uint8 pixels ``u`` with ``u / 255 == x`` bit for bit, or :class:`ExportError`.

    ``what`` names the array in the message (e.g. ``"node-0 train_x"``), together with the first
    offending sample and value.
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ExportError(f"{what}: dtype {x.dtype}, expected float32")
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1):
        raise ExportError(f"{what}: values must be finite and in [0, 1]")
    u = np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    bad = uint8_to_float(u).view(np.uint32) != x.view(np.uint32)
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ExportError(
            f"{what}: {int(bad.sum())} pixel value(s) are not exactly k/255 (first: sample {first[0]}, "
            f"index {first[1:]}, value {float(x[first])!r}); a PNG holds uint8 pixels, so exporting would "
            "change the data. Quantise the dataset to multiples of 1/255 first."
        )
    return u


def export_federation(
    federation: Federation,
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    global_test: bool = True,
) -> ExportManifest:
    """Write ``federation`` as folders (see the module docstring for the layout).

    Parameters
    ----------
    federation : Federation
        A simulated federation (``fedkd.data.build_federation``).
    out_dir : str or path-like
        Must not exist or be an empty folder; it is never overwritten. Files are written to a
        hidden sibling folder first and renamed into place at the end, so a failed export
        leaves nothing half-written behind.
    classes : sequence of str, optional
        Class names in label index order; default ``federation.class_names``. Mapped to folder
        names with ``safe_class_name``.
    global_test : bool
        Also write the global test set as ``global_test/`` (public, labelled), from which a
        deployed server can compute global-test accuracy.

    Returns
    -------
    ExportManifest

    Raises
    ------
    ExportError
        ``out_dir`` is not empty, a pixel is not exactly k/255 (named), or class names are
        unusable (wrong count, or two names give the same folder).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty folder; refusing to overwrite it")
    folders = _class_folders(classes if classes is not None else federation.class_names, federation.num_classes)

    # Convert (and so check) everything before writing anything.
    transfer_u8 = to_uint8_exact(federation.transfer_x, "transfer_x")
    node_u8 = [
        (to_uint8_exact(c.train_x, f"{node_dir_name(c.client_id)} train_x"),
         to_uint8_exact(c.test_x, f"{node_dir_name(c.client_id)} test_x"))
        for c in federation.clients
    ]
    global_u8 = to_uint8_exact(federation.global_test_x, "global_test_x") if global_test else None

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        transfer = staging / TRANSFER_DIR
        transfer.mkdir()
        write_classes(transfer / CLASSES_FILE, folders)
        width = _width(len(transfer_u8))
        for j, img in enumerate(transfer_u8):
            write_png_file(img, transfer / f"{j:0{width}d}.png")

        nodes = []
        for c, (train_u8, test_u8) in zip(federation.clients, node_u8):
            node = staging / node_dir_name(c.client_id)
            _write_image_folder(node / "train", train_u8, np.asarray(c.train_y), folders)
            _write_image_folder(node / "test", test_u8, np.asarray(c.test_y), folders)
            nodes.append(NodeExport(node_dir_name(c.client_id), int(c.train_y.size), int(c.test_y.size)))
        if global_u8 is not None:
            _write_image_folder(staging / GLOBAL_TEST_DIR, global_u8, np.asarray(federation.global_test_y), folders)

        # Read X_t back: the pixels a deployed node reads must be the simulation's.
        expected = fingerprint(federation.transfer_x)
        read_back = load_transfer_set(transfer)
        if fingerprint(read_back.x) != expected:
            raise ExportError(f"{transfer}: read back with pixel fingerprint {fingerprint(read_back.x)}, "
                              f"expected {expected}")

        manifest = ExportManifest(
            out_dir=out,
            classes=folders,
            input_shape=tuple(int(s) for s in federation.input_shape),
            transfer_size=len(transfer_u8),
            transfer_fingerprint=read_back.fingerprint,
            nodes=tuple(nodes),
            global_test=None if global_u8 is None else len(global_u8),
            spec=dataclasses.asdict(federation.spec),
        )
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a directory portably
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _class_folders(classes: Sequence[str], num_classes: int) -> tuple[str, ...]:
    classes = tuple(classes)
    if len(classes) != num_classes:
        raise ExportError(f"{len(classes)} class names given for {num_classes} classes")
    try:
        folders = tuple(safe_class_name(c) for c in classes)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    if len(set(folders)) != len(folders):
        raise ExportError(f"class names {list(classes)} give clashing folder names {list(folders)}")
    return folders


def _width(n: int) -> int:
    return max(_MIN_DIGITS, len(str(max(n - 1, 0))))


def _write_image_folder(root: Path, x_u8: np.ndarray, y: np.ndarray, folders: tuple[str, ...]) -> None:
    """ImageFolder layout; file ``<j>.png`` is sample j, so readers can restore the order."""
    root.mkdir(parents=True)
    width = _width(len(y))
    for label in np.unique(y):
        (root / folders[int(label)]).mkdir()
    for j, (img, label) in enumerate(zip(x_u8, y)):
        write_png_file(img, root / folders[int(label)] / f"{j:0{width}d}.png")
