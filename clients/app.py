"""Flower ClientApp: one handler that moves records around ``fedkd.client_round``.

The client's model lives in ``context.state`` between rounds (module globals
are shared between virtual nodes in simulation and reset in deployment), and
only soft labels leave the node, except in the FedAvg reference run.
"""
from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.clientapp import ClientApp

from clients.node_checkpoint import restore_node_state, save_node_state
from fedkd import adversary, protocol
from fedkd.client_round import local_round, new_client_model
from fedkd.config import federation_spec, make_config
from fedkd.data import build_federation
from fedkd.model_store import save_client_model
from fedkd.privacy.canary_plan import transfer_inputs
from fedkd.privacy.release import epsilon_after, release
from fedkd.training import resolve_device
from fedkd.wire import WireFormat

log = logging.getLogger("fedkd.client")
app = ClientApp()


def partition_id_of(context: Context) -> int:
    try:
        return int(context.node_config["partition-id"])
    except KeyError:
        raise ValueError("this SuperNode has no 'partition-id' in its --node-config") from None


def count_release(context: Context) -> int:
    """One more upload of soft labels: the accountant composes over all of them."""
    done = int(context.state["privacy"]["releases"]) if "privacy" in context.state.metric_records else 0
    context.state["privacy"] = MetricRecord({"releases": done + 1})
    return done + 1


@app.train()
def train(msg: Message, context: Context) -> Message:
    order = protocol.parse_train_message(msg.content)
    cfg = make_config(order.run_config)
    federation = build_federation(federation_spec(cfg))
    _, local_fingerprint = transfer_inputs(cfg, federation)
    if order.fingerprint != local_fingerprint:
        raise ValueError(f"transfer set mismatch: server {order.fingerprint}, "
                         f"here {local_fingerprint}; the node's data differs from the server's")
    pid = partition_id_of(context)
    client = federation.clients[pid]
    device = resolve_device(cfg["device"])

    # node-side checkpoint: a fresh process (crash, resumed run) picks up this node's last state from disk
    node_checkpoints = Path(cfg["out"]) / "node_checkpoints" if cfg["server.checkpoint"] and cfg["out"] else None
    if node_checkpoints and order.round > 1 and "model" not in context.state.array_records:
        restore_node_state(node_checkpoints, pid, order.round - 1, context)

    model, model_name = new_client_model(cfg, pid, federation)
    if "model" in context.state.array_records:
        model.load_state_dict(context.state["model"].to_torch_state_dict())
    if order.weights is not None:  # fedavg: start from the global model
        model.load_state_dict(order.weights.to_torch_state_dict())
    model.to(device)

    logits, metrics = local_round(cfg, client, federation, model, round_num=order.round,
                                  targets=order.targets, device=device)
    model.cpu()
    context.state["model"] = ArrayRecord(model.state_dict())
    if cfg["save_models"] and cfg["out"] and order.round == cfg["rounds"]:
        save_client_model(Path(cfg["out"]) / "models", pid, model_name, model)

    common = dict(round_num=order.round, fingerprint=order.fingerprint, partition_id=pid,
                  model=model_name, num_examples=len(client.train_y), metrics=metrics,
                  wire_format=WireFormat.from_config(cfg))
    if cfg["algorithm"] == "fedavg":
        content = protocol.build_reply_content(weights=ArrayRecord(model.state_dict()), **common)
    else:
        soft, privacy_metrics = release(cfg, logits, order.targets, pid, order.round)
        metrics.update(privacy_metrics)
        if cfg["privacy.swing"]:
            metrics["epsilon"] = epsilon_after(cfg, count_release(context))
        soft = adversary.poisoned_soft_labels(cfg, pid, order.round, soft)  # attack.kind (robustness runs)
        fields = adversary.malformed_reply(cfg, pid, order.round, dict(common, soft_labels=soft))  # attack.malformed
        content = protocol.build_reply_content(**fields)
    if node_checkpoints:
        save_node_state(node_checkpoints, pid, order.round, context)
    return Message(content=content, reply_to=msg)


@app.query()
def identify(msg: Message, context: Context) -> Message:
    """Say which partition this node holds: a resumed server no longer knows the (new) node ids."""
    return Message(content=protocol.build_identify_reply(partition_id_of(context)), reply_to=msg)
