"""Membership inference against what a client exposes: its model's outputs.

Threat model: the attacker can query a client's model (a curious peer or server that
receives its soft labels, or anyone holding the model as a black box) and wants to
tell whether a given labelled sample (x, y) was in the client's private training data.
Members are the client's training samples; non-members are held-out samples from the
same distribution.

Every attack turns (model, samples) into one score per sample where **higher means
"more likely a member"**; :func:`attack_metrics` turns member and non-member scores
into ROC AUC and TPR at low FPR. The attacks:

- :func:`membership_scores_loss` -- the log-likelihood of the true label (minus the
  cross-entropy loss). Models fit their training data better than unseen data.
- :func:`membership_scores_confidence` -- top-1 probability; needs no label.
- :func:`membership_scores_reference` -- LiRA-offline style: the target's
  logit-scaled confidence in the true label, standardised against reference models
  that never saw the sample. Calibrates away samples that are simply easy.
- :func:`membership_scores_label_only` -- needs only the predicted label: the
  fraction of slightly shifted / noised copies still classified correctly.
- ``rmia`` -- RMIA offline (Zarifzadeh et al., ICML 2024; :mod:`fedkd.audit.rmia`): the
  target's likelihood ratio against the references' marginal, compared with population
  samples' ratios.

:func:`audit_membership` runs them all on one client and :func:`worst_client`
summarises a federation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ._common import (
    as_device,
    check_images,
    check_pair,
    check_positive_int,
    seeded_torch,
)

__all__ = [
    "membership_scores_loss",
    "membership_scores_confidence",
    "membership_scores_reference",
    "membership_scores_label_only",
    "train_reference_models",
    "attack_metrics",
    "audit_membership",
    "worst_client",
    "balance_members",
    "reference_subsets",
    "bootstrap_intervals",
]

ATTACKS = ("loss", "confidence", "reference", "rmia", "label_only")


# --------------------------------------------------------------------------- helpers
def _logits(model: torch.nn.Module, x: np.ndarray, device, batch_size: int = 512) -> np.ndarray:
    """Float64 logits (N, C) of ``model`` on ``x`` (float64 keeps the score arithmetic exact)."""
    from fedkd.training import predict_logits

    logits = predict_logits(model, x, batch_size=batch_size, device=as_device(device))
    return np.asarray(logits, dtype=np.float64)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _true_label_log_prob(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    if y.max() >= logits.shape[1]:
        raise ValueError(
            f"y holds label {int(y.max())} but the model outputs only {logits.shape[1]} classes"
        )
    return _log_softmax(logits)[np.arange(len(y)), y]


def _logit_scaled_confidence(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)), computed without forming p_y.

    LiRA's observation: on this scale a model's confidence in a sample is close to
    Gaussian across models, so mean and standard deviation describe it well.
    log(1 - p_y) = logsumexp over the other classes minus the full logsumexp.
    """
    if y.max() >= logits.shape[1]:
        raise ValueError(
            f"y holds label {int(y.max())} but the model outputs only {logits.shape[1]} classes"
        )
    rows = np.arange(len(y))
    true = logits[rows, y]
    others = logits.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    log_rest = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return true - log_rest


# --------------------------------------------------------------------------- attacks
def membership_scores_loss(model: torch.nn.Module, x, y, *, device="cpu") -> np.ndarray:
    """Loss-threshold attack: score_i = log p_model(y_i | x_i) = -cross_entropy_i.

    Parameters
    ----------
    model : torch.nn.Module
        The audited model; outputs logits (N, C).
    x : ndarray of shape (N, C, H, W), float32 in [0, 1]
        Candidate samples.
    y : ndarray of shape (N,), int64
        Their true labels.
    device : str or torch.device
        Where to run the model ("cpu", "cuda", "auto").

    Returns
    -------
    scores : ndarray of shape (N,), float64
        Higher = more likely a training member. Always <= 0.
    """
    x, y = check_pair(x, y)
    return _true_label_log_prob(_logits(model, x, device), y)


