"""One client's work in one round, in plain PyTorch: the client half of every algorithm.

``client_step`` is called by the ClientApp (simulated and real nodes alike) and by
every benchmark: local round (digest toward the server's targets on the transfer
set, revisit on private data, or both jointly), evaluation, then the upload --
plain or swing-protected soft labels, with the privacy spent so far. Nothing here
knows Flower; ``clients/app.py`` only decodes the message, calls this and encodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedkd.privacy.canaries import CanarySet
from fedkd.privacy.canary_plan import measure_exposure
from fedkd.privacy.release import epsilon_after, release
from fedkd.seeding import derive_seed
from fedkd.privacy.settings import PrivacySettings
from fedkd.settings import TrainingSettings
from fedkd.training import distill, evaluate_accuracy, predict_logits, train_joint, train_supervised


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


@dataclass
class Upload:
    """What one client step produces: the soft labels to send (None when weights are shared), the
    number of private training examples, the client's metrics and how many releases were accounted."""

    soft_labels: np.ndarray | None
    num_examples: int
    metrics: dict[str, float]
    releases: int


def new_client_model(training: TrainingSettings, client_id: int, input_shape, num_classes: int
                     ) -> tuple[torch.nn.Module, str]:
    """The client's architecture (``models`` cycled over clients), seeded per client."""
    from fedkd.models import build_model, model_for_client

    name = model_for_client(list(training.models), client_id)
    seed = derive_seed(training.seed, "init", client_id)
    return build_model(name, tuple(input_shape), num_classes, seed=seed), name


def client_step(training: TrainingSettings, privacy: PrivacySettings, inputs: ClientInputs,
                model: torch.nn.Module, *, round_num: int, targets: np.ndarray | None, releases: int,
                device: torch.device, share_weights: bool = False, simulated: bool = True) -> Upload:
    """Train ``model`` in place for one round and say what the client uploads.

    releases: soft-label uploads this client made before (the accountant composes over all of them).
    share_weights: FedAvg's reference run; the caller sends the model's weights, no soft labels.
    simulated: whether this runs in a simulation (swing's noise source depends on it).
    """
    logits, metrics = local_round(training, inputs, model, round_num=round_num, targets=targets, device=device)
    num_examples = len(inputs.train_y)
    if share_weights:
        return Upload(None, num_examples, metrics, releases)
    soft, privacy_metrics = release(privacy, training.temperature, logits, targets, inputs.client_id, round_num,
                                    simulated=simulated)
    metrics.update(privacy_metrics)
    if privacy.swing:
        releases += 1
        metrics["epsilon"] = epsilon_after(privacy, releases)
    return Upload(soft, num_examples, metrics, releases)


def local_round(training: TrainingSettings, inputs: ClientInputs, model: torch.nn.Module, *, round_num: int,
                targets: np.ndarray | None, device: torch.device) -> tuple[np.ndarray, dict]:
    """Run digest/revisit in the configured order; return (logits on the transfer set (M, C), metrics).

    Metrics: ``acc_local``/``acc_global`` after the round, ``acc_local_after_digest``
    and ``acc_local_after_revisit`` after each step, and the step losses.
    """
    metrics: dict[str, float] = {}
    common = dict(batch_size=training.batch_size, lr=training.lr, device=device)
    if training.order == "joint":
        seed = derive_seed(training.seed, "joint", inputs.client_id, round_num)
        if targets is None or training.distill_weight == 0:
            out = train_supervised(model, inputs.train_x, inputs.train_y, epochs=training.revisit_epochs,
                                   seed=seed, **common)
        else:
            out = train_joint(model, inputs.train_x, inputs.train_y, inputs.transfer_x, targets,
                              temperature=training.temperature, distill_weight=training.distill_weight,
                              epochs=training.revisit_epochs, seed=seed, **common)
            metrics["distilled"] = 1.0  # distilled toward the server's targets in the same steps
        metrics["joint_loss"] = out["loss"]
    else:
        for step in training.order.split("-"):
            seed = derive_seed(training.seed, step, inputs.client_id, round_num)
            if step == "digest":
                if targets is None or training.digest_epochs == 0:
                    continue
                out = distill(model, inputs.transfer_x, targets, temperature=training.temperature,
                              epochs=training.digest_epochs, seed=seed, **common)
                metrics["digest_loss"] = out["loss"]
            else:
                out = train_supervised(model, inputs.train_x, inputs.train_y, epochs=training.revisit_epochs,
                                       seed=seed, **common)
                metrics["revisit_loss"] = out["loss"]
            metrics[f"acc_local_after_{step}"] = evaluate_accuracy(model, inputs.test_x, inputs.test_y,
                                                                   device=device)
    metrics["acc_local"] = evaluate_accuracy(model, inputs.test_x, inputs.test_y, device=device)
    if inputs.global_test_x is not None:
        metrics["acc_global"] = evaluate_accuracy(model, inputs.global_test_x, inputs.global_test_y, device=device)
    metrics.update(measure_exposure(inputs.canaries, model, device))
    return predict_logits(model, inputs.transfer_x, device=device), metrics
