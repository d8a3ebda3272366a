"""What a robustness run reports beyond the product's records: honest clients' accuracy."""
from __future__ import annotations

import numpy as np

from fedkd.faults.plan import FaultPlan


def honest_summary(plan: FaultPlan, rounds: list[dict]) -> dict:
    """ALMA and global accuracy over honest clients only, per round and at the end ({} without liars)."""
    if not plan.liars:
        return {}

    def honest_mean(values: dict) -> float:
        kept = [v for k, v in values.items() if int(k) not in plan.liars]
        return float(np.mean(kept)) if kept else float("nan")

    alma = [honest_mean(r.get("per_client_local_acc", {})) for r in rounds]
    glob = [honest_mean(r.get("per_client_global_acc", {})) for r in rounds]
    return {"malicious_clients": sorted(plan.liars),
            "alma_honest": alma[-1] if alma else float("nan"),
            "global_acc_honest": glob[-1] if glob else float("nan"),
            "alma_honest_per_round": alma, "global_acc_honest_per_round": glob}
