"""Correctness of what was made faster or smaller (docs/performance.md): nothing here measures time.

- KnFu's vectorised fusion (one BLAS product) equals a plain-loop reference on random inputs, and so do
  FedMD's and DS-FL's averages;
- compact wire formats for soft labels (float16, uint8, top-k) round-trip within their stated bounds,
  and the protocol accepts exactly the configured format;
- a real simulation with the bounded in-flight window and a compact wire format loses no reply.
"""
import json
import math

import numpy as np
import pytest
from flwr.app import Message

from fedkd import protocol, wire
from fedkd.probability import ROW_SUM_TOLERANCE
from fedkd.config import CONFIG_DIGEST_KEY, ConfigError, compact_run_config, make_config
from fedkd.fusion import fuse_dsfl, fuse_fedmd, fuse_knfu
from fedkd.protocol import InvalidReply, validate_reply
from fedkd.wire import WireFormat


def random_soft_labels(n, m, c, seed=0, peaked=2.0):
    """Non-IID-looking rows: softmax of Gaussian logits with a per-client bias."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, m, c)) * peaked + rng.standard_normal((n, 1, c)) * peaked
    p = np.exp(z - z.max(axis=2, keepdims=True))
    return (p / p.sum(axis=2, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------ fusion vs plain-loop references

def knfu_reference(p32, beta, tau, include_self):
    """KnFu's five steps (fedkd/fusion/knfu.py) written as plain loops over clients, classes and samples."""
    p = p32.astype(np.float64)
    n, m, c = p.shape
    profiles = []
    for i in range(n):
        e = [sum(p[i, s, k] for s in range(m)) / m + 1e-12 for k in range(c)]
        total = sum(e)
        profiles.append([v / total for v in e])
    weights = np.zeros((n, n))
    for i in range(n):
        scores = {}
        for j in range(n):
            if j == i and not include_self:
                continue
            kl = max(sum(a * math.log(a / b) for a, b in zip(profiles[i], profiles[j])), 0.0)
            scores[j] = -beta * kl
        if not scores:
            continue
        top = max(scores.values())
        exp = {j: math.exp(s - top) for j, s in scores.items()}
        total = sum(exp.values())
        w = {j: v / total for j, v in exp.items()}
        threshold = 1.0 / n if tau is None else tau
        best = max(w.values())
        kept = {j: v for j, v in w.items() if v >= threshold or v == best}
        total = sum(kept.values())
        for j, v in kept.items():
            weights[i, j] = v / total
    targets = np.zeros((n, m, c))
    for i in range(n):
        for j in range(n):
            if weights[i, j]:
                targets[i] += weights[i, j] * p[j]
    return targets.astype(np.float32), weights


@pytest.mark.parametrize("n,m,c,beta,tau,include_self", [
    (1, 5, 3, 10.0, None, True),
    (2, 7, 2, 10.0, None, False),
    (9, 13, 10, 10.0, None, False),
    (9, 13, 10, 0.5, None, True),
    (12, 4, 5, 3.0, 0.2, False),
    (30, 6, 4, 10.0, 0.0, True),
])
def test_knfu_equals_plain_loop_reference(n, m, c, beta, tau, include_self):
    p = random_soft_labels(n, m, c, seed=n * 100 + m)
    result = fuse_knfu(p, beta=beta, tau=tau, include_self=include_self)
    want_targets, want_weights = knfu_reference(p, beta, tau, include_self)
    np.testing.assert_allclose(result.weights, want_weights, rtol=1e-9, atol=1e-12)
    has = result.has_targets
    np.testing.assert_allclose(result.targets[has], want_targets[has], rtol=1e-5, atol=1e-7)
    assert result.targets.dtype == np.float32 and result.targets.shape == (n, m, c)


def test_knfu_mix_is_the_einsum_it_replaced():
    from fedkd.fusion.knfu import mix_soft_labels

    rng = np.random.default_rng(3)
    w, p = rng.random((17, 17)), rng.random((17, 11, 6))
    mixed = mix_soft_labels(w, p)
    assert mixed.dtype == np.float32  # the precision of the uploads and of the targets sent back
    np.testing.assert_allclose(mixed, np.einsum("nm,mic->nic", w, p), rtol=1e-5)  # 17 float32 additions


def test_fedmd_and_dsfl_equal_plain_loop_references():
    p = random_soft_labels(7, 9, 4, seed=5)
    counts = np.arange(1, 8, dtype=np.float64)
    mean = sum(p[i].astype(np.float64) * counts[i] for i in range(7)) / counts.sum()
    fedmd = fuse_fedmd(p, counts, weighted=True)
    for i in range(7):
        np.testing.assert_allclose(fedmd.targets[i], mean, rtol=1e-6)
    plain = sum(p[i].astype(np.float64) for i in range(7)) / 7
    sharp = np.exp(np.log(plain + 1e-12) / 0.5)
    sharp /= sharp.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fuse_dsfl(p, temperature=0.5).targets[3], sharp, rtol=1e-5)


# ------------------------------------------------------------------ wire formats round-trip within bounds

