"""An empirical ε for a client's uploads: one-run auditing with canaries of random inclusion.

The run's own canaries are all planted, so they cannot give an ε lower bound: one-run auditing
(:mod:`fedkd.audit.one_run`) needs every candidate included with probability 1/2, independently.
The audit therefore *replays* one client: m fresh random-pattern canaries (random labels, the
construction of ``fedkd.privacy.canaries``) are drawn, each is kept with a fair coin, and the kept
ones are planted (``repeats`` copies each) in the client's private data. The client's model is
trained as in the run (its architecture, seed, batch size, learning rate, ``revisit_epochs`` per
round for ``rounds`` rounds; no distillation, so the canaries can enter only through private
training), and after every round it uploads its soft labels on the transfer set, which holds all
m canary images (the ``canaries.in_transfer`` threat: public inputs the client labels privately).

The auditor (the server) sees only the uploads. Its score for candidate i is the log probability
its uploads gave the candidate's secret label, summed over rounds; it guesses "included" for the
highest scores and "excluded" for the lowest and abstains on the rest. The same trained models
give both the plain uploads and swing-protected ones (the noise does not change local training),
so plain and swing are compared on identical models.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ._common import check_pair
from .one_run import one_run_audit

__all__ = ["replay_scores", "empirical_epsilon"]

Release = Callable[[np.ndarray, int], np.ndarray]  # (logits (M, C), round) -> uploaded soft labels


def replay_scores(model_fn: Callable[[], object], train_x, train_y, transfer_x, cand_x, cand_y,
                  included: np.ndarray, *, repeats: int, rounds: int, epochs_per_round: int,
                  releases: Mapping[str, Release], batch_size: int, lr: float, seed: int,
                  device="cpu") -> dict[str, np.ndarray]:
    """Train one client with the included candidates planted; score every candidate per upload kind.

    Returns ``{release name: (m,) scores}`` with score_i = Σ_rounds log upload[i, y_i].
    """
    from fedkd.privacy.canaries import plant
    from fedkd.training import predict_logits, train_supervised

    train_x, train_y = check_pair(train_x, train_y)
    cand_x, cand_y = check_pair(cand_x, cand_y, x_name="cand_x", y_name="cand_y")
    included = np.asarray(included, bool)
    x, y = (plant(train_x, train_y, cand_x[included], cand_y[included], repeats)
            if included.any() else (train_x, train_y))
    queries = np.concatenate([np.asarray(transfer_x, np.float32), cand_x])
    rows = np.arange(len(transfer_x), len(queries))
    model = model_fn()
    scores = {name: np.zeros(len(cand_x)) for name in releases}
    for r in range(1, rounds + 1):
        train_supervised(model, x, y, epochs=epochs_per_round, batch_size=batch_size, lr=lr,
                         seed=seed + r, device=device)
        logits = np.asarray(predict_logits(model, queries, device=device), np.float64)
        for name, release in releases.items():
            soft = np.asarray(release(logits, r), np.float64)[rows]
            scores[name] += np.log(np.clip(soft[np.arange(len(cand_y)), cand_y], 1e-12, 1.0))
    return scores


def empirical_epsilon(scores: Mapping[str, np.ndarray], included: np.ndarray, *, delta: float,
                      confidence: float = 0.95) -> dict[str, dict]:
    """One-run ε lower bound (:func:`fedkd.audit.one_run.one_run_audit`) for every upload kind."""
    return {name: one_run_audit(s, included, delta=delta, confidence=confidence) for name, s in scores.items()}
