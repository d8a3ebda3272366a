"""The wire format between the ServerApp and ClientApps: build, parse, validate.

This is the only module of the library that knows Flower's record types.

Server -> client (message type ``train``), a RecordDict with
  ``config``  ConfigRecord: ``round`` (int), ``temperature`` (float),
              ``fingerprint`` (str, of the transfer set), ``run_config`` (JSON str: the
              keys that differ from the defaults and a digest, see :func:`compact_run_config`)
  ``targets`` ArrayRecord ``{"targets": (M, C) float32}`` (or the compact form of
              ``fedkd.wire`` set by ``wire_dtype``/``wire_topk``); absent in round 1,
              for ``local`` and for a client without neighbours
  ``arrays``  ArrayRecord of model weights (``fedavg`` only, built by Flower's FedAvg)

Client -> server, a RecordDict with
  ``knowledge`` ArrayRecord ``{"soft_labels": (M, C) float32}`` or its ``fedkd.wire``
                form (absent for fedavg)
  ``arrays``    ArrayRecord of weights (fedavg only)
  ``metrics``   MetricRecord: ``num-examples`` and the client's accuracies
  ``meta``      ConfigRecord: ``round``, ``fingerprint``, ``partition_id``, ``model``

Every reply goes through :func:`validate_reply`; an invalid one raises
:class:`InvalidReply` carrying a short machine-readable ``reason``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from fedkd import wire
from fedkd.wire import WireFormat

MESSAGE_TYPE = "train"
ROW_SUM_TOLERANCE = 1e-3
# Soft labels are M x C float32; anything far larger than that is refused unread.
SIZE_SLACK_BYTES = 64 * 1024

REASONS = (
    "error_reply", "missing_key", "bad_dtype", "bad_shape", "non_finite", "negative",
    "not_normalised", "wrong_fingerprint", "wrong_round", "oversized", "bad_metrics",
    "bad_partition", "duplicate_partition",
)


class InvalidReply(ValueError):
    """A client's reply broke the protocol; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class KnowledgeReply:
    """A validated client reply."""

    partition_id: int
    soft_labels: np.ndarray | None  # (M, C) float32; None for fedavg
    num_examples: int
    metrics: dict
    model: str
    nbytes: int


def message_bytes(content: RecordDict) -> int:
    """Serialized size of a RecordDict as it travels on the wire."""
    return recorddict_to_proto(content).ByteSize()


# ---------------------------------------------------------------- server -> client

CONFIG_DIGEST_KEY = "_config_digest"


def compact_run_config(run_config: dict) -> dict:
    """The keys of ``run_config`` that differ from fedkd's defaults, plus a digest of the resolved config.

    Every train message carries the run config; with all ~60 keys that was ~1.4 KB per message, more
    than compact soft labels themselves. The client rebuilds the full config from its own defaults
    (``make_config``) and :func:`parse_train_message` checks the digest, so a node whose fedkd has other
    keys or defaults (another version) fails loudly instead of running a different experiment.
    """
    from fedkd.config import make_config

    defaults = make_config({}).to_flower()
    compact = {k: v for k, v in run_config.items() if k not in defaults or defaults[k] != v}
    compact[CONFIG_DIGEST_KEY] = config_digest(compact)
    return compact


def config_digest(run_config: dict) -> str:
    """Short hash of the full config that ``run_config`` resolves to on this node."""
    import hashlib

    from fedkd.config import make_config

    resolved = make_config({k: v for k, v in run_config.items() if k != CONFIG_DIGEST_KEY}).to_flower()
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


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


def _soft_label_record(p: np.ndarray, wire_format: WireFormat | None, dense_key: str) -> ArrayRecord:
    arrays = wire.encode(p, wire_format or WireFormat())
    return ArrayRecord({dense_key if k == wire.DENSE_KEY else k: Array(v) for k, v in arrays.items()})


def _record_arrays(record: ArrayRecord, dense_key: str) -> dict[str, np.ndarray]:
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


