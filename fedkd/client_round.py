"""One client's work in one round (DESIGN §2), in plain PyTorch.

digest (distil toward the server's targets on the transfer set), revisit
(cross-entropy on private data), evaluate (local and global test sets), then
predict soft labels on the transfer set. The ClientApp only moves records
around this function.
"""
from __future__ import annotations

import numpy as np
import torch

from fedkd.privacy.canary_plan import measure_exposure, private_training_data, transfer_inputs
from fedkd.seeding import derive_seed
from fedkd.training import distill, evaluate_accuracy, predict_logits, train_joint, train_supervised


def new_client_model(cfg, client_id: int, federation) -> tuple[torch.nn.Module, str]:
    """The client's architecture (``models`` cycled over clients), seeded per client."""
    from fedkd.models import build_model, model_for_client

    name = model_for_client(cfg["models"], client_id)
    seed = derive_seed(cfg["seed"], "init", client_id)
    return build_model(name, federation.input_shape, federation.num_classes, seed=seed), name


def local_round(cfg, client, federation, model: torch.nn.Module, *, round_num: int,
                targets: np.ndarray | None, device: torch.device) -> tuple[np.ndarray, dict]:
    """Run digest/revisit in the configured order; return (logits on X_t (M, C), metrics).

    Metrics: ``acc_local``/``acc_global`` after the round, ``acc_local_after_digest``
    and ``acc_local_after_revisit`` after each step, and the step losses.
    """
    metrics: dict[str, float] = {}
    common = dict(batch_size=cfg["batch_size"], lr=cfg["lr"], device=device)
    transfer_x, _ = transfer_inputs(cfg, federation)
    train_x, train_y = private_training_data(cfg, federation, client)
    if cfg["order"] == "joint":
        return _joint_round(cfg, client, federation, model, round_num, targets, device,
                            transfer_x, train_x, train_y, metrics, common)
    steps = cfg["order"].split("-")
    for step in steps:
        seed = derive_seed(cfg["seed"], step, client.client_id, round_num)
        if step == "digest":
            if targets is None or cfg["digest_epochs"] == 0:
                continue
            out = distill(model, transfer_x, targets, temperature=cfg["temperature"],
                          epochs=cfg["digest_epochs"], seed=seed, **common)
            metrics["digest_loss"] = out["loss"]
        else:
            out = train_supervised(model, train_x, train_y,
                                   epochs=cfg["revisit_epochs"], seed=seed, **common)
            metrics["revisit_loss"] = out["loss"]
        metrics[f"acc_local_after_{step}"] = evaluate_accuracy(model, client.test_x, client.test_y, device=device)
    return _finish_round(cfg, client, federation, model, device, transfer_x, metrics)


def _joint_round(cfg, client, federation, model, round_num, targets, device, transfer_x, train_x, train_y,
                 metrics, common):
    """order=joint: one training phase with both losses (plain CE while there are no targets)."""
    seed = derive_seed(cfg["seed"], "joint", client.client_id, round_num)
    if targets is None or cfg["distill_weight"] == 0:
        out = train_supervised(model, train_x, train_y, epochs=cfg["revisit_epochs"], seed=seed, **common)
    else:
        out = train_joint(model, train_x, train_y, transfer_x, targets, temperature=cfg["temperature"],
                          distill_weight=cfg["distill_weight"], epochs=cfg["revisit_epochs"], seed=seed,
                          **common)
    metrics["joint_loss"] = out["loss"]
    return _finish_round(cfg, client, federation, model, device, transfer_x, metrics)


def _finish_round(cfg, client, federation, model, device, transfer_x, metrics):
    """Evaluate (local and global test sets, canaries) and predict on the transfer set."""
    metrics["acc_local"] = evaluate_accuracy(model, client.test_x, client.test_y, device=device)
    metrics["acc_global"] = evaluate_accuracy(model, federation.global_test_x, federation.global_test_y,
                                              device=device)
    metrics.update(measure_exposure(cfg, federation, model, device))
    logits = predict_logits(model, transfer_x, device=device)
    return logits, metrics

