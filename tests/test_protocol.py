"""Every class of invalid reply is rejected with its reason; a valid one passes."""
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from fedkd import protocol
from fedkd.protocol import InvalidReply, validate_reply

M, C, FP = 6, 4, "abc123"


def good_soft_labels():
    return np.full((M, C), 1.0 / C, dtype=np.float32)


def reply(soft=None, **overrides):
    soft = good_soft_labels() if soft is None else soft
    fields = dict(round_num=2, fingerprint=FP, partition_id=1, model="mlp", num_examples=50,
                  metrics={"acc_local": 0.9, "acc_global": 0.5}, soft_labels=soft)
    fields.update(overrides)
    return Message(content=protocol.build_reply_content(**fields), dst_node_id=7, message_type="train")


def rules(shape=(M, C), **overrides):
    return protocol.ReplyRules(**{**dict(round=2, fingerprint=FP, shape=shape, num_partitions=3,
                                         max_num_examples=1000), **overrides})


def check(message, shape=(M, C), **overrides):
    return validate_reply(message, rules(shape, **overrides))


def test_valid_reply_passes_and_reports_its_size():
    parsed = check(reply())
    assert parsed.partition_id == 1 and parsed.num_examples == 50
    np.testing.assert_array_equal(parsed.soft_labels, good_soft_labels())
    assert M * C * 4 <= parsed.nbytes < M * C * 4 + 1024


def _drop(message, record, key=None):
    content = message.content
    if key is None:
        del content[record]
    else:
        del content[record][key]
    return message


def _with_stray(message):
    arrays = {k: message.content["knowledge"][k] for k in message.content["knowledge"]}
    arrays["topk_values"] = Array(np.ones((M, 1), np.float32))
    message.content["knowledge"] = ArrayRecord(arrays)
    return message


def _raw_array(dtype, shape, data):
    return Array(dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)


CASES = {
    "missing_key": [
        lambda: _drop(reply(), "knowledge"),
        lambda: _drop(reply(), "meta"),
        lambda: _drop(reply(), "metrics", "num-examples"),
        lambda: _drop(reply(), "meta", "partition_id"),
    ],
    "bad_shape": [lambda: reply(soft=np.full((M + 1, C), 1.0 / C, np.float32)),
                  lambda: reply(soft=np.full((M, C - 1), 1.0 / (C - 1), np.float32))],
    "bad_dtype": [lambda: reply(soft=np.full((M, C), 1.0 / C, np.float64))],
    "bad_probabilities": [lambda: reply(soft=np.where(np.eye(M, C) > 0, np.nan, 0.25).astype(np.float32)),
                          lambda: reply(soft=np.full((M, C), np.inf, np.float32)),
                          lambda: reply(soft=np.tile(np.array([1.5, -0.5, 0, 0], np.float32), (M, 1))),
                          lambda: reply(soft=np.full((M, C), 0.3, np.float32)),
                          # tiny negative entries, the row still summing to 1 (issue 19: -1e-6 made the
                          # default distance NaN and silenced every client)
                          lambda: reply(soft=np.tile(np.array([1.000001, -1e-6, 0, 0], np.float32), (M, 1))),
                          lambda: reply(soft=np.tile(np.array([1.0009, -9e-4, 0, 0], np.float32), (M, 1)))],
    "wrong_fingerprint": [lambda: reply(fingerprint="other")],
    "wrong_round": [lambda: reply(round_num=1)],
    "bad_partition": [lambda: reply(partition_id=3), lambda: reply(partition_id=-1)],
    "bad_metrics": [lambda: reply(metrics={"acc_local": float("nan"), "acc_global": 0.1}),
                    lambda: reply(metrics={"acc_local": 1e6, "acc_global": 0.1}),
                    lambda: reply(metrics={"acc_local": 0.5, "acc_global": -0.1}),
                    lambda: reply(metrics={"acc_global": 0.5}),
                    lambda: reply(metrics={}),
                    lambda: reply(metrics={"acc_local": 0.5, "acc_global": 0.5, "digest_loss": float("inf")})],
    "bad_num_examples": [lambda: reply(num_examples=-5), lambda: reply(num_examples=0),
                         lambda: reply(num_examples=10**12)],
    "stray_arrays": [lambda: _with_stray(reply())],
    "oversized": [lambda: reply(soft=np.full((M * 1000, C), 1.0 / C, np.float32))],
}


