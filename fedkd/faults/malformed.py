"""The catalogue of malformed replies: each breaks the protocol one way, with the reason the server must give.

Every entry turns an honest reply's content (a Flower RecordDict) into a broken
one, or, for ``identify_lie``, an honest identify answer into a lying one. The
server must reject each with the listed reason (or, where the reason is None,
accept the reply with the offending part dropped) and carry on with the other
replies. ``docs/robustness.md`` lists the measured outcome of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedkd import protocol, wire


class InjectedFault(RuntimeError):
    """Raised inside a ClientApp on purpose: Flower turns it into an error reply."""


@dataclass(frozen=True)
class Malformation:
    reason: str | None          # what the server must say (None: accepted, the bad part dropped)
    description: str
    apply: Callable[[RecordDict, int], RecordDict]  # (honest content, number of clients) -> broken content
    target: str = "soft_labels"  # which replies it applies to: soft_labels, weights or identify


def _copy(content: RecordDict) -> RecordDict:
    return RecordDict({k: v for k, v in content.items()})


def _with_soft(content: RecordDict, soft: np.ndarray) -> RecordDict:
    out = _copy(content)
    out["knowledge"] = ArrayRecord({wire.DENSE_KEY: Array(np.ascontiguousarray(soft))})
    return out


def _soft(content: RecordDict) -> np.ndarray:
    return protocol.read_soft_labels(content).copy()


def _with_meta(content: RecordDict, **changes) -> RecordDict:
    out = _copy(content)
    meta = {k: content["meta"][k] for k in content["meta"]}
    meta.update(changes)
    out["meta"] = ConfigRecord(meta)
    return out


def _with_metrics(content: RecordDict, drop: tuple[str, ...] = (), **changes) -> RecordDict:
    out = _copy(content)
    metrics = {k: content["metrics"][k] for k in content["metrics"] if k not in drop}
    metrics.update(changes)
    out["metrics"] = MetricRecord(metrics)
    return out


def _nan(c: RecordDict, n: int) -> RecordDict:
    soft = _soft(c)
    soft[0, 0] = np.nan
    return _with_soft(c, soft)


def _inf(c: RecordDict, n: int) -> RecordDict:
    soft = _soft(c)
    soft[-1, :] = np.inf
    return _with_soft(c, soft)


def _negative(c: RecordDict, n: int) -> RecordDict:
    soft = _soft(c)
    soft[0, :] = 0.0
    soft[0, 0], soft[0, 1] = 1.5, -0.5  # the row still sums to 1: only the sign gives it away
    return _with_soft(c, soft)


def _negative_entry(c: RecordDict, n: int) -> RecordDict:
    """Two tiny negative entries (-1e-6 and -9e-4, within the old row-sum tolerance) on the first row,
    paid for by its largest entry, so that the row still sums to 1 in float32."""
    soft = _soft(c)
    top = int(np.argmax(soft[0]))
    others = [j for j in range(soft.shape[1]) if j != top][:2]
    soft[0, others[0]], soft[0, others[1]] = -1e-6, -9e-4
    soft[0, top] += np.float32(1.0) - soft[0].sum(dtype=np.float64)
    return _with_soft(c, soft)


def _nan_entry(c: RecordDict, n: int) -> RecordDict:
    """One NaN entry in the middle of the upload (the other rows are honest)."""
    soft = _soft(c)
    soft[soft.shape[0] // 2, soft.shape[1] // 2] = np.nan
    return _with_soft(c, soft)


def _oversized(c: RecordDict, n: int) -> RecordDict:
    soft = _soft(c)
    copies = 2 + protocol.SIZE_SLACK_BYTES // max(1, soft.nbytes)
    return _with_soft(c, np.tile(soft, (copies, 1)))


def _missing(c: RecordDict, n: int) -> RecordDict:
    out = _copy(c)
    del out["knowledge"]
    return out


def _stray(c: RecordDict, n: int) -> RecordDict:
    """Keep the real knowledge and add top-k arrays beside it (the server must not pick either)."""
    out = _copy(c)
    arrays = {k: c["knowledge"][k] for k in c["knowledge"]}
    m = _soft(c).shape[0]
    arrays[wire.TOPK_VALUES] = Array(np.full((m, 1), 1.0, dtype=np.float32))
    arrays[wire.TOPK_INDICES] = Array(np.zeros((m, 1), dtype=np.uint8))
    arrays[wire.NUM_CLASSES] = Array(np.array([2], dtype=np.uint16))
    out["knowledge"] = ArrayRecord(arrays)
    return out


def _weights(c: RecordDict, change: Callable[[dict[str, np.ndarray]], None]) -> RecordDict:
    out = _copy(c)
    arrays = {k: c["arrays"][k].numpy().copy() for k in c["arrays"]}
    change(arrays)
    out["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return out


def _first_float(arrays: dict[str, np.ndarray]) -> str:
    return next(k for k, v in arrays.items() if np.issubdtype(v.dtype, np.floating) and v.size)


def _fedavg_nan(c: RecordDict, n: int) -> RecordDict:
    def change(arrays):
        arrays[_first_float(arrays)].flat[0] = np.nan
    return _weights(c, change)


def _fedavg_bad_shape(c: RecordDict, n: int) -> RecordDict:
    def change(arrays):
        key = _first_float(arrays)
        arrays[key] = arrays[key].reshape(-1)[:-1]
    return _weights(c, change)


def _raise(c: RecordDict, n: int) -> RecordDict:
    raise InjectedFault("injected fault (fault.malformed): this client fails its round on purpose")


def _identify_lie(c: RecordDict, n: int) -> RecordDict:
    meta = {k: c["meta"][k] for k in c["meta"] if k != "signature"}
    meta["partition_id"] = (int(meta["partition_id"]) + 1) % n
    return RecordDict({"meta": ConfigRecord(meta)})


def _impersonate(c: RecordDict, n: int) -> RecordDict:
    return _with_meta(c, partition_id=(int(c["meta"]["partition_id"]) + 1) % n)


CATALOGUE: dict[str, Malformation] = {
    "nan": Malformation("bad_probabilities", "one soft-label entry is NaN", _nan),
    "inf": Malformation("bad_probabilities", "one row of soft labels is +Inf", _inf),
    "bad_shape": Malformation("bad_shape", "the last transfer sample's row is missing (M-1 x C)",
                              lambda c, n: _with_soft(c, _soft(c)[:-1])),
    "bad_dtype": Malformation("bad_dtype", "soft labels sent as float64 instead of float32",
                              lambda c, n: _with_soft(c, _soft(c).astype(np.float64))),
    "negative": Malformation("bad_probabilities", "a row with a negative entry that still sums to 1", _negative),
    "not_normalised": Malformation("bad_probabilities", "every row scaled by 0.5 (sums to 0.5)",
                                   lambda c, n: _with_soft(c, _soft(c) * np.float32(0.5))),
    "wrong_fingerprint": Malformation("wrong_fingerprint", "soft labels computed on another transfer set",
                                      lambda c, n: _with_meta(c, fingerprint="0" * len(c["meta"]["fingerprint"])), target="any"),
    "oversized": Malformation("oversized", "the soft labels repeated until the reply exceeds the size limit",
                              _oversized),
    "missing_key": Malformation("missing_key", "the knowledge record (soft labels) is left out", _missing),
    "wrong_round": Malformation("wrong_round", "a stale reply: it names the previous round",
                                lambda c, n: _with_meta(c, round=int(c["meta"]["round"]) - 1), target="any"),
    "bad_partition": Malformation("bad_partition", "claims a client id outside [0, N)",
                                  lambda c, n: _with_meta(c, partition_id=n), target="any"),
    "bad_metrics": Malformation("bad_metrics", "a NaN accuracy in the metrics",
                                lambda c, n: _with_metrics(c, acc_local=float("nan")), target="any"),
    "duplicate_partition": Malformation("identity_mismatch", "claims the next client's id, (id + 1) mod N "
                                        "(the v1 name of impersonate)", _impersonate, target="any"),
    "error_reply": Malformation("error_reply", "the ClientApp raises; Flower sends an error reply instead", _raise, target="any"),
    # catalogue v2: what a client says about itself
    "no_accuracy": Malformation("bad_metrics", "the metrics hold only num-examples (no accuracies)",
                                lambda c, n: _with_metrics(c, drop=tuple(k for k in c["metrics"]
                                                                         if k != "num-examples")), target="any"),
    "accuracy_out_of_range": Malformation("bad_metrics", "claims acc_local = 1e6",
                                          lambda c, n: _with_metrics(c, acc_local=1e6), target="any"),
    "huge_num_examples": Malformation("bad_num_examples", "claims num-examples = 10^12",
                                      lambda c, n: _with_metrics(c, **{"num-examples": 10**12}), target="any"),
    "stray_wire_arrays": Malformation("stray_arrays", "the knowledge record also carries top-k arrays", _stray),
    "impersonate": Malformation("identity_mismatch", "the reply claims the next client's id, (id + 1) mod N",
                                _impersonate, target="any"),
    "identify_lie": Malformation("identity_mismatch", "answers the identify query with the next client's id",
                                 _identify_lie, target="identify"),
    # catalogue v3: rows that are almost probability vectors (issue 19)
    "negative_entry": Malformation("bad_probabilities", "one entry of -1e-6 and one of -9e-4 in the first row, "
                                   "which still sums to 1", _negative_entry),
    "nan_entry": Malformation("bad_probabilities", "one NaN entry in the middle of the soft labels", _nan_entry),
    "fedavg_nan": Malformation("non_finite", "one weight is NaN", _fedavg_nan, target="weights"),
    "fedavg_bad_shape": Malformation("bad_shape", "one weight array loses its last entry", _fedavg_bad_shape,
                                     target="weights"),
    "fedavg_extra_metric": Malformation(None, "one extra metric key (dropped and counted, never fatal)",
                                        lambda c, n: _with_metrics(c, extra_metric=1.0), target="weights"),
}
