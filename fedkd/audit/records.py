"""What the audit reports of a run besides its attacks: the run's facts, canaries, fusion weights; JSON cleaning."""
from __future__ import annotations

import numpy as np

from .artifacts import RunArtifacts, finite_or_none

def canary_series(rounds: list[dict], references: int | None = None) -> dict | None:
    """Canary exposure per round from metrics.jsonl, or None when the run planted none.

    ``references`` (the run's ``canaries.references``) gives the largest possible
    exposure, log2(references) bits.
    """
    if not any("canary_exposure_owner" in r for r in rounds):
        return None
    return {
        "max_exposure": float(np.log2(references)) if references else None,
        "round": [int(r["round"]) for r in rounds],
        "owner": [finite_or_none(r.get("canary_exposure_owner")) for r in rounds],
        "peers_mean": [finite_or_none(r.get("canary_exposure_peers_mean")) for r in rounds],
        "peers_max": [finite_or_none(r.get("canary_exposure_peers_max")) for r in rounds],
    }


def fusion_weights(rounds: list[dict]) -> dict | None:
    """The last round's N x N fusion weights (KnFu's neighbour graph), or None."""
    last = next((r for r in reversed(rounds) if r.get("weights")), None)
    if last is None:
        return None
    from fedkd.run_records import weight_matrix

    full = weight_matrix(last, max(last["fused_clients"]) + 1)  # N x N over the ids fused in that round
    return {"round": int(last["round"]), "weights": [[float(v) for v in row] for row in full],
            "neighbour_counts": last.get("neighbour_counts")}


def run_facts(art: RunArtifacts) -> dict:
    """What was audited: the setting a reader needs next to the numbers."""
    cfg, s = art.cfg, art.summary
    privacy = s.get("privacy", {})
    return {
        "run_dir": str(art.run_dir), "dataset": cfg.data.dataset, "algorithm": cfg.run.algorithm,
        "num_clients": cfg.run.num_clients, "rounds": cfg.run.rounds, "alpha": cfg.data.alpha,
        "partition": cfg.data.partition, "models": list(cfg.training.models), "seed": cfg.run.seed,
        "transfer_size": cfg.data.transfer_size, "class_names": list(art.federation.class_names),
        "swing": bool(cfg.privacy.swing),
        "noise_scale": cfg.privacy.noise_scale if cfg.privacy.swing else None,
        "epsilon": finite_or_none(privacy.get("epsilon")) if privacy else None,
        "training_epsilon": finite_or_none(privacy.get("training_epsilon")) if privacy else None,
        "training_delta": privacy.get("training_delta") if privacy else None,
        "canaries": bool(cfg.canaries.enabled),
        "alma": finite_or_none(s.get("alma")), "global_acc": finite_or_none(s.get("global_acc")),
        "label_histograms": [[int(v) for v in c.label_histogram] for c in art.federation.clients],
    }


# --------------------------------------------------------------------------- entry points


def clean_json(value):
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, keys -> str."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    return value
