"""``local``: no knowledge is fused; every client trains on its own data only."""
from __future__ import annotations

import numpy as np

from .base import FusionResult, check_soft_labels


def fuse_local(soft_labels: np.ndarray, n_samples: np.ndarray | None = None) -> FusionResult:
    """The baseline every method must beat: no targets for anyone.

    soft_labels: (N, M, C) uploaded soft labels (only their shape is used).
    """
    p = check_soft_labels(soft_labels)
    return FusionResult(targets=None, has_targets=np.zeros(p.shape[0], dtype=bool), weights=None)
