"""The ClientApp's train handler: decode the server's order, run one client step, encode the reply.

The client's model and privacy counter live in ``context.state`` between rounds
(module globals are shared between virtual nodes in simulation and reset in
deployment), and a copy goes to the node's own storage folder after every round
(``clients/node_checkpoint.py``). Only soft labels leave the node, except in the
FedAvg reference run, where the server's message carries the global weights and
the reply carries the client's. This module loads torch; ``clients/app.py`` imports it on the first
train message.
"""
from __future__ import annotations

import math

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord

from clients.node import StorageFn, load_node, own_state_dir
from clients.node_checkpoint import restore_node_state, save_node_state
from fedkd import protocol
from fedkd.client_step import client_step, new_client_model
from fedkd.config import make_config
from fedkd.model_store import save_client_model
from fedkd.privacy.dp_sgd import DpStep
from fedkd.training import resolve_device


def releases_so_far(context: Context) -> int:
    """Soft-label uploads this node made before: the accountant composes over all of them."""
    return int(context.state["privacy"]["releases"]) if "privacy" in context.state.metric_records else 0


def dp_history_so_far(context: Context) -> tuple[DpStep, ...]:
    """The DP-SGD accountant's history (one entry per round with private steps), kept in the node state."""
    if "dp_sgd" not in context.state.metric_records:
        return ()
    rec = context.state["dp_sgd"]
    return tuple(DpStep(float(s), float(q), int(n))
                 for s, q, n in zip(rec["noise_multiplier"], rec["sample_rate"], rec["steps"]))


def dp_history_record(history: tuple[DpStep, ...]) -> MetricRecord:
    return MetricRecord({"noise_multiplier": [h.noise_multiplier for h in history],
                         "sample_rate": [h.sample_rate for h in history], "steps": [h.steps for h in history]})


def train(msg: Message, context: Context, *, storage: StorageFn = own_state_dir,
          simulated: bool = False) -> Message:
    order = protocol.parse_train_message(msg.content)
    cfg = make_config(order.run_config)
    node = load_node(cfg, context.node_config)
    if order.fingerprint != node.fingerprint:
        raise ValueError(f"transfer set mismatch: server {order.fingerprint}, here {node.fingerprint}; "
                         "the node's copy of the transfer set differs from the server's")
    training = cfg.training
    state_dir = storage(context)
    if state_dir and training.checkpoint and order.round > 1 and "model" not in context.state.array_records:
        restore_node_state(state_dir, node.client_id, order.round - 1, context)

    inputs = node.inputs
    model, model_name = new_client_model(training, node.client_id, inputs.input_shape, inputs.num_classes,
                                         dp_sgd=cfg.privacy.dp_sgd)
    if "model" in context.state.array_records:
        model.load_state_dict(context.state["model"].to_torch_state_dict())
    if order.weights is not None:  # fedavg: start from the global model
        model.load_state_dict(order.weights.to_torch_state_dict())
    device = resolve_device(training.device)
    model.to(device)
    upload = client_step(training, cfg.privacy, inputs, model, round_num=order.round, targets=order.targets,
                         releases=releases_so_far(context), device=device,
                         share_weights=order.weights is not None, simulated=simulated,
                         dp_history=dp_history_so_far(context))
    model.cpu()
    context.state["model"] = ArrayRecord(model.state_dict())
    if cfg.privacy.swing:
        context.state["privacy"] = MetricRecord({"releases": upload.releases})
    if upload.dp_history:
        context.state["dp_sgd"] = dp_history_record(upload.dp_history)
    if state_dir and training.save_models and order.round == training.rounds:
        save_client_model(state_dir / "model.pt", model_name, model, dp_compatible=cfg.privacy.dp_sgd)

    metrics = {k: v for k, v in upload.metrics.items() if math.isfinite(v) or k in ("epsilon", "training_epsilon")}
    histogram = (np.bincount(inputs.train_y, minlength=inputs.num_classes).tolist()
                 if training.record_label_histograms else None)  # opt-in disclosure only
    content = protocol.build_reply_content(
        round_num=order.round, fingerprint=order.fingerprint, partition_id=node.client_id, model=model_name,
        num_examples=upload.num_examples, metrics=metrics, soft_labels=upload.soft_labels,
        weights=ArrayRecord(model.state_dict()) if order.weights is not None else None,
        wire_format=cfg.wire, label_histogram=histogram)
    if state_dir and training.checkpoint:
        save_node_state(state_dir, node.client_id, order.round, context)
    return Message(content=content, reply_to=msg)
