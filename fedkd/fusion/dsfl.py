"""``dsfl``: DS-FL's entropy-reduction aggregation (a sharpened average)."""
from __future__ import annotations

import numpy as np

from fedkd.probability import softmax

from .base import FusionResult, check_soft_labels, sample_weights

_EPS = 1e-12


def fuse_dsfl(soft_labels: np.ndarray, n_samples: np.ndarray | None = None,
              temperature: float = 0.5) -> FusionResult:
    """targets = softmax(log(mean_m P_m) / T_era), the same for every client.

    A temperature below 1 sharpens the averaged distribution, which is DS-FL's
    remedy for the high entropy that averaging non-IID clients produces.

    soft_labels: (N, M, C); temperature: T_era > 0.
    """
    if not temperature > 0:
        raise ValueError(f"dsfl temperature must be > 0, got {temperature}")
    p = check_soft_labels(soft_labels)
    n = p.shape[0]
    w = sample_weights(None, n)
    sharp = softmax(np.log(np.tensordot(w, p, axes=1) + _EPS), temperature)  # (M, C)
    targets = np.broadcast_to(sharp, p.shape).astype(np.float32)
    return FusionResult(targets=targets, has_targets=np.ones(n, dtype=bool),
                        weights=np.tile(w, (n, 1)))
