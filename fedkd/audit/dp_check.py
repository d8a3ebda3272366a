"""The audit as a check of DP-SGD's guarantee: empirical lower bound <= accounted epsilon.

For a run whose clients trained with DP-SGD, the one-run audit (Steinke, Nasr and Jagielski,
NeurIPS 2023; :mod:`fedkd.audit.one_run`) replays the canary client's private training *as the
run did it* -- its architecture made DP-compatible, its clip, the noise multiplier it reported,
Poisson sampling, ``rounds x revisit_epochs`` epochs -- with m fresh random-pattern canaries,
each planted **once** with probability 1/2 (DP-SGD protects one example; a canary planted r
times would be a group of r, whose epsilon is larger). After every round the server's view is
the client's upload, softmax(logits / T) on the transfer set holding all canary images; the
score of a canary is the log probability its uploads gave its secret label, summed over rounds.

The same steps are accounted with the run's accountant (:func:`fedkd.privacy.dp_sgd.training_epsilon`).
If the implementation is right, the 95 % lower bound cannot exceed that epsilon (up to the 5 %
the confidence allows); a bound above it means noise not applied, a sampling rate or a step
count wrong. ``trainer`` is the DP training function, a parameter so that a test can hand in
a deliberately broken one (noise off while the accountant still counts it) and see the check fail.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedkd.seeding import derive_seed

from ._common import check_pair
from .attacks import PrivacyAttack, register_attack
from .one_run import one_run_audit

__all__ = ["dp_replay_check", "audit_dp_check_of_run", "DP_CHECK"]


def dp_replay_check(model_fn: Callable[[], object], train_x, train_y, transfer_x, cand_x, cand_y,
                    included: np.ndarray, *, clip: float, noise_multiplier: float, rounds: int,
                    epochs_per_round: int, batch_size: int, lr: float, temperature: float, delta: float,
                    seed: int, device="cpu", trainer: Callable | None = None) -> dict:
    """Replay DP-SGD training with the included candidates planted once; audit and account it.

    Returns ``accounted_epsilon`` (the replay's steps in Opacus' RDP accountant),
    ``empirical_lower_bound`` (95 % one-run bound), ``passed`` (bound <= accounted) and the
    audit's details.
    """
    from fedkd.privacy.canaries import plant
    from fedkd.privacy.dp_sgd import DpStep, dp_generators, make_dp_compatible, train_private, training_epsilon
    from fedkd.probability import softmax
    from fedkd.training import predict_logits, resolve_device

    trainer = trainer or train_private
    train_x, train_y = check_pair(train_x, train_y)
    cand_x, cand_y = check_pair(cand_x, cand_y, x_name="cand_x", y_name="cand_y")
    included = np.asarray(included, bool)
    x, y = plant(train_x, train_y, cand_x[included], cand_y[included], 1) if included.any() else (train_x, train_y)
    queries = np.concatenate([np.asarray(transfer_x, np.float32), cand_x])
    rows = np.arange(len(transfer_x), len(queries))
    dev = resolve_device(device)
    model = make_dp_compatible(model_fn())
    scores = np.zeros(len(cand_x))
    history: list[DpStep] = []
    for r in range(1, rounds + 1):
        gens = dp_generators("derived", seed, 0, r, simulated=True, device=dev)
        out = trainer(model, x, y, clip=clip, noise_multiplier=noise_multiplier, epochs=epochs_per_round,
                      batch_size=batch_size, lr=lr, device=dev, generators=gens)
        history.append(DpStep(noise_multiplier, out["sample_rate"], out["steps"]))
        logits = np.asarray(predict_logits(model, queries, device=dev), np.float64)
        soft = softmax(logits, temperature)[rows]
        scores += np.log(np.clip(soft[np.arange(len(cand_y)), cand_y], 1e-12, 1.0))
    accounted = training_epsilon(history, delta)
    audit = one_run_audit(scores, included, delta=delta)
    return {"accounted_epsilon": float(accounted), "empirical_lower_bound": float(audit["lower_bound"]),
            "passed": bool(audit["lower_bound"] <= accounted), "canaries": audit["canaries"],
            "included": audit["included"], "guesses": audit["guesses"], "correct": audit["correct"],
            "confidence": audit["confidence"], "delta": float(delta), "noise_multiplier": float(noise_multiplier),
            "clip": float(clip), "sample_rate": history[-1].sample_rate if history else None,
            "steps": int(sum(h.steps for h in history))}


def _run_noise_multiplier(art, cid: int) -> float | None:
    """The noise multiplier the client reported in its last round (what it actually used)."""
    for record in reversed(art.rounds):
        value = (record.get("dp_noise_multiplier_per_client") or {}).get(str(cid))
        if value is not None:
            return float(value)
    return None


def audit_dp_check_of_run(art, settings, log) -> dict | None:
    """``audit.json["dp_check"]`` for a DP-SGD run (None when the run did not train with DP-SGD)."""
    from fedkd.models import build_model
    from fedkd.privacy.canaries import make_canaries

    privacy = art.summary.get("privacy") or {}
    if privacy.get("training_epsilon") is None or not settings.one_run_canaries:
        return None
    cfg, fed = art.cfg, art.federation
    cid = int(cfg.canaries.client) if int(cfg.canaries.client) < len(fed.clients) else 0
    sigma = _run_noise_multiplier(art, cid)
    if sigma is None:
        return None
    arch = list(cfg.training.models)[cid % len(cfg.training.models)]
    m = int(settings.one_run_canaries)
    seed = derive_seed(settings.seed, "dp-check", cid)
    cand_x, cand_y = make_canaries(m, fed.input_shape, fed.num_classes, seed)
    included = np.random.default_rng(seed).random(m) < 0.5
    client = fed.clients[cid]
    rounds, epochs = int(cfg.run.rounds), int(cfg.training.revisit_epochs)
    log(f"DP check: client {cid} ({arch}) replayed with DP-SGD (noise multiplier {sigma:.3f}, clip "
        f"{cfg.privacy.dp_clip}) and {m} canaries planted once with probability 1/2")
    result = dp_replay_check(
        lambda: build_model(arch, fed.input_shape, fed.num_classes, seed=derive_seed(cfg.run.seed, "init", cid)),
        client.train_x, client.train_y, np.array(fed.transfer_x), cand_x, cand_y, included,
        clip=float(cfg.privacy.dp_clip), noise_multiplier=sigma, rounds=rounds, epochs_per_round=epochs,
        batch_size=int(cfg.training.batch_size), lr=float(cfg.training.lr), temperature=float(cfg.training.temperature),
        delta=float(cfg.privacy.delta), seed=seed, device=settings.device)
    log(f"DP check: empirical lower bound {result['empirical_lower_bound']:.2f} vs accounted "
        f"{result['accounted_epsilon']:.2f}: {'passed' if result['passed'] else 'FAILED'}")
    return {**result, "client": cid, "architecture": arch,
            "run_training_epsilon": float(privacy["training_epsilon"]),
            "replay": (f"client {cid}'s DP-SGD training replayed ({rounds} rounds x {epochs} epochs, its noise "
                       f"multiplier and clip) with {m} random-pattern canaries, each planted once with "
                       "probability 1/2; score: sum over rounds of log upload[canary, its secret label]")}


def _dp_check_attack(ctx) -> dict | None:
    with ctx.clock.stage("DP check (one-run audit of DP-SGD)"):
        return audit_dp_check_of_run(ctx.art, ctx.settings, ctx.log)


DP_CHECK = register_attack(PrivacyAttack(
    "dp_check", "DP check: empirical lower bound <= accounted epsilon", _dp_check_attack, needs=("models", "rounds"),
    enabled=lambda s: s.one_run_canaries > 0,
    summary=lambda r: (f"{'passed' if r['passed'] else 'FAILED'}: empirical lower bound "
                       f"{r['empirical_lower_bound']:.2f} vs accounted {r['accounted_epsilon']:.2f}"),
    description="For a DP-SGD run: the canary client's DP-SGD training replayed with canaries of random "
                "inclusion, each planted once; the one-run lower bound must not exceed the accounted epsilon "
                "of the same steps."))
