"""Reply validation: every reply a client sends is checked here before the server uses it.

:func:`validate_reply` believes nothing a client says about itself that it can bound: an invalid
reply raises :class:`InvalidReply` carrying a short machine-readable ``reason`` (:data:`REASONS`);
metric keys it does not know are dropped (and reported), never fatal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict

from fedkd import wire
from fedkd.numbers import is_int
from fedkd.probability import ROW_SUM_TOLERANCE, probability_problem
from fedkd.protocol.messages import LABEL_HISTOGRAM_KEY, message_bytes, record_arrays
from fedkd.wire import WireFormat

# Soft labels are M x C float32; anything far larger than that is refused unread.
SIZE_SLACK_BYTES = 64 * 1024

REASONS = (
    "error_reply", "missing_key", "bad_dtype", "bad_shape", "non_finite", "bad_probabilities",
    "wrong_fingerprint", "wrong_round", "oversized", "bad_metrics",
    "bad_num_examples", "bad_partition", "stray_arrays", "identity_mismatch", "unexpected_sender",
    "duplicate_reply", "internal",
)


class InvalidReply(ValueError):
    """A client's reply broke the protocol; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _unit(v: float) -> bool:
    return 0.0 <= v <= 1.0


def _non_negative(v: float) -> bool:
    return v >= 0.0


# Every metric a client may report and the range it must lie in; all must be finite except
# ``epsilon``, which is +inf when swing runs without noise (no guarantee).
METRIC_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "acc_local": (_unit, "within [0, 1]"),
    "acc_global": (_unit, "within [0, 1]"),
    "acc_local_after_digest": (_unit, "within [0, 1]"),
    "acc_local_after_revisit": (_unit, "within [0, 1]"),
    "digest_loss": (_non_negative, ">= 0"),
    "revisit_loss": (_non_negative, ">= 0"),
    "joint_loss": (_non_negative, ">= 0"),
    "distilled": (lambda v: v in (0.0, 1.0), "0 or 1"),
    "epsilon": (_non_negative, ">= 0"),
    "training_epsilon": (_non_negative, ">= 0"),  # DP-SGD (issue 22); +inf when run without noise
    "dp_noise_multiplier": (_non_negative, ">= 0"),
    "swing_mean_score": (_unit, "within [0, 1]"),
    "swing_mean_temperature": (lambda v: v > 0, "> 0"),
    "swing_top1_agreement": (_unit, "within [0, 1]"),
    "canary_exposure": (_non_negative, ">= 0"),
    "canary_exposure_max": (_non_negative, ">= 0"),
}


@dataclass(frozen=True)
class ReplyRules:
    """What a valid reply of this round looks like.

    shape: (M, C) of the soft labels, or None for a weights reply (fedavg).
    weights_spec: for weights replies, every array's name -> (shape, dtype) of the global model.
    require_global_acc: whether the run has a global test set, so ``acc_global`` must be there.
    """

    round: int
    fingerprint: str
    shape: tuple[int, int] | None
    num_partitions: int
    max_num_examples: int
    wire_format: WireFormat = field(default_factory=WireFormat)
    require_global_acc: bool = True
    weights_spec: dict[str, tuple[tuple[int, ...], str]] | None = None
    tolerance: float = ROW_SUM_TOLERANCE


@dataclass
class KnowledgeReply:
    """A validated client reply; ``partition_id`` is what it claims (the server checks it is the sender's)."""

    partition_id: int
    soft_labels: np.ndarray | None  # (M, C) float32; None for fedavg
    num_examples: int
    metrics: dict
    model: str
    nbytes: int
    dropped_metrics: tuple[str, ...] = ()
    label_histogram: list[int] | None = None


def validate_reply(message: Message, rules: ReplyRules) -> KnowledgeReply:
    """Check one reply from a client; return it parsed or raise :class:`InvalidReply`.

    Soft labels must be in ``rules.wire_format`` and nothing else; the parsed reply
    carries them decoded to float32. Weights replies must hold exactly the global
    model's arrays, with its shapes and dtypes, all finite.
    """
    if message.has_error():
        raise InvalidReply("error_reply", f"code {message.error.code}: {message.error.reason}")
    content = message.content
    nbytes = message_bytes(content)
    if rules.shape is not None:
        limit = rules.wire_format.payload_bytes(*rules.shape) + SIZE_SLACK_BYTES
        if nbytes > limit:
            raise InvalidReply("oversized", f"{nbytes} bytes > limit {limit}")

    for name, records in (("meta", content.config_records), ("metrics", content.metric_records)):
        if name not in records:
            raise InvalidReply("missing_key", f"record {name!r} is missing")
    meta = content["meta"]
    for key in ("round", "fingerprint", "partition_id", "model"):
        if key not in meta:
            raise InvalidReply("missing_key", f"meta.{key} is missing")
    if meta["fingerprint"] != rules.fingerprint:
        raise InvalidReply("wrong_fingerprint",
                           f"transfer set {meta['fingerprint']!r} != expected {rules.fingerprint!r}")
    if meta["round"] != rules.round:
        raise InvalidReply("wrong_round", f"reply for round {meta['round']!r}, expected {rules.round}")
    pid = meta["partition_id"]
    if not is_int(pid) or not 0 <= pid < rules.num_partitions:
        raise InvalidReply("bad_partition", f"partition_id {pid!r} not in [0, {rules.num_partitions})")
    num_examples, metrics, dropped, histogram = _check_metrics(content["metrics"], rules)

    soft = None
    if rules.shape is None:
        _check_weights(content, rules.weights_spec)
    else:
        if "arrays" in content.array_records:
            raise InvalidReply("stray_arrays", "a soft-label reply carries model weights")
        soft = (_check_soft_labels(content, rules.shape, rules.tolerance) if rules.wire_format.is_default
                else _check_encoded_soft_labels(content, rules.shape, rules.tolerance, rules.wire_format))
    return KnowledgeReply(partition_id=pid, soft_labels=soft, num_examples=num_examples, metrics=metrics,
                          model=str(meta["model"]), nbytes=nbytes, dropped_metrics=dropped,
                          label_histogram=histogram)


