"""What a client uploads: plain soft labels, or swing-protected ones with their privacy cost.

This glues the pure pieces of ``swing`` and ``accounting`` to a run config so the
ClientApp stays thin. Plain distillation sends softmax(logits / T); swing sends
per-sample tempered, noised and renormalised rows, and every upload is one more
release for the accountant.
"""
from __future__ import annotations

import numpy as np

from fedkd.privacy.accounting import compute_epsilon
from fedkd.privacy.swing import swing_protect
from fedkd.seeding import derive_seed

_EPS = 1e-12


def plain_soft_labels(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) as float32 rows summing to 1."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


def noise_source(cfg, client_id: int, round_num: int):
    """Seeded noise is reproducible, so anyone with the config can subtract it: fine for
    studies in simulation, never for deployment ('os' draws fresh entropy)."""
    if cfg["privacy.noise_seed"] == "os":
        return np.random.default_rng()
    return np.random.default_rng(derive_seed(cfg["seed"], "swing-noise", client_id, round_num))


def release(cfg, logits: np.ndarray, targets: np.ndarray | None, client_id: int,
            round_num: int) -> tuple[np.ndarray, dict]:
    """The (M, C) soft labels this client uploads this round, and metrics about them.

    With ``privacy.swing`` off this is exactly plain distillation (no extra metrics).
    The reference for swing's privacy score is the public fused targets the client
    received (what the federation already says about each transfer sample); without
    targets (round 1, ``local``) the score falls back to top-1 confidence.
    """
    if not cfg["privacy.swing"]:
        return plain_soft_labels(logits, cfg["temperature"]), {}
    reference = None
    if cfg["privacy.reference"] == "targets" and targets is not None:
        reference = np.log(np.asarray(targets, dtype=np.float64) + _EPS)
    protected, info = swing_protect(
        logits, reference_logits=reference, t_min=cfg["privacy.t_min"], t_max=cfg["privacy.t_max"],
        mechanism=cfg["privacy.mechanism"], noise_scale=cfg["privacy.noise_scale"],
        seed=noise_source(cfg, client_id, round_num))
    metrics = {"swing_mean_score": info["mean_score"], "swing_mean_temperature": info["mean_temperature"],
               "swing_top1_agreement": info["top1_agreement"]}
    return protected, metrics


def epsilon_after(cfg, releases: int) -> float:
    """Epsilon spent by ``releases`` uploads at the configured mechanism and noise."""
    if not cfg["privacy.swing"] or releases == 0:
        return 0.0 if releases == 0 else float("inf")
    return compute_epsilon(cfg["privacy.mechanism"], cfg["privacy.noise_scale"], releases, cfg["privacy.delta"])
