"""Probability rows: the one softmax of the project and the tolerance every row check uses."""
from __future__ import annotations

import numpy as np

# How far a row of soft labels or targets may sum from 1 (float32 rows after a float64 softmax
# are off by one rounding step; encoded rows by the encoding's resolution).
ROW_SUM_TOLERANCE = 1e-3


def softmax(logits: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / T) in float64, shifted by the row max so it never overflows.

    ``temperature`` is a scalar or one value per row (shape (M, 1)).
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probability_problem(p: np.ndarray, tolerance: float = ROW_SUM_TOLERANCE) -> str | None:
    """What keeps the rows of ``p`` (..., C) from being probability vectors, or None when nothing does.

    A row must have finite entries, every entry >= 0 (exactly: a square root or a logarithm of a
    negative entry is NaN, and one NaN in a fusion rule's distance matrix can silence every client),
    and sum to 1 within ``tolerance``. The one row check of the project: every uploaded row passes it
    (after decoding its wire format) before any fusion rule sees it.
    """
    p = np.asarray(p)
    if p.size == 0:
        return None
    finite = np.isfinite(p)
    if not finite.all():
        return f"{int(p.size - finite.sum())} NaN/Inf entries"
    low = float(p.min())
    if low < 0:
        return f"{int(np.sum(p < 0))} negative entries (minimum {low:.4g})"
    worst = float(np.max(np.abs(p.sum(axis=-1, dtype=np.float64) - 1.0)))
    if worst > tolerance:
        return f"a row sums to 1 +- {worst:.4g} (tolerance {tolerance})"
    return None