def parse_train_message(content: RecordDict) -> TrainInstruction:
    if "config" not in content.config_records:
        raise ValueError("train message has no 'config' record")
    cfg = content["config"]
    targets = None
    if "targets" in content.array_records:
        targets = wire.decode(_record_arrays(content["targets"], dense_key="targets"))
    weights = content["arrays"] if "arrays" in content.array_records else None
    run_config = json.loads(str(cfg["run_config"]))
    digest = run_config.pop(CONFIG_DIGEST_KEY, None)
    if digest is not None and config_digest(run_config) != digest:
        raise ValueError("run config mismatch: this node's fedkd resolves the server's config differently "
                         "(another fedkd version or other defaults?); install the server's version")
    return TrainInstruction(
        round=int(cfg["round"] if "round" in cfg else cfg["server-round"]),
        temperature=float(cfg["temperature"]),
        fingerprint=str(cfg["fingerprint"]),
        run_config=run_config,
        targets=targets,
        weights=weights,
    )


# ---------------------------------------------------------------- client -> server

def build_reply_content(*, round_num: int, fingerprint: str, partition_id: int, model: str,
                        num_examples: int, metrics: dict, soft_labels: np.ndarray | None = None,
                        weights: ArrayRecord | None = None, wire_format: WireFormat | None = None) -> RecordDict:
    record = {"num-examples": int(num_examples)}
    record.update({k: float(v) for k, v in metrics.items()})
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


def validate_reply(message: Message, *, expected_round: int, fingerprint: str,
                   shape: tuple[int, int] | None, num_partitions: int,
                   tolerance: float = ROW_SUM_TOLERANCE, wire_format: WireFormat | None = None) -> KnowledgeReply:
    """Check one reply from a client; return it parsed or raise :class:`InvalidReply`.

    shape: the expected (M, C) of the soft labels, or None for a weights reply
    (fedavg), where the ``knowledge`` record must be absent and ``arrays`` present.
    wire_format: how soft labels must be encoded (default float32, all classes); the
    parsed reply carries them decoded to float32.
    """
    wire_format = wire_format or WireFormat()
    if message.has_error():
        raise InvalidReply("error_reply", f"code {message.error.code}: {message.error.reason}")
    content = message.content
    nbytes = message_bytes(content)
    if shape is not None:
        limit = wire_format.payload_bytes(*shape) + SIZE_SLACK_BYTES
        if nbytes > limit:
            raise InvalidReply("oversized", f"{nbytes} bytes > limit {limit}")

    for name, records in (("meta", content.config_records), ("metrics", content.metric_records)):
        if name not in records:
            raise InvalidReply("missing_key", f"record {name!r} is missing")
    meta, metrics = content["meta"], content["metrics"]
    for key in ("round", "fingerprint", "partition_id", "model"):
        if key not in meta:
            raise InvalidReply("missing_key", f"meta.{key} is missing")
    if "num-examples" not in metrics:
        raise InvalidReply("missing_key", "metrics.num-examples is missing")

    if meta["fingerprint"] != fingerprint:
        raise InvalidReply("wrong_fingerprint",
                           f"transfer set {meta['fingerprint']!r} != expected {fingerprint!r}")
    if meta["round"] != expected_round:
        raise InvalidReply("wrong_round", f"reply for round {meta['round']}, expected {expected_round}")
    pid = meta["partition_id"]
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < num_partitions:
        raise InvalidReply("bad_partition", f"partition_id {pid!r} not in [0, {num_partitions})")
    values = {k: metrics[k] for k in metrics}
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values()):
        raise InvalidReply("bad_metrics", f"metrics must be finite numbers, got {values}")
    if values["num-examples"] < 0:
        raise InvalidReply("bad_metrics", "num-examples is negative")

    soft = None
    if shape is None:
        if "arrays" not in content.array_records:
            raise InvalidReply("missing_key", "record 'arrays' (model weights) is missing")
    else:
        soft = (_check_soft_labels(content, shape, tolerance) if wire_format.is_default
                else _check_encoded_soft_labels(content, shape, tolerance, wire_format))
    return KnowledgeReply(partition_id=pid, soft_labels=soft, num_examples=int(values["num-examples"]),
                          metrics=values, model=str(meta["model"]), nbytes=nbytes)


