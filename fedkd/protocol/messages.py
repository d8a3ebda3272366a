"""The messages between the ServerApp and ClientApps: their schemas, built and parsed.

This package is the only part of the library that knows Flower's record types.

Server -> client (message type ``train``), a RecordDict with
  ``config``  ConfigRecord: ``round`` (int), ``temperature`` (float),
              ``fingerprint`` (str, of the transfer set), ``run_config`` (JSON str: the
              client keys that differ from the defaults and a digest, see
              :func:`fedkd.config.compact_run_config`)
  ``targets`` ArrayRecord ``{"targets": (M, C) float32}`` (or the compact form of
              ``fedkd.wire`` set by ``wire_dtype``/``wire_topk``); absent in round 1,
              for ``local`` and for a client without neighbours
  ``arrays``  ArrayRecord of model weights (``fedavg`` only, built by Flower's FedAvg)

Client -> server, a RecordDict with
  ``knowledge`` ArrayRecord ``{"soft_labels": (M, C) float32}`` or its ``fedkd.wire``
                form, and nothing else (absent for fedavg)
  ``arrays``    ArrayRecord of weights (fedavg only)
  ``metrics``   MetricRecord: ``num-examples`` and the client's accuracies
                (``fedkd.protocol.validation.METRIC_RULES``)
  ``meta``      ConfigRecord: ``round``, ``fingerprint``, ``partition_id``, ``model``

Every reply goes through ``fedkd.protocol.validation.validate_reply``.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from fedkd import wire
from fedkd.config import CONFIG_DIGEST_KEY, config_digest
from fedkd.wire import WireFormat

MESSAGE_TYPE = "train"
LABEL_HISTOGRAM_KEY = "label_histogram"  # opt-in (record_label_histograms): a list of C counts


def message_bytes(content: RecordDict) -> int:
    """Serialized size of a RecordDict as it travels on the wire."""
    return recorddict_to_proto(content).ByteSize()


# ---------------------------------------------------------------- server -> client

def train_config(round_num: int, temperature: float, fingerprint: str, run_config: dict) -> ConfigRecord:
    return ConfigRecord({
        "round": int(round_num),
        "temperature": float(temperature),
        "fingerprint": fingerprint,
        "run_config": json.dumps(run_config, sort_keys=True),
    })


def build_train_content(round_num: int, temperature: float, fingerprint: str, run_config: dict,
                        targets: np.ndarray | None, wire_format: WireFormat | None = None) -> RecordDict:
    """``wire_format`` (default float32, all classes) is how the targets travel; see ``fedkd.wire``."""
    content = RecordDict({"config": train_config(round_num, temperature, fingerprint, run_config)})
    if targets is not None:
        targets = np.ascontiguousarray(targets, dtype=np.float32)
        content["targets"] = _soft_label_record(targets, wire_format, dense_key="targets")
    return content


def knowledge_record(p: np.ndarray, wire_format: WireFormat | None = None) -> ArrayRecord:
    """The ``knowledge`` record a client sends for soft labels ``p``."""
    return _soft_label_record(p, wire_format, dense_key="soft_labels")


def read_soft_labels(content: RecordDict) -> np.ndarray:
    """The soft labels of a reply's ``knowledge`` record, decoded to (M, C) float32 (unchecked)."""
    return wire.decode(record_arrays(content["knowledge"], dense_key="soft_labels"))


def _soft_label_record(p: np.ndarray, wire_format: WireFormat | None, dense_key: str) -> ArrayRecord:
    arrays = wire.encode(p, wire_format or WireFormat())
    return ArrayRecord({dense_key if k == wire.DENSE_KEY else k: Array(v) for k, v in arrays.items()})


def record_arrays(record: ArrayRecord, dense_key: str) -> dict[str, np.ndarray]:
    return {wire.DENSE_KEY if k == dense_key else k: record[k].numpy() for k in record}


def build_train_message(node_id: int, content: RecordDict) -> Message:
    return Message(content=content, dst_node_id=node_id, message_type=MESSAGE_TYPE)


@dataclass
class TrainInstruction:
    """What a client reads from the server's message."""

    round: int
    temperature: float
    fingerprint: str
    run_config: dict
    targets: np.ndarray | None
    weights: ArrayRecord | None


def checked_run_config(text: str) -> dict:
    """The run config of a train message (JSON), its digest checked against this node's defaults."""
    run_config = json.loads(text)  # a fresh dict for every message: the caller may change it
    digest = run_config.pop(CONFIG_DIGEST_KEY, None)
    if digest is not None and _resolved_digest(text) != digest:
        raise ValueError("run config mismatch: this node's fedkd resolves the server's config differently "
                         "(another fedkd version or other defaults?); install the server's version")
    return run_config


@functools.lru_cache(maxsize=8)
def _resolved_digest(text: str) -> str:
    """``config_digest`` of a message's run config. Every message of a run carries the same text, so the
    whole config is resolved and hashed once per text in a process, not once per message."""
    run_config = json.loads(text)
    run_config.pop(CONFIG_DIGEST_KEY, None)
    return config_digest(run_config)


def parse_train_message(content: RecordDict) -> TrainInstruction:
    if "config" not in content.config_records:
        raise ValueError("train message has no 'config' record")
    record = content["config"]
    targets = None
    if "targets" in content.array_records:
        targets = wire.decode(record_arrays(content["targets"], dense_key="targets"))
    weights = content["arrays"] if "arrays" in content.array_records else None
    run_config = checked_run_config(str(record["run_config"]))
    return TrainInstruction(
        round=int(record["round"] if "round" in record else record["server-round"]),
        temperature=float(record["temperature"]),
        fingerprint=str(record["fingerprint"]),
        run_config=run_config,
        targets=targets,
        weights=weights,
    )


# ---------------------------------------------------------------- client -> server

def build_reply_content(*, round_num: int, fingerprint: str, partition_id: int, model: str,
                        num_examples: int, metrics: dict, soft_labels: np.ndarray | None = None,
                        weights: ArrayRecord | None = None, wire_format: WireFormat | None = None,
                        label_histogram: list[int] | None = None) -> RecordDict:
    record: dict = {"num-examples": int(num_examples)}
    record.update({k: float(v) for k, v in metrics.items()})
    if label_histogram is not None:
        record[LABEL_HISTOGRAM_KEY] = [int(v) for v in label_histogram]
    content = RecordDict({
        "metrics": MetricRecord(record),
        "meta": ConfigRecord({"round": int(round_num), "fingerprint": fingerprint,
                              "partition_id": int(partition_id), "model": model}),
    })
    if soft_labels is not None:
        content["knowledge"] = _soft_label_record(soft_labels, wire_format, dense_key="soft_labels")
    if weights is not None:
        content["arrays"] = weights
    return content
