"""No target is one peer's upload: how many other clients a target mixes, and the rule that enforces it.

A client's targets are sum_m w[n, m] P_m. Where the weight sits on one peer, the targets *are* that peer's
upload (with a pool of two, or when only the strongest neighbour survives KnFu's threshold), and the
client reads another client's answers bit for bit. ``effective_contributors`` counts how many other
clients a row really mixes -- the effective number 1 / sum_m w_m^2 of the row's weights on its peers,
renormalised (n equal peers give n, one dominant peer gives ~1) -- and ``require_contributors`` takes the
targets away from a row below ``server.min_contributors``. The client's own upload does not count: it
hides nothing from the client itself.
"""
from __future__ import annotations

import numpy as np

from .base import FusionResult

# The effective number is compared rounded to the nearest integer (>= k - 1/2): two peers weighted 0.6/0.4
# (1.92 peers) do mix two uploads; 0.8/0.2 (1.47) is mostly one.
ROUNDING = 0.5


def effective_contributors(weights: np.ndarray) -> np.ndarray:
    """(N,) effective number of *other* clients in each row of an (N, N) weight matrix (0: none)."""
    w = np.array(weights, dtype=np.float64)
    np.fill_diagonal(w, 0.0)
    total = w.sum(axis=1)
    squares = (w * w).sum(axis=1)
    return np.divide(total * total, squares, out=np.zeros_like(total), where=squares > 0)


def require_contributors(result: FusionResult, min_contributors: int) -> tuple[FusionResult, dict[int, str]]:
    """The result with targets only for rows that mix >= ``min_contributors`` other uploads.

    Returns the (possibly) reduced result and {row: why} for each row whose targets were taken away.
    Rules without weights (``local``) and ``min_contributors <= 1`` pass unchanged.
    """
    if result.weights is None or result.targets is None or min_contributors <= 1:
        return result, {}
    eff = effective_contributors(result.weights)
    short = result.has_targets & (eff < min_contributors - ROUNDING)
    if not short.any():
        return result, {}
    why = {int(i): f"its targets would mix only {eff[i]:.2f} other clients' uploads "
                   f"(< server.min_contributors={min_contributors})" for i in np.flatnonzero(short)}
    has = result.has_targets & ~short
    return FusionResult(targets=result.targets, has_targets=has, weights=result.weights, info=result.info), why
