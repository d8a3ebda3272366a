"""``oracle``: FedMD inside each client's true group, a reference only a simulation can have.

On the knowledge-conflict benchmark (``fedkd.data.conflict``) the clients fall into groups whose labels
mean different things. A rule that "fuses only effective knowledge" (KnFu; Seyedmohammadi, Atapour,
Abouei, Mohammadi, "KnFu: Effective Knowledge Fusion", arXiv:2403.11892, 2024) can at best find those
groups from the soft labels; this rule is told them. It is the upper bound of neighbour selection, not a
method a real server could run.
"""
from __future__ import annotations

import numpy as np

from .base import FusionResult, check_soft_labels, sample_weights
from .knfu import mix_soft_labels


def oracle_weights(groups: np.ndarray, n_samples: np.ndarray | None = None,
                   include_self: bool = False) -> np.ndarray:
    """(N, N) weights: row n is uniform (or sample-weighted) over the clients of n's group.

    groups:       (N,) integer group of each row of the soft labels (the same order and subset).
    n_samples:    (N,) private sample counts, or None for a plain mean.
    include_self: False (default) leaves client n out of its own average whenever its group has another
                  member, so that the oracle is KnFu with a perfect neighbour graph (KnFu excludes self by
                  default) and a client never distils toward its own answers. A client alone in its group
                  keeps itself (weight 1): its targets are its own soft labels, which is what fusing only
                  effective knowledge gives when no one else's knowledge is effective.
    """
    g = np.asarray(groups)
    if g.ndim != 1 or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"groups must be a 1-D integer array, got {g.dtype} shape {g.shape}")
    n = g.size
    base = sample_weights(n_samples, n)  # validates the counts; uniform when None
    same = g[:, None] == g[None, :]
    if not include_self:
        alone = same.sum(axis=1) == 1
        same &= ~np.eye(n, dtype=bool) | alone[:, None]
    w = np.where(same, base[None, :], 0.0)
    totals = w.sum(axis=1, keepdims=True)
    return np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)


def fuse_oracle(soft_labels: np.ndarray, n_samples: np.ndarray | None = None, *,
                groups: np.ndarray, weighted: bool = False, include_self: bool = False) -> FusionResult:
    """targets_n = mean of P_m over the members m of n's true group (self excluded, see ``oracle_weights``).

    soft_labels: (N, M, C) probabilities on the transfer set.
    n_samples:   (N,) private sample counts; used only when ``weighted`` (as ``fedmd.weighted``).
    groups:      (N,) integer group per row, e.g. ``fedkd.data.conflict.conflict_groups(N, G)[ids]`` for
                 the partition ids ``ids`` that replied this round.
    Returns per-client targets (N, M, C) float32 and the block-diagonal (N, N) weight matrix.
    """
    p = check_soft_labels(soft_labels)
    g = np.asarray(groups)
    if g.shape != (p.shape[0],):
        raise ValueError(f"groups must have one entry per client ({p.shape[0]}), got shape {g.shape}")
    w = oracle_weights(g, n_samples if weighted else None, include_self)
    has = w.sum(axis=1) > 0
    neighbours = (w > 0).sum(axis=1)
    info = {"neighbour_counts": neighbours.tolist(), "mean_neighbours": float(neighbours.mean()),
            "groups": g.tolist()}
    return FusionResult(targets=mix_soft_labels(w, soft_labels), has_targets=has, weights=w, info=info)
