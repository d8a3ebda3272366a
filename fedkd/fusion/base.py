"""What every fusion rule returns, and the input check they share."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FusionResult:
    """Per-client distillation targets produced by one fusion rule.

    targets:     (N, M, C) float32, row ``n`` is what client ``n`` distils toward;
                 ``None`` when the rule sends nothing (``local``).
    has_targets: (N,) bool, False for a client that gets no targets this round
                 (e.g. KnFu with self excluded and no other client present).
    weights:     (N, N) float64, ``weights[n, m]`` is how much client ``m``'s
                 knowledge contributes to client ``n``'s targets (rows sum to 1
                 where ``has_targets``). ``None`` for ``local``.
    info:        small JSON-able extras (e.g. neighbour counts) for the run record.
    """

    targets: np.ndarray | None
    has_targets: np.ndarray
    weights: np.ndarray | None
    info: dict = field(default_factory=dict)


def check_soft_labels(soft_labels: np.ndarray) -> np.ndarray:
    """Validate a stack of soft labels (N, M, C) and return it as float64.

    Fusion works in float64 so that sums of many clients stay exact enough; the
    protocol already rejected non-finite or non-normalised replies upstream.
    """
    p = np.asarray(soft_labels)
    if p.ndim != 3:
        raise ValueError(f"soft_labels must be (N, M, C), got shape {p.shape}")
    if p.shape[0] < 1 or p.shape[1] < 1 or p.shape[2] < 2:
        raise ValueError(f"soft_labels needs N>=1, M>=1, C>=2, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("soft_labels contains NaN or Inf")
    return p.astype(np.float64, copy=False)


def sample_weights(n_samples: np.ndarray | None, n: int) -> np.ndarray:
    """Normalised per-client weights from sample counts (uniform when None)."""
    if n_samples is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(n_samples, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"n_samples must be {n} non-negative counts with a positive sum, got {w}")
    return w / w.sum()
