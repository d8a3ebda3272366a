"""The server's round loop: send each client its own targets, collect, validate, fuse, record.

Flower's strategies send one payload to every node, while knowledge fusion
sends every client its *own* targets, so the distillation runs use a plain
loop (``server/dispatch.py``: Flower's own ``send_and_receive`` waits up to 3 s
between pulls). The FedAvg reference run drives Flower's
own ``FedAvg`` strategy (``configure_train`` / ``aggregate_train``) inside the
same loop so that both are recorded alike.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedkd import protocol
from fedkd.config import Config, federation_spec
from fedkd.data import build_federation
from fedkd.fusion import fuse
from fedkd.metrics import RunRecorder, mean_or_nan, new_run_dir
from fedkd.privacy.canary_plan import transfer_inputs
from fedkd.privacy.records import privacy_round_record, privacy_summary
from fedkd.adversary import honest_accuracy_record
from fedkd.wire import WireFormat
from server import checkpoint, dispatch

log = logging.getLogger("fedkd.server")


@dataclass
class PublicInfo:
    """What the server knows of the federation: public facts only."""

    fingerprint: str
    num_classes: int
    transfer_size: int
    label_histograms: list

    def as_dict(self) -> dict:
        return dict(fingerprint=self.fingerprint, num_classes=self.num_classes,
                    transfer_size=self.transfer_size, label_histograms=self.label_histograms)


def public_info(cfg: Config) -> PublicInfo:
    fed = build_federation(federation_spec(cfg))
    transfer_x, fingerprint = transfer_inputs(cfg, fed)
    return PublicInfo(fingerprint=fingerprint, num_classes=fed.num_classes,
                      transfer_size=len(transfer_x),
                      label_histograms=np.asarray(fed.label_histograms).tolist())


def wait_for_nodes(grid: Grid, expected: int, timeout: float, poll: float = 0.2) -> list[int]:
    """Node ids appear a little after start: wait until ``expected`` are connected."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {expected} nodes connected after {timeout:.0f} s")
        time.sleep(poll)


def fusion_params(cfg: Config) -> dict:
    name = cfg["algorithm"]
    if name == "knfu":
        return {"beta": cfg["knfu.beta"], "tau": cfg.knfu_tau, "include_self": cfg["knfu.include_self"]}
    if name == "dsfl":
        return {"temperature": cfg["dsfl.temperature"]}
    if name == "fedmd":
        return {"weighted": cfg["fedmd.weighted"]}
    return {}


class RoundObserver:
    """Hooks for live monitoring (Prometheus); the default does nothing."""

    def on_reject(self, reason: str) -> None: ...
    def on_round(self, record: dict) -> None: ...


def run_federation(grid: Grid, cfg: Config, out_dir: str | Path | None = None,
                   progress: bool = True, observer: RoundObserver | None = None) -> dict:
    """Run ``cfg['rounds']`` rounds on the nodes behind ``grid``; return the summary."""
    from tqdm.auto import tqdm

    observer = observer or RoundObserver()
    info = public_info(cfg)
    out = Path(out_dir or cfg["out"] or new_run_dir())
    # read the checkpoint before the recorder starts a fresh metrics.jsonl: a refused resume loses nothing
    resume_from = checkpoint.load_for_resume(out, cfg) if cfg["server.resume"] else None
    recorder = RunRecorder(out, dict(cfg), info.as_dict())
    n = cfg["num_clients"]
    wait_for_nodes(grid, n, cfg["server.node_wait_timeout"])
    shape = None if cfg["algorithm"] == "fedavg" else (info.transfer_size, info.num_classes)
    wire_format = WireFormat.from_config(cfg)
    run_config = protocol.compact_run_config(checkpoint.client_run_config(cfg))  # defaults left out

    state = _FedAvgState(cfg) if cfg["algorithm"] == "fedavg" else _FusionState(cfg)
    first_round = 1 if resume_from is None else checkpoint.restore(resume_from, state, recorder) + 1
    bar = tqdm(range(first_round, cfg["rounds"] + 1), desc=f"{cfg['algorithm']} rounds", disable=not progress,
               unit="round")
    for rnd in bar:
        started = time.perf_counter()
        node_ids = sorted(grid.get_node_ids())
        contents = state.contents_for(rnd, node_ids, info.fingerprint, run_config, grid)
        messages = [protocol.build_train_message(nid, c) for nid, c in contents.items()]
        replies = dispatch.send_and_receive(grid, messages, timeout=cfg["server.reply_timeout"],
                                            max_in_flight=cfg["server.max_in_flight"])

        valid, rejected = [], Counter()
        for reply in replies:
            try:
                parsed = protocol.validate_reply(reply, expected_round=rnd, fingerprint=info.fingerprint,
                                                 shape=shape, num_partitions=n, wire_format=wire_format)
                if any(v.partition_id == parsed.partition_id for v, _ in valid):
                    raise protocol.InvalidReply("duplicate_partition",
                                                f"partition {parsed.partition_id} already replied")
            except protocol.InvalidReply as exc:
                log.warning("round %d: rejected reply from node %s: %s", rnd, reply.metadata.src_node_id, exc)
                rejected[exc.reason] += 1
                observer.on_reject(exc.reason)
                continue
            valid.append((parsed, reply))
            state.node_partition[reply.metadata.src_node_id] = parsed.partition_id
        valid.sort(key=lambda item: item[0].partition_id)

        record = {"round": rnd, "replies": len(valid), "rejected": dict(rejected),
                  "missing": max(0, len(messages) - len(replies)), "nodes": len(node_ids)}
        record.update(_accuracy_record(valid))
        record.update(honest_accuracy_record(cfg, record))  # only when attack.* makes some clients malicious
        record.update(privacy_round_record(cfg, {p.partition_id: p.metrics for p, _ in valid}))
        record["bytes_down_per_client"] = mean_or_nan(protocol.message_bytes(c) for c in contents.values())
        record["bytes_up_per_client"] = mean_or_nan(p.nbytes for p, _ in valid)
        if len(valid) >= cfg["server.min_replies"]:
            record.update(state.aggregate(rnd, valid))
        else:
            log.warning("round %d: %d valid replies < server.min_replies; nothing fused", rnd, len(valid))
        record["round_seconds"] = time.perf_counter() - started
        recorder.log_round(record)
        observer.on_round(record)
        if cfg["server.checkpoint"]:
            checkpoint.save_checkpoint(out, rnd, cfg, state, len(recorder.rounds))
        bar.set_postfix(alma=f"{record['alma']:.3f}", glob=f"{record['global_acc']:.3f}")
        if rnd == cfg["server.stop_after_round"]:
            log.warning("stopping after round %d as server.stop_after_round asks; continue with --resume", rnd)
            break
    return recorder.finish(privacy_summary(cfg, recorder.rounds))


