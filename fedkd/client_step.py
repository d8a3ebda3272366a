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

from fedkd.privacy.canary_plan import measure_exposure
from fedkd.privacy.dp_sgd import (DpStep, dp_generators, make_dp_compatible, noise_multiplier_for,
                                  train_private, training_epsilon)
from fedkd.privacy.release import epsilon_after, release
from fedkd.node_inputs import ClientInputs
from fedkd.seeding import derive_seed
from fedkd.privacy.settings import PrivacySettings
from fedkd.settings import TrainingSettings
from fedkd.training import distill, evaluate_accuracy, predict_logits, train_joint, train_supervised


@dataclass
class Upload:
    """What one client step produces: the soft labels to send (None when weights are shared), the
    number of private training examples, the client's metrics, how many releases were accounted and
    the DP-SGD accountant's history (one entry per round with private steps; empty without DP-SGD)."""

    soft_labels: np.ndarray | None
    num_examples: int
    metrics: dict[str, float]
    releases: int
    dp_history: tuple[DpStep, ...] = ()


@dataclass(frozen=True)
class DpRound:
    """DP-SGD in this round's private training: clip, noise multiplier, (sampling, noise) generators."""

    clip: float
    noise_multiplier: float
    generators: tuple[torch.Generator, torch.Generator]


def new_client_model(training: TrainingSettings, client_id: int, input_shape, num_classes: int, *,
                     dp_sgd: bool = False) -> tuple[torch.nn.Module, str]:
    """The client's architecture (``models`` cycled over clients), seeded per client; with ``dp_sgd``
    made DP-compatible (BatchNorm -> GroupNorm, Opacus' fix)."""
    from fedkd.models import build_model, model_for_client

    name = model_for_client(list(training.models), client_id)
    seed = derive_seed(training.seed, "init", client_id)
    model = build_model(name, tuple(input_shape), num_classes, seed=seed)
    return (make_dp_compatible(model) if dp_sgd else model), name


def client_step(training: TrainingSettings, privacy: PrivacySettings, inputs: ClientInputs,
                model: torch.nn.Module, *, round_num: int, targets: np.ndarray | None, releases: int,
                device: torch.device, share_weights: bool = False, simulated: bool = True,
                dp_history: tuple[DpStep, ...] = ()) -> Upload:
    """Train ``model`` in place for one round and say what the client uploads.

    releases: soft-label uploads this client made before (the accountant composes over all of them).
    share_weights: FedAvg's reference run; the caller sends the model's weights, no soft labels.
    simulated: whether this runs in a simulation (swing's and DP-SGD's noise source depends on it).
    dp_history: with ``privacy.dp_sgd``, the accountant's history of the rounds before (node state).
    """
    dp_round = None
    if privacy.dp_sgd:
        sigma = noise_multiplier_for(privacy, len(inputs.train_y), training.batch_size, training.revisit_epochs)
        dp_round = DpRound(privacy.dp_clip, sigma, dp_generators(privacy.noise_seed, privacy.seed, inputs.client_id,
                                                                 round_num, simulated=simulated, device=device))
    logits, metrics, steps = local_round(training, inputs, model, round_num=round_num, targets=targets,
                                         device=device, dp=dp_round)
    if dp_round is not None:
        dp_history = (*dp_history, *steps)
        metrics["training_epsilon"] = training_epsilon(dp_history, privacy.delta)
        metrics["dp_noise_multiplier"] = dp_round.noise_multiplier
    num_examples = len(inputs.train_y)
    if share_weights:
        return Upload(None, num_examples, metrics, releases, dp_history)
    soft, privacy_metrics = release(privacy, training.temperature, logits, targets, inputs.client_id, round_num,
                                    simulated=simulated)
    metrics.update(privacy_metrics)
    if privacy.swing:
        releases += 1
        metrics["epsilon"] = epsilon_after(privacy, releases)
    return Upload(soft, num_examples, metrics, releases, dp_history)


def local_round(training: TrainingSettings, inputs: ClientInputs, model: torch.nn.Module, *, round_num: int,
                targets: np.ndarray | None, device: torch.device, dp: DpRound | None = None
                ) -> tuple[np.ndarray, dict, list[DpStep]]:
    """Run digest/revisit in the configured order; return (logits on the transfer set (M, C), metrics,
    the DP-SGD steps taken on private data: empty without ``dp``).

    Metrics: ``acc_local``/``acc_global`` after the round, ``acc_local_after_digest``
    and ``acc_local_after_revisit`` after each step, and the step losses. With ``dp`` every pass over
    private data is DP-SGD; distillation on the public transfer set stays a plain step.
    """
    metrics: dict[str, float] = {}
    common = dict(batch_size=training.batch_size, lr=training.lr, device=device)
    dp_steps: list[DpStep] = []

    def private(seed: int, public: tuple | None = None) -> dict:
        """Training on private data: plain (CE, or CE + distillation in one step) or DP-SGD."""
        if dp is None:
            if public is None:
                return train_supervised(model, inputs.train_x, inputs.train_y, epochs=training.revisit_epochs,
                                        seed=seed, **common)
            return train_joint(model, inputs.train_x, inputs.train_y, public[0], public[1],
                               temperature=public[2], distill_weight=public[3], epochs=training.revisit_epochs,
                               seed=seed, **common)
        out = train_private(model, inputs.train_x, inputs.train_y, clip=dp.clip,
                            noise_multiplier=dp.noise_multiplier, epochs=training.revisit_epochs,
                            generators=dp.generators, public=public, **common)
        dp_steps.append(DpStep(dp.noise_multiplier, out["sample_rate"], out["steps"]))
        return out

    if training.order == "joint":
        seed = derive_seed(training.seed, "joint", inputs.client_id, round_num)
        if targets is None or training.distill_weight == 0:
            out = private(seed)
        else:
            out = private(seed, (inputs.transfer_x, targets, training.temperature, training.distill_weight))
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
                out = private(seed)
                metrics["revisit_loss"] = out["loss"]
            metrics[f"acc_local_after_{step}"] = evaluate_accuracy(model, inputs.test_x, inputs.test_y,
                                                                   device=device)
    metrics["acc_local"] = evaluate_accuracy(model, inputs.test_x, inputs.test_y, device=device)
    if inputs.global_test_x is not None:
        metrics["acc_global"] = evaluate_accuracy(model, inputs.global_test_x, inputs.global_test_y, device=device)
    metrics.update(measure_exposure(inputs.canaries, model, device))
    return predict_logits(model, inputs.transfer_x, device=device), metrics, dp_steps
