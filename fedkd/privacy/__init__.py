"""Privacy for soft-label sharing: swing distillation, accounting and canaries.

- ``swing``: per-sample privacy scores, adaptive temperatures, noise and
  renormalisation of a client's soft labels before upload (``swing_protect``).
- ``accounting``: what the noise protects and how much (``SoftLabelAccountant``,
  composed over rounds with Google's ``dp_accounting``).
- ``canaries``: planted random-pattern secrets and their exposure, to measure
  whether memorised data travels to peers through soft labels.

Pure numpy/torch; no Flower. See ``docs/privacy.md`` for the threat model.
"""
import importlib

# Imported on first use (PEP 562): the run config imports fedkd.privacy.settings, and that must not
# pull torch (canaries) into every process that only reads a config.
_EXPORTS = {
    "fedkd.privacy.accounting": ("SoftLabelAccountant", "compute_epsilon", "simplex_sensitivity"),
    "fedkd.privacy.canaries": ("CanarySet", "canary_exposure", "exposure", "make_canaries", "make_canary_set",
                               "make_references", "per_sample_losses", "plant"),
    "fedkd.privacy.swing": ("adaptive_temperatures", "add_noise", "clip_and_renormalise", "privacy_scores",
                            "project_to_simplex", "renormalise", "swing_protect", "tempered_softmax"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'fedkd.privacy' has no attribute {name!r}")


__all__ = sorted(_WHERE)