def _accuracy_record(valid) -> dict:
    local = {p.partition_id: p.metrics["acc_local"] for p, _ in valid}
    glob = {p.partition_id: p.metrics["acc_global"] for p, _ in valid}
    rec = {
        "alma": mean_or_nan(local.values()),
        "alma_std": float(np.std(list(local.values()))) if local else float("nan"),
        "global_acc": mean_or_nan(glob.values()),
        "per_client_local_acc": {str(k): v for k, v in local.items()},
        "per_client_global_acc": {str(k): v for k, v in glob.items()},
        # who distilled toward targets this round (a client reports digest_loss only then)
        "distilled_clients": sorted(p.partition_id for p, _ in valid if "digest_loss" in p.metrics),
    }
    for step in ("digest", "revisit"):
        vals = [p.metrics.get(f"acc_local_after_{step}") for p, _ in valid]
        rec[f"alma_after_{step}"] = mean_or_nan(vals)
    return rec


class _FusionState:
    """Per-client targets for the distillation algorithms."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.targets: dict[int, np.ndarray] = {}
        self.node_partition: dict[int, int] = {}

    def contents_for(self, rnd, node_ids, fingerprint, run_config, grid):
        unknown = [nid for nid in node_ids if nid not in self.node_partition]
        if unknown and self.targets:  # after a resume or a node restart: ask before sending targets
            self.node_partition.update(checkpoint.identify_nodes(
                grid, unknown, self.cfg["num_clients"], self.cfg["server.reply_timeout"]))
        out = {}
        wire_format = WireFormat.from_config(self.cfg)
        for nid in node_ids:
            pid = self.node_partition.get(nid)
            targets = self.targets.get(pid) if pid is not None else None
            out[nid] = protocol.build_train_content(rnd, self.cfg["temperature"], fingerprint, run_config, targets,
                                                    wire_format)
        return out

    def aggregate(self, rnd, valid) -> dict:
        pids = [p.partition_id for p, _ in valid]
        soft = np.stack([p.soft_labels for p, _ in valid])
        counts = np.array([p.num_examples for p, _ in valid], dtype=np.float64)
        result = fuse(self.cfg["algorithm"], soft, counts, **fusion_params(self.cfg))
        self.targets = {}
        if result.targets is not None:
            self.targets = {pid: result.targets[i] for i, pid in enumerate(pids) if result.has_targets[i]}
        record = {"fused_clients": pids}
        if result.weights is not None:
            n = self.cfg["num_clients"]
            full = np.zeros((n, n))
            full[np.ix_(pids, pids)] = result.weights
            record["weights"] = np.round(full, 6).tolist()
        record.update(result.info)
        return record


class _FedAvgState:
    """Flower's FedAvg over the clients' (identical) architectures."""

    def __init__(self, cfg: Config):
        from fedkd.client_round import new_client_model

        self.cfg = cfg
        self.node_partition: dict[int, int] = {}
        fed = build_federation(federation_spec(cfg))
        model, _ = new_client_model(cfg, 0, fed)
        self.arrays = ArrayRecord(model.state_dict())
        self.strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1,
                               min_available_nodes=1)

    def contents_for(self, rnd, node_ids, fingerprint, run_config, grid):
        config = protocol.train_config(rnd, self.cfg["temperature"], fingerprint, run_config)
        messages = self.strategy.configure_train(rnd, self.arrays, config, grid)
        return {m.metadata.dst_node_id: m.content for m in messages}

    def aggregate(self, rnd, valid) -> dict:
        arrays, _ = self.strategy.aggregate_train(rnd, [reply for _, reply in valid])
        if arrays is not None:
            self.arrays = arrays
        return {"fused_clients": [p.partition_id for p, _ in valid]}