@pytest.mark.parametrize("reason,index", [(r, i) for r, fs in CASES.items() for i in range(len(fs))])
def test_invalid_replies_are_rejected_with_their_reason(reason, index):
    with pytest.raises(InvalidReply) as info:
        check(CASES[reason][index]())
    assert info.value.reason == reason


def test_error_reply_is_rejected():
    msg = Message(error=Error(code=5, reason="node unavailable"), reply_to=reply())
    with pytest.raises(InvalidReply) as info:
        check(msg)
    assert info.value.reason == "error_reply" and "node unavailable" in str(info.value)


def test_corrupt_array_bytes_are_rejected():
    msg = reply()
    msg.content["knowledge"] = ArrayRecord({"soft_labels": _raw_array("float32", (M, C), b"\x00" * 10)})
    with pytest.raises(InvalidReply) as info:
        check(msg)
    assert info.value.reason == "bad_shape"


def test_weights_reply_for_fedavg():
    spec = {"w": ((3,), "float32")}
    msg = reply(soft_labels=None, weights=ArrayRecord({"w": Array(np.zeros(3, np.float32))}))
    parsed = check(msg, shape=None, weights_spec=spec)
    assert parsed.soft_labels is None
    with pytest.raises(InvalidReply, match="missing_key"):
        check(reply(soft_labels=None), shape=None, weights_spec=spec)
    cases = {"bad_shape": ArrayRecord({"w": Array(np.zeros(2, np.float32))}),
             "bad_dtype": ArrayRecord({"w": Array(np.zeros(3, np.float64))}),
             "non_finite": ArrayRecord({"w": Array(np.array([0, np.nan, 0], np.float32))})}
    for reason, weights in cases.items():
        with pytest.raises(InvalidReply) as info:
            check(reply(soft_labels=None, weights=weights), shape=None, weights_spec=spec)
        assert info.value.reason == reason
    extra = ArrayRecord({"w": Array(np.zeros(3, np.float32)), "v": Array(np.zeros(1, np.float32))})
    with pytest.raises(InvalidReply, match="bad_shape"):
        check(reply(soft_labels=None, weights=extra), shape=None, weights_spec=spec)


def test_unknown_metric_keys_are_dropped_and_reported_not_fatal():
    parsed = check(reply(metrics={"acc_local": 0.9, "acc_global": 0.5, "mystery": 3.0}))
    assert "mystery" not in parsed.metrics and parsed.dropped_metrics == ("mystery",)


def test_global_accuracy_is_optional_without_a_global_test_set():
    parsed = check(reply(metrics={"acc_local": 0.9}), require_global_acc=False)
    assert parsed.metrics == {"acc_local": 0.9}


def test_compact_wire_reply_with_stray_dense_array_is_refused():
    from fedkd.wire import WireFormat

    fmt = WireFormat("uint8", 2)
    msg = reply(wire_format=fmt)
    arrays = {k: msg.content["knowledge"][k] for k in msg.content["knowledge"]}
    arrays["soft_labels"] = Array(np.full((M, C), 0.25, np.float32))
    msg.content["knowledge"] = ArrayRecord(arrays)
    with pytest.raises(InvalidReply) as info:
        check(msg, wire_format=fmt)
    assert info.value.reason == "stray_arrays"


def test_train_message_round_trip():
    targets = np.random.default_rng(0).dirichlet(np.ones(C), size=M).astype(np.float32)
    content = protocol.build_train_content(3, 2.0, FP, {"rounds": 5}, targets)
    order = protocol.parse_train_message(content)
    assert (order.round, order.temperature, order.fingerprint) == (3, 2.0, FP)
    assert order.run_config == {"rounds": 5}
    np.testing.assert_array_equal(order.targets, targets)
    assert protocol.parse_train_message(protocol.build_train_content(1, 2.0, FP, {}, None)).targets is None
