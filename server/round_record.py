"""The per-round line of ``metrics.jsonl``: what the validated replies say, and how the round went."""
from __future__ import annotations

import numpy as np

from fedkd import protocol
from fedkd.run_records import mean_or_nan
from fedkd.privacy.records import privacy_round_record
from fedkd.privacy.settings import CanarySettings, PrivacySettings
from server.screening import Screened


def round_record(round_num: int, screened: Screened, *, sent: int, received: int, nodes: int,
                 sampled: list[int] | None, bytes_down: float, privacy: PrivacySettings,
                 canaries: CanarySettings, alarms: dict) -> dict:
    valid = screened.accepted
    record = {"round": round_num, "replies": len(valid), "rejected": dict(screened.rejected),
              "missing": max(0, sent - received), "nodes": nodes}
    if sampled is not None:
        record["sampled_clients"] = sampled
    if alarms:
        record["identity_alarms"] = dict(alarms)
    if screened.dropped_metrics:
        record["dropped_metric_keys"] = dict(screened.dropped_metrics)  # client name -> how many unknown keys
    if screened.refusals:
        record["refusals"] = dict(sorted(screened.refusals.items()))  # client name -> why (clipped)
    record.update(accuracy_record(valid))
    record.update(privacy_round_record(privacy, canaries, {a.client_id: a.reply.metrics for a in valid}))
    histograms = {str(a.client_id): a.reply.label_histogram for a in valid if a.reply.label_histogram is not None}
    if histograms:
        record["label_histograms"] = histograms  # only what nodes chose to disclose (record_label_histograms)
    record["bytes_down_per_client"] = bytes_down
    record["bytes_up_per_client"] = mean_or_nan(a.reply.nbytes for a in valid)
    return record


def accuracy_record(valid) -> dict:
    local = {a.client_id: a.reply.metrics["acc_local"] for a in valid}
    glob = {a.client_id: a.reply.metrics["acc_global"] for a in valid if "acc_global" in a.reply.metrics}
    rec = {
        "alma": mean_or_nan(local.values()),
        "alma_std": float(np.std(list(local.values()))) if local else float("nan"),
        "global_acc": mean_or_nan(glob.values()),
        "per_client_local_acc": {str(k): v for k, v in local.items()},
        "per_client_global_acc": {str(k): v for k, v in glob.items()},
        # who distilled toward targets this round (a digest step, or the joint step with targets)
        "distilled_clients": sorted(a.client_id for a in valid
                                    if "digest_loss" in a.reply.metrics or a.reply.metrics.get("distilled") == 1.0),
    }
    for step in ("digest", "revisit"):
        rec[f"alma_after_{step}"] = mean_or_nan(a.reply.metrics.get(f"acc_local_after_{step}") for a in valid)
    return rec


def mean_message_bytes(messages) -> float:
    return mean_or_nan(protocol.message_bytes(m.content) for m in messages)