def _check_soft_labels(content: RecordDict, shape: tuple[int, int], tolerance: float) -> np.ndarray:
    if "knowledge" not in content.array_records or "soft_labels" not in content["knowledge"]:
        raise InvalidReply("missing_key", "knowledge.soft_labels is missing")
    array = content["knowledge"]["soft_labels"]
    if array.dtype != "float32":
        raise InvalidReply("bad_dtype", f"soft labels are {array.dtype}, expected float32")
    if tuple(array.shape) != tuple(shape):
        raise InvalidReply("bad_shape", f"soft labels have shape {tuple(array.shape)}, expected {tuple(shape)}")
    try:
        p = array.numpy()
    except Exception as exc:  # corrupt bytes behind a valid-looking header
        raise InvalidReply("bad_shape", f"soft labels cannot be decoded: {exc}") from None
    if p.shape != tuple(shape) or p.dtype != np.float32:
        raise InvalidReply("bad_shape", f"decoded soft labels are {p.dtype}{p.shape}, expected float32{shape}")
    return _check_probabilities(p, tolerance)


def _check_encoded_soft_labels(content: RecordDict, shape: tuple[int, int], tolerance: float,
                               wire_format: WireFormat) -> np.ndarray:
    """Soft labels sent in a compact ``wire_format``: check the encoding, decode, check the values."""
    if "knowledge" not in content.array_records:
        raise InvalidReply("missing_key", "record 'knowledge' is missing")
    try:
        arrays = _record_arrays(content["knowledge"], dense_key="soft_labels")
    except Exception as exc:  # corrupt bytes behind a valid-looking header
        raise InvalidReply("bad_shape", f"soft labels cannot be decoded: {exc}") from None
    reason = wire.check_encoded(arrays, wire_format, shape)
    if reason is not None:
        found = {k: f"{v.dtype}{v.shape}" for k, v in arrays.items()}
        raise InvalidReply(reason, f"soft labels {found} do not match wire format {wire_format} for {shape}")
    return _check_probabilities(wire.decode(arrays), tolerance)


def _check_probabilities(p: np.ndarray, tolerance: float) -> np.ndarray:
    if not np.all(np.isfinite(p)):
        raise InvalidReply("non_finite", f"{int(np.sum(~np.isfinite(p)))} NaN/Inf entries")
    if np.any(p < -tolerance):
        raise InvalidReply("negative", f"minimum entry {float(p.min()):.4g} < 0")
    worst = float(np.max(np.abs(p.sum(axis=1) - 1.0)))
    if worst > tolerance:
        raise InvalidReply("not_normalised", f"a row sums to 1 {'+' if worst > 0 else ''}{worst:.4g} (tolerance {tolerance})")
    return p


# ---------------------------------------------------------------- identify handshake (after a resume)
# Node ids change when processes restart, so a resumed server does not know which
# node holds which partition; it asks with a ``query`` message before sending targets.

IDENTIFY_TYPE = "query"


def build_identify_message(node_id: int) -> Message:
    return Message(content=RecordDict({"config": ConfigRecord({"ask": "partition_id"})}),
                   dst_node_id=node_id, message_type=IDENTIFY_TYPE)


def build_identify_reply(partition_id: int) -> RecordDict:
    return RecordDict({"meta": ConfigRecord({"partition_id": int(partition_id)})})


def parse_identify_reply(message: Message, num_partitions: int) -> int:
    """The partition id a node reports, or :class:`InvalidReply`."""
    if message.has_error():
        raise InvalidReply("error_reply", f"code {message.error.code}: {message.error.reason}")
    if "meta" not in message.content.config_records or "partition_id" not in message.content["meta"]:
        raise InvalidReply("missing_key", "meta.partition_id is missing")
    pid = message.content["meta"]["partition_id"]
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < num_partitions:
        raise InvalidReply("bad_partition", f"partition_id {pid!r} not in [0, {num_partitions})")
    return pid


# ---------------------------------------------------------------- node state on disk

def state_to_bytes(state: RecordDict) -> bytes:
    """A node's whole ``context.state`` as bytes (the node-side checkpoint)."""
    return recorddict_to_proto(state).SerializeToString()


def state_from_bytes(blob: bytes) -> RecordDict:
    from flwr.common.serde import recorddict_from_proto
    from flwr.proto.recorddict_pb2 import RecordDict as RecordDictProto

    proto = RecordDictProto()
    proto.ParseFromString(blob)
    return recorddict_from_proto(proto)