def _check_metrics(record: MetricRecord, rules: ReplyRules):
    """(num-examples, known metrics, dropped unknown keys, label histogram or None)."""
    if "num-examples" not in record:
        raise InvalidReply("missing_key", "metrics.num-examples is missing")
    n = record["num-examples"]
    if not is_int(n) or not 1 <= n <= rules.max_num_examples:
        raise InvalidReply("bad_num_examples", f"num-examples {n!r} is not an integer in [1, "
                           f"{rules.max_num_examples}] (server.max_num_examples)")
    required = ("acc_local", "acc_global") if rules.require_global_acc else ("acc_local",)
    missing = [k for k in required if k not in record]
    if missing:
        raise InvalidReply("bad_metrics", f"required metrics {missing} are missing")
    metrics, dropped, histogram = {}, [], None
    for key in record:
        value = record[key]
        if key == "num-examples":
            continue
        if key == LABEL_HISTOGRAM_KEY and rules.shape is not None:
            if (not isinstance(value, list) or len(value) != rules.shape[1]
                    or not all(is_int(v) and 0 <= v <= rules.max_num_examples for v in value)):
                raise InvalidReply("bad_metrics", f"{LABEL_HISTOGRAM_KEY} is not {rules.shape[1]} counts")
            histogram = list(value)
            continue
        if key not in METRIC_RULES:
            dropped.append(key)
            continue
        check, rule = METRIC_RULES[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        finite = number and (math.isfinite(value) or (key in ("epsilon", "training_epsilon") and value == math.inf))
        if not finite or not check(value):
            raise InvalidReply("bad_metrics", f"metric {key}={value!r} is not a finite number {rule}")
        metrics[key] = float(value)
    return int(n), metrics, tuple(sorted(dropped)), histogram


def _check_weights(content: RecordDict, spec: dict[str, tuple[tuple[int, ...], str]] | None) -> None:
    if "arrays" not in content.array_records:
        raise InvalidReply("missing_key", "record 'arrays' (model weights) is missing")
    if "knowledge" in content.array_records:
        raise InvalidReply("stray_arrays", "a weights reply carries soft labels")
    if len(content.array_records) != 1:
        raise InvalidReply("stray_arrays", f"records {sorted(content.array_records)}; expected only 'arrays'")
    arrays = content["arrays"]
    if spec is None:
        return
    if list(arrays.keys()) != list(spec):
        raise InvalidReply("bad_shape", f"weights hold {len(arrays)} arrays named differently from the global "
                           f"model's {len(spec)}")
    for name, (shape, dtype) in spec.items():
        array = arrays[name]
        if tuple(array.shape) != tuple(shape):
            raise InvalidReply("bad_shape", f"weights {name!r} have shape {tuple(array.shape)}, expected {shape}")
        if array.dtype != dtype:
            raise InvalidReply("bad_dtype", f"weights {name!r} are {array.dtype}, expected {dtype}")
        try:
            values = array.numpy()
        except Exception as exc:  # corrupt bytes behind a valid-looking header
            raise InvalidReply("bad_shape", f"weights {name!r} cannot be decoded: {exc}") from None
        if values.shape != tuple(shape):
            raise InvalidReply("bad_shape", f"weights {name!r} decode to {values.shape}, expected {shape}")
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            raise InvalidReply("non_finite", f"weights {name!r} hold NaN or Inf")


def _check_soft_labels(content: RecordDict, shape: tuple[int, int], tolerance: float) -> np.ndarray:
    if "knowledge" not in content.array_records or "soft_labels" not in content["knowledge"]:
        raise InvalidReply("missing_key", "knowledge.soft_labels is missing")
    if list(content["knowledge"].keys()) != ["soft_labels"]:
        raise InvalidReply("stray_arrays", f"knowledge holds {sorted(content['knowledge'].keys())}; "
                           "expected only soft_labels")
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
    return check_probabilities(p, tolerance)


def _check_encoded_soft_labels(content: RecordDict, shape: tuple[int, int], tolerance: float,
                               wire_format: WireFormat) -> np.ndarray:
    """Soft labels sent in a compact ``wire_format``: check the encoding, decode, check the values."""
    if "knowledge" not in content.array_records:
        raise InvalidReply("missing_key", "record 'knowledge' is missing")
    try:
        arrays = record_arrays(content["knowledge"], dense_key="soft_labels")
    except Exception as exc:  # corrupt bytes behind a valid-looking header
        raise InvalidReply("bad_shape", f"soft labels cannot be decoded: {exc}") from None
    reason = wire.check_encoded(arrays, wire_format, shape)
    if reason is not None:
        found = {k: f"{v.dtype}{v.shape}" for k, v in arrays.items()}
        raise InvalidReply(reason, f"soft labels {found} do not match wire format {wire_format} for {shape}")
    return check_probabilities(wire.decode(arrays), tolerance)


def check_probabilities(p: np.ndarray, tolerance: float = ROW_SUM_TOLERANCE) -> np.ndarray:
    """Rows that are probability vectors (``fedkd.probability.probability_problem``), or InvalidReply."""
    problem = probability_problem(p, tolerance)
    if problem is not None:
        raise InvalidReply("bad_probabilities", problem)
    return p
