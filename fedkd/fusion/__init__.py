"""Fusion rules: pure functions from uploaded soft labels to per-client targets.

``FUSERS`` maps an algorithm name to its function; each takes
``(soft_labels (N, M, C), n_samples (N,) | None, **params)`` and returns a
:class:`FusionResult`. ``fedavg`` is not here: it exchanges weights through
Flower's own FedAvg strategy instead (see ``server/``).
"""
from __future__ import annotations

from .base import FusionResult
from .dsfl import fuse_dsfl
from .fedmd import fuse_fedmd
from .knfu import fuse_knfu
from .local import fuse_local

FUSERS = {
    "local": fuse_local,
    "fedmd": fuse_fedmd,
    "dsfl": fuse_dsfl,
    "knfu": fuse_knfu,
}


def fuse(algorithm: str, soft_labels, n_samples=None, **params) -> FusionResult:
    """Run the fusion rule named ``algorithm``."""
    try:
        rule = FUSERS[algorithm]
    except KeyError:
        raise ValueError(f"unknown fusion algorithm {algorithm!r}; known: {sorted(FUSERS)}") from None
    return rule(soft_labels, n_samples, **params)


__all__ = ["FUSERS", "FusionResult", "fuse", "fuse_dsfl", "fuse_fedmd", "fuse_knfu", "fuse_local"]
