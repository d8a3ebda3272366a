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
