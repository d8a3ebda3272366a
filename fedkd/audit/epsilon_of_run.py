"""The one-run ε audit of a finished run's client, plain and with swing, for audit.json.

Replays the audited client (the run's canary owner) with fresh canaries of random inclusion
(:mod:`fedkd.audit.empirical_epsilon`) and sets the lower bound beside two accounted values:

- ``accounted`` -- the run's own ε (summary.json), which covers one transfer row's answer
  (per-sample output privacy), *not* a training example: it does not cover the canaries;
- ``accounted_training_set`` -- the same noise accounted for a training example that may change
  every uploaded row (sensitivity of all rows), which does cover them. The lower bound of a
  correct audit cannot exceed it.
"""
from __future__ import annotations

import numpy as np

from fedkd.seeding import derive_seed

from .artifacts import RunArtifacts
from .empirical_epsilon import empirical_epsilon, replay_scores
from .attacks import PrivacyAttack, register_attack

__all__ = ["audit_empirical_epsilon_of_run"]


def audit_empirical_epsilon_of_run(art: RunArtifacts, settings, log) -> dict:
    from fedkd.models import build_model
    from fedkd.privacy.canaries import make_canaries

    cfg, fed = art.cfg, art.federation
    cid = int(cfg.canaries.client) if int(cfg.canaries.client) < len(fed.clients) else 0
    arch = list(cfg.training.models)[cid % len(cfg.training.models)]
    m = int(settings.one_run_canaries)
    seed = derive_seed(settings.seed, "one-run", cid)
    cand_x, cand_y = make_canaries(m, fed.input_shape, fed.num_classes, seed)
    included = np.random.default_rng(seed).random(m) < 0.5
    client = fed.clients[cid]
    rounds = int(cfg.run.rounds)
    epochs = max(1, int(cfg.training.revisit_epochs))
    releases = {"plain": lambda z, r: art.upload(z, None, cid, r, swing=False),
                "swing": lambda z, r: art.upload(z, None, cid, r, swing=True)}
    log(f"one-run epsilon audit: client {cid} ({arch}) replayed with {m} canaries of random inclusion "
        f"({int(included.sum())} included), {rounds} rounds x {epochs} epochs")
    scores = replay_scores(
        lambda: build_model(arch, fed.input_shape, fed.num_classes, seed=derive_seed(cfg.run.seed, "init", cid)),
        client.train_x, client.train_y, np.array(fed.transfer_x), cand_x, cand_y, included,
        repeats=int(cfg.canaries.repeats), rounds=rounds, epochs_per_round=epochs, releases=releases,
        batch_size=int(cfg.training.batch_size), lr=float(cfg.training.lr), seed=seed, device=settings.device)
    delta = float(cfg.privacy.delta)
    audits = empirical_epsilon(scores, included, delta=delta)
    rows = len(fed.transfer_x) + m
    as_run = "swing" if cfg.privacy.swing else "plain"
    variants = {
        "plain": {**audits["plain"], "accounted": None, "accounted_training_set": None},
        "swing": {**audits["swing"], "accounted_training_set": art.epsilon_for_rows(rows, swing=True),
                  "noise_scale": art.release_config(True)["privacy.noise_scale"]},
    }
    if as_run == "swing":
        variants["swing"]["accounted"] = art.accounted_epsilon()
    else:
        variants["swing"]["accounted"] = art.epsilon_for_rows(1, swing=True)
    for name, v in variants.items():
        log(f"one-run epsilon ({name} uploads): lower bound {v['lower_bound']:.2f} at 95 % "
            f"({v['correct']}/{v['guesses']} guesses right), accounted {v['accounted']}")
    head = variants[as_run]
    return {
        "lower_bound": head["lower_bound"],
        "accounted": head["accounted"],
        "accounted_training_set": head["accounted_training_set"],
        "canaries": m,
        "included": int(included.sum()),
        "guesses": head["guesses"],
        "correct": head["correct"],
        "confidence": head["confidence"],
        "delta": delta,
        "as_run": as_run,
        "client": cid,
        "architecture": arch,
        "variants": variants,
        "score": "sum over rounds of log upload[canary, its secret label]",
        "replay": (f"client {cid}'s local training replayed ({rounds} rounds x {epochs} epochs, no distillation) "
                   f"with each of {m} random-pattern canaries planted ({int(cfg.canaries.repeats)} copies) with "
                   "probability 1/2; all canary images in the transfer set"),
        "accounted_means": ("accounted: the run's epsilon, per transfer-row answer (does not cover a training "
                            "example); accounted_training_set: the same noise when one example may change every "
                            "uploaded row (covers the canaries)"),
    }


def _empirical_epsilon_attack(ctx) -> dict:
    with ctx.clock.stage("empirical epsilon (one-run audit)"):
        return audit_empirical_epsilon_of_run(ctx.art, ctx.settings, ctx.log)


register_attack(PrivacyAttack(
    "empirical_epsilon", "One-run empirical epsilon", _empirical_epsilon_attack, needs=("models",),
    enabled=lambda s: s.one_run_canaries > 0,
    description="A lower bound on epsilon from one training run with random canaries (Steinke, Nasr and "
                "Jagielski, NeurIPS 2023)."))
