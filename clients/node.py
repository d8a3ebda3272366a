"""What a node brings to the federation: its client id, its data, its own storage folder.

Read from the node's own configuration (Flower's ``node_config``), never from the
server: ``partition-id`` (the client id it claims), ``state-dir`` (where it keeps
its checkpoints and final model) and ``auth-key`` (the private key that proves its
id). A simulated node builds its partition from the run's dataset through the
same data-source interface a real node uses for its own files.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from fedkd.client_step import ClientInputs
from fedkd.config import Config
from fedkd.node_inputs import assemble_inputs, simulated_inputs


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


def state_dir_from_node_config(node_config: Mapping) -> Path | None:
    """A real node's storage folder (``--node-config "state-dir=PATH"``), or None (nothing kept on disk)."""
    value = node_config.get("state-dir")
    return Path(str(value)) if value else None


@dataclass(frozen=True)
class RunFolderStorage:
    """Simulated nodes keep their state in a folder each under the run folder: ``<root>/client-<id>``."""

    root: Path

    def __call__(self, context) -> Path:
        return Path(self.root) / f"client-{claimed_client_id(context.node_config)}"


def load_node(cfg: Config, node_config: Mapping) -> Node:
    """The node's inputs: its own folders with ``data-dir``, else its partition of the run's dataset."""
    client_id = claimed_client_id(node_config)
    if not 0 <= client_id < cfg.run.num_clients:
        raise ValueError(f"node config partition-id={client_id} is not a client of this run "
                         f"(num_clients={cfg.run.num_clients})")
    if node_config.get("data-dir"):
        transfer_dir = node_config.get("transfer-dir") or cfg.data.transfer_dir
        if not transfer_dir:
            raise ValueError("this node reads its own data (data-dir) but knows no transfer set: set the run "
                             "config's transfer_dir or --node-config transfer-dir=PATH")
        global_dir = node_config.get("global-test-dir") or cfg.data.global_test_dir
        return _node_on_own_data(cfg, client_id, str(node_config["data-dir"]), str(transfer_dir),
                                 str(global_dir) if global_dir else "")
    return _simulated_node(cfg, client_id)


@lru_cache(maxsize=4)
def _own_data(data_dir: str, transfer_dir: str, global_dir: str):
    """Read (and check) the node's folders once per process; every round reuses them."""
    from fedkd.data.node_data import FolderSource, load_split
    from fedkd.data.transfer import load_transfer_set

    transfer = load_transfer_set(transfer_dir)
    data = FolderSource.for_transfer(data_dir, transfer).load()
    global_test = (load_split(global_dir, classes=transfer.classes, input_shape=transfer.input_shape)
                   if global_dir else None)
    return transfer, data, global_test


def _node_on_own_data(cfg: Config, client_id: int, data_dir: str, transfer_dir: str, global_dir: str) -> Node:
    transfer, data, global_test = _own_data(data_dir, transfer_dir, global_dir)
    inputs, fingerprint = assemble_inputs(
        client_id, data, transfer_x=transfer.x, transfer_fingerprint=transfer.fingerprint,
        input_shape=transfer.input_shape, num_classes=transfer.num_classes, canaries=cfg.canaries,
        global_test=global_test)
    return Node(client_id, inputs, fingerprint)


def _simulated_node(cfg: Config, client_id: int) -> Node:
    inputs, fingerprint = simulated_inputs(cfg, client_id)
    return Node(client_id, inputs, fingerprint)
