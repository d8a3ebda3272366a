"""What a client uploads: plain soft labels, or swing-protected ones with their privacy cost.

Plain distillation sends softmax(logits / T); swing sends per-sample tempered,
noised and renormalised rows, and every upload is one more release for the
accountant.
"""
from __future__ import annotations

import logging

import numpy as np

from fedkd.privacy.accounting import compute_epsilon
from fedkd.privacy.swing import swing_protect
from fedkd.probability import softmax
from fedkd.seeding import derive_seed
from fedkd.privacy.settings import PrivacySettings

log = logging.getLogger("fedkd.privacy")
_EPS = 1e-12


def plain_soft_labels(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) as float32 rows summing to 1."""
    return softmax(logits, temperature).astype(np.float32)


def noise_source(privacy: PrivacySettings, client_id: int, round_num: int, *,
                 simulated: bool) -> np.random.Generator:
    """Where swing's noise comes from.

    Noise derived from the run seed is reproducible, so anyone holding the run
    config can subtract it: right for studies in simulation, wrong on real
    nodes. ``auto`` therefore draws fresh OS entropy on real nodes and derives
    the seed only in simulation; ``derived`` on a real node is allowed (to
    reproduce a study across hosts) but warned about every time.
    """
    mode = privacy.noise_seed
    if mode == "auto":
        mode = "derived" if simulated else "os"
    if mode == "os":
        return np.random.default_rng()
    if not simulated:
        log.warning("privacy.noise_seed=derived on a real node: swing's noise can be recomputed by anyone "
                    "holding the run config, so it protects nothing against them; use 'auto' or 'os'")
    return np.random.default_rng(derive_seed(privacy.seed, "swing-noise", client_id, round_num))


def release(privacy: PrivacySettings, temperature: float, logits: np.ndarray, targets: np.ndarray | None,
            client_id: int, round_num: int, *, simulated: bool = True) -> tuple[np.ndarray, dict]:
    """The (M, C) soft labels this client uploads this round, and metrics about them.

    With swing off this is exactly plain distillation (no extra metrics). The
    reference for swing's privacy score is the public fused targets the client
    received (what the federation already says about each transfer sample);
    without targets (round 1, ``local``) the score falls back to top-1 confidence.
    """
    if not privacy.swing:
        return plain_soft_labels(logits, temperature), {}
    reference = None
    if privacy.reference == "targets" and targets is not None:
        reference = np.log(np.asarray(targets, dtype=np.float64) + _EPS)
    protected, info = swing_protect(
        logits, reference_logits=reference, t_min=privacy.t_min, t_max=privacy.t_max,
        mechanism=privacy.mechanism, noise_scale=privacy.noise_scale,
        seed=noise_source(privacy, client_id, round_num, simulated=simulated))
    metrics = {"swing_mean_score": info["mean_score"], "swing_mean_temperature": info["mean_temperature"],
               "swing_top1_agreement": info["top1_agreement"]}
    return protected, metrics


def epsilon_after(privacy: PrivacySettings, releases: int) -> float:
    """Epsilon spent by ``releases`` uploads at the configured mechanism and noise."""
    if not privacy.swing or releases == 0:
        return 0.0 if releases == 0 else float("inf")
    return compute_epsilon(privacy.mechanism, privacy.noise_scale, releases, privacy.delta)