ROWS = random_soft_labels(1, 400, 10, seed=11, peaked=3.0)[0]


def round_trip(p, fmt):
    return wire.decode(wire.encode(p, fmt))


def test_float32_is_the_unchanged_default():
    arrays = wire.encode(ROWS, WireFormat())
    assert list(arrays) == [wire.DENSE_KEY] and arrays[wire.DENSE_KEY].dtype == np.float32
    np.testing.assert_array_equal(round_trip(ROWS, WireFormat()), ROWS)


def test_float16_relative_error_is_within_its_bound():
    back = round_trip(ROWS, WireFormat("float16"))
    assert back.dtype == np.float32
    assert np.all(np.abs(back - ROWS) <= wire.FLOAT16_RELATIVE_ERROR * ROWS + 1e-7)  # + float16 subnormals
    assert np.max(np.abs(back.sum(axis=1) - 1)) <= ROW_SUM_TOLERANCE


def test_uint8_rows_stay_normalised_and_within_one_count():
    arrays = wire.encode(ROWS, WireFormat("uint8"))
    assert np.all(arrays[wire.DENSE_KEY].astype(int).sum(axis=1) == 255)
    back = round_trip(ROWS, WireFormat("uint8"))
    assert np.max(np.abs(back - ROWS)) < wire.UINT8_ABS_ERROR
    np.testing.assert_allclose(back.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_keeps_the_largest_and_spreads_the_rest(dtype, k):
    fmt = WireFormat(dtype, k)
    arrays = wire.encode(ROWS, fmt)
    assert arrays[wire.TOPK_VALUES].shape == (len(ROWS), k)
    kept = np.sort(ROWS, axis=1)[:, -k:].sum(axis=1)
    chosen = np.take_along_axis(ROWS, arrays[wire.TOPK_INDICES].astype(int), axis=1).sum(axis=1)
    np.testing.assert_allclose(chosen, kept, rtol=1e-6)  # the k largest were chosen
    back = round_trip(ROWS, fmt)
    dtype_error = {"float32": 1e-7, "float16": 2.0**-11, "uint8": wire.UINT8_ABS_ERROR}[dtype]
    assert np.all(np.abs(back - ROWS).max(axis=1) <= (1 - kept) + dtype_error + 1e-6)
    assert np.max(np.abs(back.sum(axis=1) - 1)) <= ROW_SUM_TOLERANCE
    assert fmt.payload_bytes(*ROWS.shape) == sum(a.nbytes for a in arrays.values())


def test_topk_of_all_classes_is_dense():
    assert list(wire.encode(ROWS, WireFormat("float16", 10))) == [wire.DENSE_KEY]


def test_malformed_uploads_are_sent_as_they_are_only_in_the_default_format():
    bad = np.where(ROWS > 0.5, np.nan, ROWS).astype(np.float64)
    arrays = wire.encode(bad, WireFormat())
    assert arrays[wire.DENSE_KEY].dtype == np.float64  # the server's screening refuses it, not the encoder
    with pytest.raises(ValueError, match="compact wire format"):
        wire.encode(bad, WireFormat("uint8", 2))


def test_bad_wire_settings_are_refused_with_their_key():
    with pytest.raises(ConfigError, match="wire_dtype"):
        make_config({"wire_dtype": "int4"})
    with pytest.raises(ConfigError, match="wire_topk"):
        make_config({"wire_topk": -1})
    with pytest.raises(ValueError, match="wire dtype"):
        WireFormat("bfloat16")


# ------------------------------------------------------------------ the protocol accepts the configured format

M, C, FP = 30, 10, "fp"


def reply(soft, fmt):
    content = protocol.build_reply_content(round_num=2, fingerprint=FP, partition_id=1, model="mlp",
                                           num_examples=50, metrics={"acc_local": 0.9, "acc_global": 0.5},
                                           soft_labels=soft, wire_format=fmt)
    return Message(content=content, dst_node_id=7, message_type="train")


def check(message, fmt):
    rules = protocol.ReplyRules(round=2, fingerprint=FP, shape=(M, C), num_partitions=3, max_num_examples=10**6,
                                wire_format=fmt)
    return validate_reply(message, rules)


FORMATS = [WireFormat("float16"), WireFormat("uint8"), WireFormat("float16", 3), WireFormat("uint8", 2)]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_compact_replies_validate_and_decode_within_bounds(fmt):
    soft = ROWS[:M]
    parsed = check(reply(soft, fmt), fmt)
    np.testing.assert_allclose(parsed.soft_labels, round_trip(soft, fmt))
    assert parsed.nbytes < M * C * 4  # smaller than float32 soft labels alone


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_a_reply_in_another_format_is_refused(fmt):
    with pytest.raises(InvalidReply) as exc:
        check(reply(ROWS[:M], WireFormat()), fmt)  # a float32 client against a compact server
    assert exc.value.reason in ("bad_dtype", "missing_key")
    with pytest.raises(InvalidReply) as exc:
        check(reply(ROWS[:M], fmt), WireFormat())  # and the other way round
    assert exc.value.reason in ("bad_dtype", "missing_key")


def _tamper(message, key, fn):
    from flwr.app import Array

    record = message.content["knowledge"]
    record[key] = Array(np.ascontiguousarray(fn(record[key].numpy())))
    return message


def test_tampered_compact_replies_are_refused():
    fmt16, fmt8, top = WireFormat("float16"), WireFormat("uint8"), WireFormat("uint8", 2)
    cases = {
        "nan16": (_tamper(reply(ROWS[:M], fmt16), "soft_labels", lambda a: np.where(a > 0.5, np.nan, a)),
                  fmt16, "bad_probabilities"),
        "negative16": (_tamper(reply(ROWS[:M], fmt16), "soft_labels",
                               lambda a: np.where(a == a.min(), np.float16(-9e-4), a)), fmt16, "bad_probabilities"),
        "halved8": (_tamper(reply(ROWS[:M], fmt8), "soft_labels", lambda a: a // 2), fmt8, "bad_probabilities"),
        "indices": (_tamper(reply(ROWS[:M], top), wire.TOPK_INDICES, lambda a: a + np.uint8(C)), top, "bad_shape"),
    }
    for name, (message, fmt, reason) in cases.items():
        with pytest.raises(InvalidReply) as exc:
            check(message, fmt)
        assert exc.value.reason == reason, name


@pytest.mark.parametrize("fmt", [WireFormat(), *FORMATS], ids=str)
def test_targets_reach_the_client_within_bounds(fmt):
    content = protocol.build_train_content(3, 3.0, FP, {"seed": 1}, ROWS[:M], fmt)
    order = protocol.parse_train_message(content)
    np.testing.assert_allclose(order.targets, round_trip(ROWS[:M], fmt))
    assert order.targets.dtype == np.float32


# ------------------------------------------------------------------ end to end through Flower

@pytest.mark.slow
def test_windowed_compact_simulation_loses_no_reply(tmp_path):
    """One real simulation: messages sent one at a time (server.max_in_flight=1), uint8 top-3 soft labels."""
    from server.simulate import simulate

    cfg = make_config({"dataset": "digits", "num_clients": 3, "rounds": 2, "transfer_size": 100,
                       "local_test_size": 50, "digest_epochs": 1, "revisit_epochs": 3, "seed": 3,
                       "save_models": False, "server.max_in_flight": 1, "wire_dtype": "uint8", "wire_topk": 3})
    summary = simulate(cfg, str(tmp_path / "run"), progress=False)
    rounds = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["replies"] for r in rounds] == [3, 3]
    assert summary["rejected_replies"] == {} and summary["missing_replies"] == 0
    m, c = 100, 10
    # 3 of 10 classes at 2 bytes each: 600 payload bytes, under half of float32's 4000 even with the framing
    assert summary["bytes_up_per_client_round"] < m * c * 4 / 2
    assert summary["alma"] > 0.4  # it still learns (chance is 0.1)


# ------------------------------------------------------------------ the run config travels without its defaults

def test_compact_run_config_round_trips_and_is_small():
    cfg = make_config({"alpha": 0.1, "models": "cnn_small", "wire_dtype": "uint8", "out": "/tmp/x",
                       "server.reply_timeout": 30})
    client_keys = cfg.for_clients()
    compact = compact_run_config(client_keys)
    # server keys and the output folder never travel: message bytes do not depend on them
    assert set(compact) == {"alpha", "models", "wire_dtype", CONFIG_DIGEST_KEY}
    order = protocol.parse_train_message(protocol.build_train_content(1, 3.0, FP, compact, None))
    assert make_config(order.run_config).for_clients() == client_keys
    assert len(json.dumps(compact)) < len(json.dumps(client_keys)) / 4


def test_a_node_that_resolves_the_config_differently_refuses_it():
    compact = compact_run_config(make_config({"alpha": 0.1}).for_clients())
    compact[CONFIG_DIGEST_KEY] = "0" * 16  # what another fedkd version would compute
    with pytest.raises(ValueError, match="run config mismatch"):
        protocol.parse_train_message(protocol.build_train_content(1, 3.0, FP, compact, None))


def test_every_train_message_gets_its_own_run_config_and_a_refused_one_stays_refused():
    compact = compact_run_config(make_config({"alpha": 0.1, "models": "cnn_small"}).for_clients())
    content = protocol.build_train_content(1, 3.0, FP, compact, None)
    first, second = (protocol.parse_train_message(content).run_config for _ in range(2))
    first["alpha"] = 0.9  # a handler changing its copy does not change what the next message says
    assert second == {k: v for k, v in compact.items() if k != CONFIG_DIGEST_KEY} and first is not second
    assert protocol.parse_train_message(content).run_config["alpha"] == 0.1
    wrong = dict(compact, **{CONFIG_DIGEST_KEY: "0" * 16})
    for _ in range(2):  # the check is cached per text, the refusal with it
        with pytest.raises(ValueError, match="run config mismatch"):
            protocol.parse_train_message(protocol.build_train_content(1, 3.0, FP, wrong, None))
