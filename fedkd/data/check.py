"""Check a node's data folder, or a federation's folder of node folders, offline, listing every problem at once.

What ``fedkd check-data DIR`` runs, and what ``fedkd federation --data`` and ``fedkd simulate --data`` run
before they start anything. ``DIR`` is either

- one node's folder (``train/`` or ``train.npz``, ``test/`` or ``test.npz``): checked against the transfer set
  given, else the ``transfer/`` beside it; or
- a federation's folder as ``fedkd export`` writes it (``node-<i>/``, ``transfer/``, ``global_test/``,
  ``manifest.json``): every node folder, the transfer set and the public test set are checked.

When the federation's ``manifest.json`` (beside the node folder, or in DIR) is there, the transfer set used is
compared with the one the federation was made with: a copy whose ``classes.txt`` lists the classes in another
order has the same images but would read every label as another class.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fedkd.data.federation import fingerprint
from fedkd.data.node_data import SPLITS, NodeScan, ReadOptions, scan_node_folder, scan_split
from fedkd.data.transfer import DataFolderError, TransferSet, class_key, load_transfer_set

__all__ = ["DataCheck", "check_data", "is_node_folder"]

_NODE_DIR = re.compile(r"node-(\d+)")
_MANIFEST, _TRANSFER, _GLOBAL_TEST = "manifest.json", "transfer", "global_test"  # fedkd.data.export's names


@dataclass
class DataCheck:
    """The outcome: problems of the transfer set and the public test set, then one scan per node folder."""

    root: Path
    transfer_dir: Path | None = None
    transfer: TransferSet | None = None
    problems: list[str] = field(default_factory=list)  # not of one node: transfer set, layout, global test
    nodes: dict[str, NodeScan] = field(default_factory=dict)  # "node-0" (or the folder's name) -> its scan

    @property
    def all_problems(self) -> list[str]:
        return self.problems + [p for scan in self.nodes.values() for p in scan.problems]

    @property
    def ok(self) -> bool:
        return not self.all_problems


def is_node_folder(path: Path) -> bool:
    """Whether ``path`` looks like one node's folder (it has a train or test split)."""
    return any((path / name).exists() for split in SPLITS for name in (split, f"{split}.npz"))


def check_data(
    path: str | os.PathLike, *, transfer_dir: str | os.PathLike | None = None, nodes: int | None = None,
    image_size: tuple[int, int] | None = None, resize: bool = False, allow_symlinks: bool = False,
) -> DataCheck:
    """Check ``path`` (a node folder or a federation folder); never raises for bad data, lists it.

    Parameters
    ----------
    transfer_dir : path, optional
        The transfer set to check against (default: ``transfer/`` in the federation folder, or beside the
        node folder).
    nodes : int, optional
        A federation must have ``node-0`` .. ``node-<nodes-1>`` (``fedkd federation --nodes``).
    image_size : (H, W), optional
        The run's ``image_size``: every image, the transfer set's included, is resized to it.
    resize : bool
        Resize node images to the transfer set's size (a node's ``image-size``); implied by ``image_size``.
    allow_symlinks : bool
        Follow symbolic links that lead out of a node's folder.
    """
    root = Path(path)
    check = DataCheck(root)
    if not root.is_dir():
        check.problems.append(f"{root}: folder does not exist")
        return check
    single = is_node_folder(root)
    federation_root = root.parent if single else root
    if single:
        node_dirs = {root.name: root}
    else:
        node_dirs = _node_dirs(root, nodes, check.problems)
        if not node_dirs and not check.problems:
            check.problems.append(f"{root}: neither a node folder (train/, test/) nor a federation folder of "
                                  "node-<i>/ folders (as `fedkd export` writes)")
    check.transfer_dir = Path(transfer_dir) if transfer_dir else federation_root / _TRANSFER
    try:
        check.transfer = load_transfer_set(check.transfer_dir, image_size=image_size)
    except DataFolderError as exc:
        hint = "" if transfer_dir or check.transfer_dir.exists() else " (name the transfer set with --transfer DIR)"
        check.problems.append(f"{exc}{hint}")
        if node_dirs:
            check.problems.append("node folders not checked: the transfer set defines their classes and image size")
        return check
    check.problems += _compare_with_federation(check.transfer, federation_root, image_size)
    options = ReadOptions(resize=resize or image_size is not None, allow_symlinks=allow_symlinks)
    for name, folder in node_dirs.items():
        check.nodes[name] = scan_node_folder(folder, classes=check.transfer.classes,
                                             input_shape=check.transfer.input_shape, options=options)
    global_test = federation_root / _GLOBAL_TEST
    if not single and global_test.is_dir():
        check.problems += scan_split(global_test, classes=check.transfer.classes,
                                     input_shape=check.transfer.input_shape,
                                     options=ReadOptions(resize=image_size is not None)).problems
    return check


def _node_dirs(root: Path, nodes: int | None, problems: list[str]) -> dict[str, Path]:
    found = {}
    for entry in root.iterdir():
        match = _NODE_DIR.fullmatch(entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = entry
    if nodes is not None:
        missing = [f"node-{i}" for i in range(nodes) if i not in found]
        if missing:
            problems.append(f"{root}: lacks {', '.join(missing)} (one folder per node, node-0 .. node-{nodes - 1})")
        found = {i: p for i, p in found.items() if i < nodes}
    return {f"node-{i}": found[i] for i in sorted(found)}


def _compare_with_federation(transfer: TransferSet, federation_root: Path, image_size) -> list[str]:
    """Problems of a transfer set that differs from the one the federation was exported with."""
    manifest = federation_root / _MANIFEST
    if not manifest.is_file():
        return []
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        classes = tuple(class_key(c) for c in recorded["classes"])
        recorded_fp = recorded["transfer"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{manifest}: not a readable `fedkd export` manifest ({exc})"]
    where = transfer.path / "classes.txt"
    if transfer.classes != classes:
        if sorted(transfer.classes) == sorted(classes):
            line = next(i for i, (a, b) in enumerate(zip(transfer.classes, classes)) if a != b)
            return [f"{where}: lists the federation's classes in another order than {manifest} (line {line + 1} is "
                    f"{transfer.classes[line]!r} here, {classes[line]!r} there), so every label would be read as "
                    "another class; copy classes.txt from the federation's transfer set"]
        extra = sorted(set(transfer.classes) - set(classes))
        missing = sorted(set(classes) - set(transfer.classes))
        return [f"{where}: other classes than {manifest}: extra {extra or 'none'}, missing {missing or 'none'}"]
    if image_size is None and recorded_fp not in (transfer.fingerprint, fingerprint(transfer.x)):
        return [f"{transfer.path}: its images differ from the federation's transfer set (fingerprint "
                f"{transfer.fingerprint}, {manifest} says {recorded_fp}); copy transfer/ again"]
    return []
