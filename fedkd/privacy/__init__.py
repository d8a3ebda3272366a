"""Privacy for soft-label sharing: swing distillation, accounting and canaries.

- ``swing``: per-sample privacy scores, adaptive temperatures, noise and
  renormalisation of a client's soft labels before upload (``swing_protect``).
- ``accounting``: what the noise protects and how much (``SoftLabelAccountant``,
  composed over rounds with Google's ``dp_accounting``).
- ``canaries``: planted random-pattern secrets and their exposure, to measure
  whether memorised data travels to peers through soft labels.

Pure numpy/torch; no Flower. See ``docs/privacy.md`` for the threat model.
"""
from fedkd.privacy.accounting import (
    SoftLabelAccountant,
    compute_epsilon,
    simplex_sensitivity,
)
from fedkd.privacy.canaries import (
    CanarySet,
    canary_exposure,
    exposure,
    make_canaries,
    make_canary_set,
    make_references,
    per_sample_losses,
    plant,
)
from fedkd.privacy.swing import (
    adaptive_temperatures,
    add_noise,
    clip_and_renormalise,
    privacy_scores,
    project_to_simplex,
    renormalise,
    swing_protect,
    tempered_softmax,
)

__all__ = [
    "SoftLabelAccountant",
    "compute_epsilon",
    "simplex_sensitivity",
    "CanarySet",
    "canary_exposure",
    "exposure",
    "make_canaries",
    "make_canary_set",
    "make_references",
    "per_sample_losses",
    "plant",
    "adaptive_temperatures",
    "add_noise",
    "clip_and_renormalise",
    "privacy_scores",
    "project_to_simplex",
    "renormalise",
    "swing_protect",
    "tempered_softmax",
]
