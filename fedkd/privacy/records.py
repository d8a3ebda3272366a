"""Privacy numbers in the run record: epsilon per client per round, canary exposure."""
from __future__ import annotations

import numpy as np

from fedkd.privacy.settings import CanarySettings, PrivacySettings


def privacy_round_record(privacy: PrivacySettings, canaries: CanarySettings,
                         client_metrics: dict[int, dict]) -> dict:
    """Per-round entries from the clients' metrics ({partition_id: metrics})."""
    record: dict = {}
    if privacy.swing:
        eps = {str(pid): m["epsilon"] for pid, m in client_metrics.items() if "epsilon" in m}
        record["epsilon_per_client"] = eps
        record["epsilon"] = max(eps.values()) if eps else float("nan")
    training = {str(pid): m["training_epsilon"] for pid, m in client_metrics.items() if "training_epsilon" in m}
    if training:  # DP-SGD: each client's accounted epsilon of its private training so far (whole run)
        record["training_epsilon_per_client"] = training
        record["training_epsilon"] = max(training.values())
        record["dp_noise_multiplier_per_client"] = {
            str(pid): m["dp_noise_multiplier"] for pid, m in client_metrics.items() if "dp_noise_multiplier" in m}
    if canaries.enabled:
        owner = canaries.client
        exposures = {pid: m["canary_exposure"] for pid, m in client_metrics.items() if "canary_exposure" in m}
        peers = [v for pid, v in exposures.items() if pid != owner]
        record["canary_exposure_per_client"] = {str(pid): v for pid, v in exposures.items()}
        record["canary_exposure_owner"] = exposures.get(owner, float("nan"))
        record["canary_exposure_peers_mean"] = float(np.mean(peers)) if peers else float("nan")
        record["canary_exposure_peers_max"] = float(np.max(peers)) if peers else float("nan")
    return record


def privacy_summary(privacy: PrivacySettings, canaries: CanarySettings, rounds: list[dict]) -> dict:
    """``privacy`` and ``canaries`` sections of summary.json (empty when both are off)."""
    out: dict = {}
    if privacy.swing:
        final = next((r for r in reversed(rounds) if "epsilon_per_client" in r), {})
        out["privacy"] = {
            "swing": True,
            "epsilon": final.get("epsilon", float("nan")),
            "delta": privacy.delta,
            "mechanism": privacy.mechanism,
            "noise_scale": privacy.noise_scale,
            "t_min": privacy.t_min,
            "t_max": privacy.t_max,
            "accountant": "dp_accounting RDP" if privacy.mechanism == "gaussian" else "dp_accounting PLD",
            "protected_unit": "one row (one transfer sample's answer) of each uploaded soft-label matrix",
            "epsilon_per_client": final.get("epsilon_per_client", {}),
            "epsilon_per_round": [r.get("epsilon", float("nan")) for r in rounds],
        }
    training = training_privacy_summary(privacy, rounds)
    if training:
        out.setdefault("privacy", {"swing": False}).update(training)
    if canaries.enabled:
        out["canaries"] = {
            "owner": canaries.client,
            "count": canaries.count,
            "repeats": canaries.repeats,
            "references": canaries.references,
            "in_transfer": canaries.in_transfer,
            "max_exposure": float(np.log2(canaries.references)),
            "exposure_owner": rounds[-1].get("canary_exposure_owner", float("nan")) if rounds else float("nan"),
            "exposure_peers_mean": rounds[-1].get("canary_exposure_peers_mean", float("nan")) if rounds else float("nan"),
            "exposure_owner_per_round": [r.get("canary_exposure_owner") for r in rounds],
            "exposure_peers_mean_per_round": [r.get("canary_exposure_peers_mean") for r in rounds],
        }
    return out


def training_privacy_summary(privacy: PrivacySettings, rounds: list[dict]) -> dict:
    """DP-SGD's (epsilon, delta) of the private training data: each client's latest accounted epsilon
    (a client not sampled in the last round keeps its last value), the largest over clients as the run's."""
    per_client: dict[str, float] = {}
    for r in rounds:
        per_client.update(r.get("training_epsilon_per_client") or {})
    if not per_client:
        return {}
    return {
        "dp_sgd": True,
        "training_epsilon": max(per_client.values()),
        "training_delta": privacy.delta,
        "training_epsilon_per_client": per_client,
        "training_epsilon_per_round": [r.get("training_epsilon", float("nan")) for r in rounds],
        "training_accountant": "Opacus RDP (Poisson-subsampled Gaussian), every private step of every round",
        "training_protected_unit": "one example of a client's private training set (add/remove)",
    }
