"""What a node brings to the federation: its client id, its data, its own storage folder.

Read from the node's own configuration (Flower's ``node_config``), never from the
server: ``partition-id`` (the client id it claims), ``state-dir`` (where it keeps
its checkpoints and final model), ``auth-key`` (the private key that proves its
id), and for its own files ``data-dir``, ``transfer-dir``, ``global-test-dir``,
``image-size`` (resize its images to the transfer set's size) and
``allow-symlinks``. A simulated node builds its partition from the run's dataset
through the same data-source interface a real node uses for its own files, or
reads ``<data_dir>/node-<i>`` when the run names a folder of node folders
(``fedkd simulate --data``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from fedkd.config import Config
from fedkd.node_inputs import ClientInputs, assemble_inputs, simulated_inputs

if TYPE_CHECKING:
    from flwr.app import Context


# Where a node keeps its state (checkpoints, final model): a folder for the node's context, or None.
StorageFn = Callable[["Context"], "Path | None"]


@dataclass(frozen=True)
class Node:
    client_id: int
    inputs: ClientInputs
    fingerprint: str


def claimed_client_id(node_config: Mapping) -> int:
    try:
        return int(node_config["partition-id"])
    except KeyError:
        raise ValueError("this SuperNode has no 'partition-id' in its --node-config") from None
    except (TypeError, ValueError):
        raise ValueError(f"node config partition-id={node_config['partition-id']!r} is not an integer") from None


def own_state_dir(context: Context) -> Path | None:
    """The default ``StorageFn``: a real node's storage folder (``--node-config "state-dir=PATH"``), or None
    (nothing kept on disk)."""
    value = context.node_config.get("state-dir")
    return Path(str(value)) if value else None


@dataclass(frozen=True)
class RunFolderStorage:
    """Simulated nodes keep their state in a folder each under the run folder: ``<root>/client-<id>``."""

    root: Path

    def __call__(self, context) -> Path:
        # storage-id: a colluding node that trains as another client keeps its own folder
        owner = context.node_config.get("storage-id", claimed_client_id(context.node_config))
        return Path(self.root) / f"client-{int(owner)}"


@dataclass(frozen=True)
class OwnFolders:
    """Where a node reads its own files, and how (the owner's node config over the run config)."""

    data_dir: str
    transfer_dir: str
    global_dir: str = ""
    image_size: tuple[int, int] | None = None  # the run's: every image it reads, the transfer set's included
    own_size: tuple[int, int] | None = None  # resize the node's own images to this (the transfer set's) size
    allow_symlinks: bool = False


def own_folders(cfg: Config, node_config: Mapping, client_id: int) -> OwnFolders | None:
    """The node's folders: its node config's ``data-dir``, else ``<data_dir>/node-<i>`` of the run; None if neither."""
    from fedkd.data.transfer import parse_image_size

    if node_config.get("data-dir"):
        data_dir = str(node_config["data-dir"])
    elif cfg.data.data_dir:
        data_dir = str(Path(cfg.data.data_dir) / f"node-{client_id}")
    else:
        return None
    transfer_dir = node_config.get("transfer-dir") or cfg.data.transfer_dir
    if not transfer_dir:
        raise ValueError("this node reads its own data (data-dir) but knows no transfer set: set the run "
                         "config's transfer_dir or --node-config transfer-dir=PATH")
    global_dir = node_config.get("global-test-dir") or cfg.data.global_test_dir
    run_size = cfg.data.image_hw
    own_size = parse_image_size(node_config.get("image-size"), "--node-config image-size") or run_size
    allow = node_config.get("allow-symlinks", cfg.data.allow_symlinks)
    if not isinstance(allow, bool):
        raise ValueError(f"--node-config allow-symlinks={allow!r}: expected true or false")
    return OwnFolders(data_dir, str(transfer_dir), str(global_dir) if global_dir else "", run_size, own_size, allow)


def load_node(cfg: Config, node_config: Mapping) -> Node:
    """The node's inputs: its own folders (``data-dir``, or the run's ``data_dir``), else its partition of the
    run's dataset."""
    client_id = claimed_client_id(node_config)
    if not 0 <= client_id < cfg.run.num_clients:
        raise ValueError(f"node config partition-id={client_id} is not a client of this run "
                         f"(num_clients={cfg.run.num_clients})")
    folders = own_folders(cfg, node_config, client_id)
    if folders is not None:
        return _node_on_own_data(cfg, client_id, folders)
    return _simulated_node(cfg, client_id)


@lru_cache(maxsize=32)  # a simulation's actor serves several nodes; each keeps its data between rounds
def _own_data(folders: OwnFolders):
    """Read (and check) the node's folders once per process; every round reuses them."""
    from fedkd.data.node_data import FolderSource, NodeDataError, ReadOptions, load_split
    from fedkd.data.transfer import load_transfer_set

    transfer = load_transfer_set(folders.transfer_dir, image_size=folders.image_size)
    size = folders.own_size
    if size is not None and size != transfer.input_shape[1:]:
        h, w = transfer.input_shape[1:]
        raise NodeDataError(f"image size {size[0]}x{size[1]} asked for, but the transfer set's images are {h}x{w}; "
                            f"a node's images are resized to the transfer set's size: use {h}x{w}")
    options = ReadOptions(resize=size is not None, allow_symlinks=folders.allow_symlinks)
    data = FolderSource.for_transfer(folders.data_dir, transfer, options).load()
    global_test = (load_split(folders.global_dir, classes=transfer.classes, input_shape=transfer.input_shape,
                              options=ReadOptions(resize=folders.image_size is not None))
                   if folders.global_dir else None)
    return transfer, data, global_test


def _node_on_own_data(cfg: Config, client_id: int, folders: OwnFolders) -> Node:
    transfer, data, global_test = _own_data(folders)
    inputs, fingerprint = assemble_inputs(
        client_id, data, transfer_x=transfer.x, transfer_fingerprint=transfer.fingerprint,
        input_shape=transfer.input_shape, num_classes=transfer.num_classes, canaries=cfg.canaries,
        global_test=global_test)
    return Node(client_id, inputs, fingerprint)


def _simulated_node(cfg: Config, client_id: int) -> Node:
    inputs, fingerprint = simulated_inputs(cfg, client_id)
    return Node(client_id, inputs, fingerprint)
