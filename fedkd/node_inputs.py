"""A node's round inputs from its data source: the same assembly for simulated and real nodes.

Whatever the node's private data came from (a simulated partition or its own
files, ``fedkd.data.node_data``), the client step sees one :class:`ClientInputs`:
the private data with the canaries planted when this client owns them, the
local test set, the public transfer set as the run uses it, and an optional
public labelled global test set. Nothing here needs torch: a simulation's driver reads a node's inputs'
shapes without loading it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedkd.data.conflict import client_view, conflict_groups
from fedkd.data.node_data import NodeData
from fedkd.privacy.canaries import CanarySet
from fedkd.privacy.canary_plan import canary_set, plant_if_owner, transfer_with_canaries
from fedkd.data.settings import ConflictSettings
from fedkd.privacy.settings import CanarySettings


@dataclass(frozen=True)
class ClientInputs:
    """What a client trains and evaluates on, however it got it (a simulated partition or its own files).

    train_x/train_y already hold the canaries when this client owns them; transfer_x is the public
    transfer set as the run uses it (with the canary images when they are put in it).
    """

    client_id: int
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    transfer_x: np.ndarray
    input_shape: tuple[int, int, int]
    num_classes: int
    global_test_x: np.ndarray | None = None
    global_test_y: np.ndarray | None = None
    canaries: CanarySet | None = None


def assemble_inputs(client_id: int, data: NodeData, *, transfer_x: np.ndarray, transfer_fingerprint: str | None,
                    input_shape, num_classes: int, canaries: CanarySettings,
                    global_test: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[ClientInputs, str]:
    """(the node's inputs, the fingerprint of the transfer set as the run uses it)."""
    planted = canary_set(canaries, input_shape, num_classes)
    transfer, fingerprint = transfer_with_canaries(canaries, planted, transfer_x, transfer_fingerprint)
    train_x, train_y = plant_if_owner(canaries, planted, client_id, data.train_x, data.train_y)
    inputs = ClientInputs(
        client_id=client_id, train_x=train_x, train_y=train_y, test_x=data.test_x, test_y=data.test_y,
        transfer_x=transfer, input_shape=tuple(input_shape), num_classes=num_classes,
        global_test_x=None if global_test is None else global_test[0],
        global_test_y=None if global_test is None else global_test[1], canaries=planted)
    return inputs, fingerprint


def conflict_view(conflict: ConflictSettings, client_id: int, num_clients: int, num_classes: int, data: NodeData,
                  global_test: tuple[np.ndarray, np.ndarray]) -> tuple[NodeData, tuple[np.ndarray, np.ndarray]]:
    """The knowledge-conflict benchmark: a client of group g sees its private data, its local test set and
    (under label permutation) the global test set through its group's relabelling or rotation; the
    transfer set stays untouched."""
    group = int(conflict_groups(num_clients, conflict.groups)[client_id])

    def view(split, x, y):
        return client_view(conflict.kind, group, split, x, y, seed=conflict.seed, num_classes=num_classes)

    train_x, train_y = view("train", data.train_x, data.train_y)
    test_x, test_y = view("local_test", data.test_x, data.test_y)
    return (NodeData(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, path=data.path),
            view("global_test", *global_test))


def simulated_inputs(cfg, client_id: int) -> tuple[ClientInputs, str]:
    """A simulated node's inputs (its partition of the run's dataset) and the transfer fingerprint: what
    ``clients/node.py`` gives a simulated node, and what the audit replays a client's round 1 with."""
    from fedkd.data import build_federation
    from fedkd.data.node_data import SimulatedSource

    fed = build_federation(cfg.federation)
    data = SimulatedSource(fed, client_id).load()
    global_test = (fed.global_test_x, fed.global_test_y)
    if cfg.conflict.kind != "none":  # the knowledge-conflict benchmark: this client's group sees the task its way
        data, global_test = conflict_view(cfg.conflict, client_id, cfg.run.num_clients, fed.num_classes, data,
                                          global_test)
    return assemble_inputs(
        client_id, data, transfer_x=fed.transfer_x, transfer_fingerprint=fed.transfer_fingerprint,
        input_shape=fed.input_shape, num_classes=fed.num_classes, canaries=cfg.canaries, global_test=global_test)
