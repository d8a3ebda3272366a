"""``fedmd``: FedMD-style consensus, one average of all clients' soft labels."""
from __future__ import annotations

import numpy as np

from .base import FusionResult, check_soft_labels, sample_weights


def fuse_fedmd(soft_labels: np.ndarray, n_samples: np.ndarray | None = None,
               weighted: bool = False) -> FusionResult:
    """Every client gets the same target: the (optionally sample-weighted) mean.

    soft_labels: (N, M, C) probabilities on the transfer set.
    n_samples:   (N,) private sample counts; used only when ``weighted``.
    """
    p = check_soft_labels(soft_labels)
    n = p.shape[0]
    w = sample_weights(n_samples if weighted else None, n)
    consensus = np.tensordot(w, p, axes=1)  # (M, C)
    targets = np.broadcast_to(consensus, p.shape).astype(np.float32)
    return FusionResult(targets=targets, has_targets=np.ones(n, dtype=bool),
                        weights=np.tile(w, (n, 1)))