def membership_scores_confidence(model: torch.nn.Module, x, *, device="cpu") -> np.ndarray:
    """Confidence-threshold attack: score_i = max_c p_model(c | x_i).

    Needs no label, so it also applies to unlabelled candidates (such as the
    transfer set). Same parameters as :func:`membership_scores_loss` without ``y``.

    Returns
    -------
    scores : ndarray of shape (N,), float64 in (0, 1]
    """
    x = check_images(x, "x")
    return np.exp(_log_softmax(_logits(model, x, device)).max(axis=1))


def membership_scores_reference(
    model: torch.nn.Module,
    reference_models: Sequence[torch.nn.Module],
    x,
    y,
    *,
    device="cpu",
    min_std: float = 1e-3,
) -> np.ndarray:
    """Reference-model attack in the style of offline LiRA (Carlini et al., 2022).

    For each sample, phi = log(p_y / (1 - p_y)) is measured on the target and on every
    reference model (trained on data that excludes the candidates, e.g. public data;
    see :func:`train_reference_models`). The score is the target's phi standardised
    against the references::

        score_i = (phi_target_i - mean_r phi_r_i) / std

    A sample that every model finds easy gets a high phi everywhere and therefore a
    modest score; only a target that is unusually confident compared with models
    that never saw the sample scores high. ``std`` is one global standard deviation
    over all samples and references (LiRA's advice when there are few references),
    or 1 when a single reference makes a spread impossible to estimate.

    Parameters
    ----------
    model : torch.nn.Module
        The audited model (logits out).
    reference_models : sequence of torch.nn.Module, length >= 1
        Models trained without the candidate samples, same label space.
    x : ndarray of shape (N, C, H, W), float32 in [0, 1]
    y : ndarray of shape (N,), int64
    device : str or torch.device
    min_std : float
        Floor on the standard deviation, so identical references do not divide by 0.

    Returns
    -------
    scores : ndarray of shape (N,), float64
        Higher = more likely a training member.
    """
    x, y = check_pair(x, y)
    if len(reference_models) == 0:
        raise ValueError("reference_models must hold at least one model")
    if not min_std > 0:
        raise ValueError(f"min_std must be positive, got {min_std!r}")
    target_phi = _logit_scaled_confidence(_logits(model, x, device), y)
    ref_phi = np.stack([_logit_scaled_confidence(_logits(m, x, device), y) for m in reference_models])
    mean = ref_phi.mean(axis=0)
    if len(reference_models) > 1:
        std = max(float((ref_phi - mean).std()), min_std)
    else:
        std = 1.0
    return (target_phi - mean) / std


