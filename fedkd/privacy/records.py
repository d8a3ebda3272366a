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
