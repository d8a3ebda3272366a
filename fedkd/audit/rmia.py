"""RMIA: the robust membership inference attack, offline, with the audit's reference models.

After Zarifzadeh, Liu, Chang and Shokri, "Low-Cost High-Power Membership Inference Attacks"
(ICML 2024), as implemented in ML Privacy Meter 2.x. For a candidate (x, y) and a target
model θ::

    LR(x, z) = [p(y | x, θ) / p(x)] / [p(y_z | z, θ) / p(z)]
    score(x) = Pr_z[ LR(x, z) > γ ]              z drawn from population (non-member) data

where p(·) is the probability of the true label and p(x) is its *marginal*, estimated from
reference models. Offline (every reference model is OUT for the candidate), the marginal of
an IN/OUT mixture is approximated linearly from the OUT models alone::

    p(x) = (1 + a) / 2 · mean_ref p(y | x, θ_ref) + (1 − a) / 2

``a`` is the one free parameter. It is chosen on the reference models (one plays the target,
the others the references, its own training subset the members), never on the target
(:func:`choose_offline_a`). Comparing with population samples z rather than with a fixed
threshold is what makes RMIA strong with one or two reference models: a sample whose
likelihood ratio beats most population samples' ratios stands out, whatever its difficulty.

Ties: with γ = 1 the score is a monotone function of p(y|x,θ)/p(x), but it saturates at 0 and 1
on small populations, which loses the ordering exactly where TPR at low FPR is read. We break
ties with that ratio (a shift smaller than 1 / #z), which leaves every untied comparison as is.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ._common import as_device, check_pair

__all__ = [
    "DEFAULT_OFFLINE_A",
    "true_label_probs",
    "rmia_scores_from_probs",
    "membership_scores_rmia",
    "choose_offline_a",
]

# Used when a is not tuned (fewer than two reference models); ML Privacy Meter's offline examples
# use values between 0.2 and 0.4 for small image models.
DEFAULT_OFFLINE_A = 0.3
_A_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def true_label_probs(model: torch.nn.Module, x, y, *, device="cpu", batch_size: int = 512) -> np.ndarray:
    """p(y_i | x_i, model) as float64, shape (N,)."""
    from fedkd.training import predict_logits

    x, y = check_pair(x, y)
    logits = np.asarray(predict_logits(model, x, batch_size=batch_size, device=as_device(device)), np.float64)
    if y.max() >= logits.shape[1]:
        raise ValueError(f"y holds label {int(y.max())} but the model outputs only {logits.shape[1]} classes")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return np.exp(log_p[np.arange(len(y)), y])


def _offline_marginal(ref_probs: np.ndarray, a: float) -> np.ndarray:
    """p(x) from OUT reference probabilities (R, N) (NaN = not OUT for that model)."""
    mean_out = np.nanmean(ref_probs, axis=0)
    return (1.0 + a) / 2.0 * mean_out + (1.0 - a) / 2.0


def rmia_scores_from_probs(target_x: np.ndarray, refs_x: np.ndarray, target_z: np.ndarray, refs_z: np.ndarray,
                           *, a: float, gamma: float = 1.0, tie_break: bool = True) -> np.ndarray:
    """RMIA scores from true-label probabilities (the arithmetic, without models).

    Parameters
    ----------
    target_x : (N,) probabilities of the candidates' labels under the target.
    refs_x : (R, N) the same under each reference model (NaN where a reference saw the
        candidate: the offline marginal averages only OUT models).
    target_z, refs_z : (Z,) and (R, Z) the same for the population samples.
    a : offline parameter in [0, 1].
    gamma : likelihood-ratio threshold (1 in the paper's main results).
    tie_break : break ties between equal scores with the candidate's own ratio (see module doc).

    Returns
    -------
    scores : (N,) float64, higher = more likely a member.
    """
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a must lie in [0, 1], got {a!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    target_x, target_z = np.asarray(target_x, np.float64), np.asarray(target_z, np.float64)
    refs_x, refs_z = np.atleast_2d(refs_x), np.atleast_2d(refs_z)
    if np.all(np.isnan(refs_x), axis=0).any() or np.all(np.isnan(refs_z), axis=0).any():
        raise ValueError("every candidate and population sample needs at least one OUT reference probability")
    ratio_x = target_x / _offline_marginal(refs_x, a)
    ratio_z = target_z / _offline_marginal(refs_z, a)
    # Pr_z[ratio_x / ratio_z > gamma] = fraction of z with ratio_z < ratio_x / gamma, by sorting.
    sorted_z = np.sort(ratio_z)
    scores = np.searchsorted(sorted_z, ratio_x / gamma, side="left") / len(sorted_z)
    if tie_break:
        log_ratio = np.log(np.maximum(ratio_x, 1e-300))
        span = np.ptp(log_ratio) or 1.0
        scores = scores + (log_ratio - log_ratio.min()) / span * (0.5 / len(sorted_z))
    return scores


def membership_scores_rmia(model: torch.nn.Module, reference_models: Sequence[torch.nn.Module], x, y,
                           population_x, population_y, *, a: float = DEFAULT_OFFLINE_A, gamma: float = 1.0,
                           device="cpu") -> np.ndarray:
    """Offline RMIA scores of candidates (x, y) against ``model``.

    Parameters
    ----------
    model : the audited model (logits out).
    reference_models : models trained without the candidates (and without the population).
    x, y : candidates, (N, C, H, W) float32 in [0, 1] and (N,) int64.
    population_x, population_y : non-member samples from the same distribution, seen by
        neither the target nor the references (a few hundred are enough).
    a : the offline parameter, chosen with :func:`choose_offline_a`.
    gamma : likelihood-ratio threshold.

    Returns
    -------
    scores : (N,) float64, higher = more likely a member.
    """
    if len(reference_models) == 0:
        raise ValueError("RMIA needs at least one reference model")
    px = true_label_probs(model, x, y, device=device)
    pz = true_label_probs(model, population_x, population_y, device=device)
    rx = np.stack([true_label_probs(m, x, y, device=device) for m in reference_models])
    rz = np.stack([true_label_probs(m, population_x, population_y, device=device) for m in reference_models])
    return rmia_scores_from_probs(px, rx, pz, rz, a=a, gamma=gamma)


def choose_offline_a(reference_models: Sequence[torch.nn.Module], x, y, member_masks: Sequence[np.ndarray],
                     population_x, population_y, *, grid: Sequence[float] = _A_GRID, device="cpu") -> dict:
    """Pick RMIA's offline ``a`` on the reference models alone (the target is never used).

    Each reference model k in turn plays the target: its members are its own training subset
    of (x, y) (``member_masks[k]``), its non-members the rest of (x, y); the other references
    give the OUT probabilities (a sample counts for a reference only where that reference did
    not train on it). The ``a`` with the highest mean AUC over the k is returned.

    Returns
    -------
    dict with ``a`` (the choice), ``auc_by_a`` ({a: mean AUC}) and ``tuned`` (False when fewer
    than two references leave nothing to tune on; ``a`` is then :data:`DEFAULT_OFFLINE_A`).
    """
    models = list(reference_models)
    if len(models) < 2:
        return {"a": DEFAULT_OFFLINE_A, "auc_by_a": {}, "tuned": False}
    x, y = check_pair(x, y)
    masks = [np.asarray(m, bool) for m in member_masks]
    if len(masks) != len(models) or any(m.shape != (len(x),) for m in masks):
        raise ValueError("member_masks must hold one boolean mask over x per reference model")
    probs_x = np.stack([true_label_probs(m, x, y, device=device) for m in models])
    probs_z = np.stack([true_label_probs(m, population_x, population_y, device=device) for m in models])
    aucs: dict[float, list[float]] = {float(a): [] for a in grid}
    for k in range(len(models)):
        others = [j for j in range(len(models)) if j != k]
        out = probs_x[others].copy()
        for row, j in enumerate(others):
            out[row, masks[j]] = np.nan  # reference j trained on these: not OUT for it
        usable = ~np.all(np.isnan(out), axis=0)
        truth = masks[k][usable]
        if truth.all() or not truth.any():
            continue
        for a in aucs:
            s = rmia_scores_from_probs(probs_x[k, usable], out[:, usable], probs_z[k], probs_z[others], a=a)
            aucs[a].append(float(roc_auc_score(truth, s)))
    mean = {a: float(np.mean(v)) for a, v in aucs.items() if v}
    if not mean:
        return {"a": DEFAULT_OFFLINE_A, "auc_by_a": {}, "tuned": False}
    best = max(mean, key=lambda a: (mean[a], -abs(a - DEFAULT_OFFLINE_A)))
    return {"a": best, "auc_by_a": {str(a): v for a, v in mean.items()}, "tuned": True}
