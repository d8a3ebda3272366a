"""Run records: the resolved config, one JSON line per round, and a summary; written and read here.

:class:`RunRecorder` writes a run's folder; :func:`read_rounds` is the one reader of its
``metrics.jsonl`` (the audit, the command line, the deployment helpers and the experiments use it).

``summary.json`` holds only numbers that the config and seed determine, so two
runs with the same config and seed write identical summaries; wall-clock times
go to ``metrics.jsonl`` and ``timing.json`` instead.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np


def new_run_dir(base: str | Path = "runs", name: str | None = None) -> Path:
    """``runs/<timestamp>-<pid>`` (or ``runs/<name>``), created."""
    run_id = name or time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    path = Path(base) / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_atomic(path: Path, data) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    os.replace(tmp, path)


def mean_or_nan(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _add_counts(counters) -> dict[str, int]:
    """Sum per-round {reason: count} dicts into one (sorted by reason)."""
    total: dict[str, int] = {}
    for counts in counters:
        for reason, n in counts.items():
            total[reason] = total.get(reason, 0) + int(n)
    return dict(sorted(total.items()))


def weight_matrix(record: dict, num_clients: int) -> np.ndarray | None:
    """A round record's fusion weights as an N x N matrix (zero rows and columns for clients not fused).

    Records keep the weights only over ``fused_clients`` (rows and columns in that order), so a round
    record grows with the clients that took part, not with the clients registered.
    """
    if not record.get("weights"):
        return None
    ids = np.asarray(record["fused_clients"], dtype=np.int64)
    full = np.zeros((num_clients, num_clients))
    full[np.ix_(ids, ids)] = np.asarray(record["weights"], dtype=np.float64)
    return full


METRICS_FILE = "metrics.jsonl"


def read_rounds(out_dir: str | Path, *, complete_only: bool = False) -> list[dict]:
    """The round records of a run folder's ``metrics.jsonl``, in order (blank lines skipped).

    complete_only: ignore a last line without its newline (a writer may be in the middle of it).
    """
    text = (Path(out_dir) / METRICS_FILE).read_text()
    if complete_only:
        text = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class RunRecorder:
    """Writes ``config.json``, ``metrics.jsonl``, ``summary.json`` and ``timing.json`` into ``out_dir``.

    config: the run's :class:`~fedkd.config.Config` (its typed views name the run in the summary).
    """

    def __init__(self, out_dir: str | Path, config, federation_info: dict):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = config
        self.config = dict(config)
        self.federation_info = federation_info
        self.rounds: list[dict] = []
        self.started = time.perf_counter()
        write_json_atomic(self.out_dir / "config.json", self.config)
        (self.out_dir / METRICS_FILE).write_text("")

    def log_round(self, record: dict) -> None:
        self.rounds.append(record)
        with open(self.out_dir / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=_jsonable) + "\n")

    def finish(self, extra: dict | None = None) -> dict:
        summary = self.summary(extra)
        write_json_atomic(self.out_dir / "summary.json", summary)
        write_json_atomic(self.out_dir / "timing.json", {
            "wall_seconds": time.perf_counter() - self.started,
            "round_seconds": [r.get("round_seconds") for r in self.rounds],
        })
        return summary

    def summary(self, extra: dict | None = None) -> dict:
        run, data, last = self.cfg.run, self.cfg.data, (self.rounds[-1] if self.rounds else {})
        rounds = self.rounds
        summary = {
            "algorithm": run.algorithm,
            "dataset": data.dataset,
            "num_clients": run.num_clients,
            "num_classes": self.federation_info["num_classes"],
            "transfer_size": self.federation_info["transfer_size"],
            "rounds": len(rounds),
            "seed": run.seed,
            "models": list(self.cfg.training.models),
            "alpha": data.alpha,
            "partition": data.partition,
            "alma": last.get("alma", float("nan")),
            "alma_per_round": [r["alma"] for r in rounds],
            "global_acc": last.get("global_acc", float("nan")),
            "global_acc_per_round": [r["global_acc"] for r in rounds],
            "alma_std": last.get("alma_std", float("nan")),
            "per_client_local_acc": last.get("per_client_local_acc", {}),
            "per_client_global_acc": last.get("per_client_global_acc", {}),
            "bytes_up_per_client_round": mean_or_nan(r["bytes_up_per_client"] for r in rounds),
            "bytes_down_per_client_round": mean_or_nan(r["bytes_down_per_client"] for r in rounds),
            "rejected_replies": _add_counts(r.get("rejected", {}) for r in rounds),
            "identity_alarms": _add_counts(r.get("identity_alarms", {}) for r in rounds),
            "dropped_metric_keys": _add_counts(r.get("dropped_metric_keys", {}) for r in rounds),
            "missing_replies": sum(r["missing"] for r in rounds),
            "transfer_fingerprint": self.federation_info["fingerprint"],
        }
        if data.on_folders:  # name the data as it is: folders, not the (unused) dataset and its split
            folder = Path(data.data_dir or Path(data.transfer_dir).parent)
            summary.update(dataset="folder", data=folder.name, partition="folder", alpha=None)
        summary.update(extra or {})
        return summary