def _augment_batch(x: np.ndarray, rng: np.random.Generator, max_shift: int, noise_std: float):
    """One random copy of every image: shifted by up to ``max_shift`` pixels, plus noise.

    Shifts are zero-padded translations (the same small perturbation a data
    augmentation pipeline would apply), drawn independently per image.
    """
    n, _, h, w = x.shape
    out = x
    if max_shift > 0:
        padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
        dy = rng.integers(0, 2 * max_shift + 1, size=n)
        dx = rng.integers(0, 2 * max_shift + 1, size=n)
        rows = dy[:, None] + np.arange(h)[None, :]  # (n, h)
        cols = dx[:, None] + np.arange(w)[None, :]  # (n, w)
        idx = np.arange(n)[:, None, None, None]
        ch = np.arange(x.shape[1])[None, :, None, None]
        out = padded[idx, ch, rows[:, None, :, None], cols[:, None, None, :]]
    if noise_std > 0:
        out = out + rng.normal(0.0, noise_std, size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def membership_scores_label_only(
    model: torch.nn.Module,
    x,
    y,
    *,
    device="cpu",
    n_augment: int = 16,
    max_shift: int = 0,
    noise_std: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Label-only attack: robustness of the correct prediction under small perturbations.

    In the spirit of Choquette-Choo et al. (2021): a model is correct on its training
    samples *and* on their neighbourhood, so the fraction of perturbed copies that it
    still labels correctly separates members from non-members. Only the argmax of the
    model is used, so this attack works with hard-label (top-1) access.

    Parameters
    ----------
    model : torch.nn.Module
    x : ndarray of shape (N, C, H, W), float32 in [0, 1]
    y : ndarray of shape (N,), int64
    device : str or torch.device
    n_augment : int, >= 1
        Perturbed copies per sample (the clean sample is counted as well).
    max_shift : int, >= 0
        Largest translation in pixels along each axis (zero padding). Off by
        default: on 8x8 digits one pixel is an eighth of the image and a shift flips
        members and non-members alike; on 28x28 or 32x32 images 1-2 pixels work well.
    noise_std : float, >= 0
        Standard deviation of additive Gaussian pixel noise (then clipped to [0, 1]).
        0.2 separated members best on digits among the values we tried (0.1-0.3).
    seed : int
        Seeds the perturbations.

    Returns
    -------
    scores : ndarray of shape (N,), float64 in [0, 1]
        Fraction of the n_augment + 1 versions (clean included) labelled y.
    """
    x, y = check_pair(x, y)
    n_augment = check_positive_int(n_augment, "n_augment")
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    rng = np.random.default_rng(seed)
    correct = (_logits(model, x, device).argmax(axis=1) == y).astype(np.float64)
    for _ in range(n_augment):
        x_aug = _augment_batch(x, rng, int(max_shift), float(noise_std))
        correct += _logits(model, x_aug, device).argmax(axis=1) == y
    return correct / (n_augment + 1)


# --------------------------------------------------------------------------- references
def train_reference_models(
    x,
    y,
    *,
    num_classes: int,
    n_models: int = 4,
    arch: str = "cnn_small",
    subsample: float = 0.5,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device="cpu",
    model_fn: Callable[[], torch.nn.Module] | None = None,
) -> list[torch.nn.Module]:
    """Train reference ("shadow") models on labelled data the audited client never used.

    Each model sees its own random ``subsample`` fraction of (x, y), so the
    references differ the way independently trained models do. Train them like the
    audited model (same architecture and epochs) for the comparison to be fair.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 in [0, 1]
        Reference data (public data, or other clients' data in a simulation);
        must not contain the candidates being audited.
    y : ndarray of shape (N,), int64
    num_classes : int
    n_models : int, >= 1
    arch : str
        A name for ``fedkd.models.build_model``; ignored when ``model_fn`` is given.
    subsample : float in (0, 1]
        Fraction of (x, y) each reference trains on.
    epochs, batch_size, lr : training settings passed to ``fedkd.training.train_supervised``.
    seed : int
        Model ``k`` uses seed ``seed + k`` for its subset, initialisation and training.
    device : str or torch.device
    model_fn : callable returning a fresh nn.Module, optional
        Builds a reference network instead of ``build_model(arch, ...)``.

    Returns
    -------
    models : list of torch.nn.Module, length n_models
    """
    from fedkd.training import train_supervised

    x, y = check_pair(x, y, num_classes)
    n_models = check_positive_int(n_models, "n_models")
    if not 0 < subsample <= 1:
        raise ValueError(f"subsample must lie in (0, 1], got {subsample!r}")
    dev = as_device(device)
    models = []
    for k, idx in enumerate(reference_subsets(len(x), n_models, subsample, seed)):
        if model_fn is not None:
            with seeded_torch(seed + k, dev):
                model = model_fn()
        else:
            from fedkd.models import build_model

            model = build_model(arch, tuple(x.shape[1:]), num_classes, seed=seed + k)
        train_supervised(
            model, x[idx], y[idx], epochs=epochs, batch_size=batch_size, lr=lr,
            seed=seed + k, device=dev,
        )
        models.append(model)
    return models


def reference_subsets(n: int, n_models: int, subsample: float, seed: int) -> list[np.ndarray]:
    """Sorted indices into the reference data that model k of :func:`train_reference_models` trains on.

    Exposed so that attacks which need to know each reference model's members (RMIA picks
    its parameter on them) recompute exactly the subsets the models saw.
    """
    n_keep = max(1, int(round(subsample * n)))
    return [np.sort(np.random.default_rng(seed + k).choice(n, size=n_keep, replace=False))
            for k in range(n_models)]


# --------------------------------------------------------------------------- metrics
def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """TPR of the ROC path at false-positive rate ``target``.

    ``roc_curve`` returns a monotone path that may hold several points at one FPR
    (vertical steps). At an FPR on the path we take the highest TPR reached there;
    between two FPRs we interpolate linearly along the path, which is the rate a
    randomised mix of the two neighbouring thresholds achieves.
    """
    i = int(np.searchsorted(fpr, target, side="right")) - 1  # last point with fpr <= target
    if fpr[i] == target or i == len(fpr) - 1:
        return float(tpr[i])
    f0, f1, t0, t1 = fpr[i], fpr[i + 1], tpr[i], tpr[i + 1]
    return float(t0 + (t1 - t0) * (target - f0) / (f1 - f0))


def _operating_points(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float, float, float]:
    """(AUC, TPR at 0 %, 0.1 % and 1 % FPR) of one set of scores."""
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return (float(roc_auc_score(truth, scores)), _tpr_at_zero_fpr(fpr, tpr),
            _tpr_at_fpr(fpr, tpr, 0.001), _tpr_at_fpr(fpr, tpr, 0.01))


def _tpr_at_zero_fpr(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Members found before the first false positive (the highest TPR with FPR exactly 0)."""
    return float(tpr[fpr == 0].max()) if np.any(fpr == 0) else 0.0


def bootstrap_intervals(member_scores, nonmember_scores, *, n_boot: int = 200, level: float = 0.95,
                        seed: int = 0) -> dict:
    """Percentile bootstrap intervals of AUC and TPR at 0 / 0.1 / 1 % FPR.

    Members and non-members are resampled separately (with replacement, same sizes), the
    metrics recomputed on each resample. With a few hundred samples the interval of a TPR at
    0.1 % FPR is wide: that is the point, it says how little such a number rests on.

    Returns
    -------
    dict ``{metric + "_ci": [low, high]}`` for auc, tpr_at_0fpr, tpr_at_0.1fpr, tpr_at_1fpr,
    plus ``n_boot`` and ``level``.
    """
    members = np.asarray(member_scores, np.float64).ravel()
    nonmembers = np.asarray(nonmember_scores, np.float64).ravel()
    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
    draws = np.empty((n_boot, 4))
    for b in range(n_boot):
        s = np.concatenate([members[rng.integers(0, members.size, members.size)],
                            nonmembers[rng.integers(0, nonmembers.size, nonmembers.size)]])
        draws[b] = _operating_points(truth, s)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    names = ("auc", "tpr_at_0fpr", "tpr_at_0.1fpr", "tpr_at_1fpr")
    return {**{f"{n}_ci": [float(lo[i]), float(hi[i])] for i, n in enumerate(names)},
            "n_boot": int(n_boot), "level": float(level)}


def attack_metrics(member_scores, nonmember_scores, *, roc_points: int = 101, n_boot: int = 0,
                   seed: int = 0) -> dict:
    """Score a membership attack: ROC AUC and TPR at 0 %, 0.1 % and 1 % FPR.

    Parameters
    ----------
    member_scores : array-like of shape (n_members,)
        Attack scores of true members (higher = more likely a member).
    nonmember_scores : array-like of shape (n_nonmembers,)
        Attack scores of non-members.
    roc_points : int, >= 2
        The ROC is returned resampled at this many FPRs spaced evenly in [0, 1]
        (enough for a plot, small enough for a JSON report), plus a log-spaced copy
        (``roc_log``) from 1e-4 to 1 for the log-scale plots the field reports.
    n_boot : int
        Bootstrap resamples for the intervals of :func:`bootstrap_intervals` (0 = none).
    seed : int
        Seeds the bootstrap.

    Returns
    -------
    metrics : dict
        ``auc`` -- ROC AUC (0.5 = the attack cannot tell members apart);
        ``tpr_at_0fpr``, ``tpr_at_0.1fpr``, ``tpr_at_1fpr`` -- true-positive rate at FPR 0,
        0.001 and 0.01; ``roc`` -- tuple (fpr, tpr) of float arrays of length ``roc_points``;
        ``roc_log`` -- the same on a log grid; ``n_members``, ``n_nonmembers``;
        ``min_resolvable_fpr`` -- 1 / n_nonmembers: a TPR at an FPR below it is an
        interpolation, not an observed operating point; with ``n_boot``, the ``*_ci``
        intervals.
    """
    members = np.asarray(member_scores, dtype=np.float64).ravel()
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    for name, arr in (("member_scores", members), ("nonmember_scores", nonmembers)):
        if arr.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    roc_points = check_positive_int(roc_points, "roc_points")
    if roc_points < 2:
        raise ValueError(f"roc_points must be at least 2, got {roc_points}")

    truth = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
    scores = np.concatenate([members, nonmembers])
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    grid = np.linspace(0.0, 1.0, roc_points)
    log_grid = np.logspace(-4, 0, 41)
    out = {
        "auc": float(roc_auc_score(truth, scores)),
        "tpr_at_0fpr": _tpr_at_zero_fpr(fpr, tpr),
        "tpr_at_0.1fpr": _tpr_at_fpr(fpr, tpr, 0.001),
        "tpr_at_1fpr": _tpr_at_fpr(fpr, tpr, 0.01),
        "roc": (grid, np.array([_tpr_at_fpr(fpr, tpr, f) for f in grid])),
        "roc_log": (log_grid, np.array([_tpr_at_fpr(fpr, tpr, f) for f in log_grid])),
        "n_members": int(members.size),
        "n_nonmembers": int(nonmembers.size),
        "min_resolvable_fpr": 1.0 / nonmembers.size,
    }
    if n_boot:
        out.update(bootstrap_intervals(members, nonmembers, n_boot=n_boot, seed=seed))
    return out


# --------------------------------------------------------------------------- one client
def balance_members(n_members: int, n_nonmembers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices that subsample the larger of two groups to the size of the smaller.

    Returns sorted index arrays (into members, into non-members) of equal length,
    so an attack's AUC is not skewed by one group being larger.
    """
    n = min(n_members, n_nonmembers)
    rng = np.random.default_rng(seed)
    keep_m = np.sort(rng.choice(n_members, size=n, replace=False))
    keep_n = np.sort(rng.choice(n_nonmembers, size=n, replace=False))
    return keep_m, keep_n


def audit_membership(
    model: torch.nn.Module,
    x_members,
    y_members,
    x_nonmembers,
    y_nonmembers,
    *,
    reference_models: Sequence[torch.nn.Module] | None = None,
    attacks: Sequence[str] | None = None,
    device="cpu",
    seed: int = 0,
    n_augment: int = 16,
    max_shift: int = 0,
    noise_std: float = 0.2,
    balance: bool = True,
    population=None,
    rmia_a: float | None = None,
    n_boot: int = 0,
) -> dict:
    """Run the membership attacks against one client's model.

    Parameters
    ----------
    model : torch.nn.Module
        The client's model.
    x_members, y_members : ndarrays (N_m, C, H, W) float32 and (N_m,) int64
        The client's private training samples.
    x_nonmembers, y_nonmembers : ndarrays (N_n, C, H, W) float32 and (N_n,) int64
        Held-out samples from the client's own distribution.
    reference_models : sequence of nn.Module, optional
        Needed by the "reference" and "rmia" attacks (see :func:`train_reference_models`).
    attacks : sequence of str, optional
        Subset of ("loss", "confidence", "reference", "rmia", "label_only"). Defaults to all,
        leaving out "reference" without reference models and "rmia" without references or
        a population.
    device : str or torch.device
    seed : int
        Seeds the balancing subsample and the label-only perturbations.
    n_augment, max_shift, noise_std
        Perturbations of the label-only attack (see :func:`membership_scores_label_only`).
    balance : bool
        Subsample the larger group to the smaller one's size (seeded).
    population : (x, y) pair, optional
        Non-member samples seen by neither the target nor the references: RMIA's z.
    rmia_a : float, optional
        RMIA's offline parameter (:func:`fedkd.audit.rmia.choose_offline_a`; default
        :data:`fedkd.audit.rmia.DEFAULT_OFFLINE_A`).
    n_boot : int
        Bootstrap resamples for confidence intervals of every metric (0 = none).

    Returns
    -------
    results : dict
        ``{attack_name: attack_metrics(...)}`` for every attack that ran.
    """
    xm, ym = check_pair(x_members, y_members, x_name="x_members", y_name="y_members")
    xn, yn = check_pair(x_nonmembers, y_nonmembers, x_name="x_nonmembers", y_name="y_nonmembers")
    if xm.shape[1:] != xn.shape[1:]:
        raise ValueError(
            f"x_members images are {xm.shape[1:]} but x_nonmembers images are {xn.shape[1:]}"
        )
    if attacks is None:
        attacks = [a for a in ATTACKS if (a != "reference" or reference_models)
                   and (a != "rmia" or (reference_models and population is not None))]
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise ValueError(f"attacks holds unknown names {unknown}; choose from {list(ATTACKS)}")
    if "reference" in attacks and not reference_models:
        raise ValueError("the 'reference' attack needs reference_models")
    if "rmia" in attacks and (not reference_models or population is None):
        raise ValueError("the 'rmia' attack needs reference_models and a population")
    if balance:
        keep_m, keep_n = balance_members(len(xm), len(xn), seed)
        xm, ym, xn, yn = xm[keep_m], ym[keep_m], xn[keep_n], yn[keep_n]

    def scores(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if name == "loss":
            return membership_scores_loss(model, x, y, device=device)
        if name == "confidence":
            return membership_scores_confidence(model, x, device=device)
        if name == "reference":
            return membership_scores_reference(model, reference_models, x, y, device=device)
        if name == "rmia":
            from .rmia import DEFAULT_OFFLINE_A, membership_scores_rmia

            return membership_scores_rmia(model, reference_models, x, y, population[0], population[1],
                                          a=DEFAULT_OFFLINE_A if rmia_a is None else rmia_a, device=device)
        return membership_scores_label_only(
            model, x, y, device=device, n_augment=n_augment, max_shift=max_shift,
            noise_std=noise_std, seed=seed,
        )

    # Score both groups in one call so per-batch statistics (the reference attack's
    # global spread) are shared, then split.
    x_all = np.concatenate([xm, xn])
    y_all = np.concatenate([ym, yn])
    results = {}
    for name in attacks:
        s = scores(name, x_all, y_all)
        results[name] = attack_metrics(s[: len(xm)], s[len(xm):], n_boot=n_boot, seed=seed)
    return results


def worst_client(per_client: Mapping[object, Mapping[str, Mapping]], key: str = "auc") -> dict:
    """For each attack, the client whose model leaks most (highest ``key``).

    Parameters
    ----------
    per_client : mapping client_id -> audit_membership(...) result
    key : str
        The metric that ranks clients ("auc", "tpr_at_1fpr", "tpr_at_0.1fpr").

    Returns
    -------
    worst : dict
        ``{attack: {"client": client_id, key: value, "mean": mean over clients}}``.
    """
    if not per_client:
        raise ValueError("per_client is empty")
    attacks = sorted({a for res in per_client.values() for a in res})
    worst = {}
    for attack in attacks:
        values = {cid: res[attack][key] for cid, res in per_client.items() if attack in res}
        if not values:
            continue
        cid = max(values, key=lambda c: values[c])
        worst[attack] = {"client": cid, key: values[cid], "mean": float(np.mean(list(values.values())))}
    return worst
