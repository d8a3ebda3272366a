"""Hostile clients: the malformed-reply catalogue and malicious soft labels.

The unit tests build each catalogue entry into a real reply and check the
protocol's reason; the slow test sends every entry through Flower's simulation
engine and checks that the server rejects each with its reason, records it,
and finishes the run with the valid replies.
"""
import json
import logging

import numpy as np
import pytest
from flwr.app import Message

from fedkd import protocol
from fedkd.adversary import (CATALOGUE, InjectedFault, flipped_soft_labels, honest_accuracy_record,
                             malformed_reply, malicious_clients, parse_malformed, poisoned_soft_labels)
from fedkd.cli import main as fedkd_main
from fedkd.config import ConfigError, make_config

M, C, FP, N = 40, 10, "f" * 16, 3


def honest_fields(round_num=2, partition_id=1):
    soft = np.random.default_rng(0).dirichlet(np.ones(C), size=M).astype(np.float32)
    return dict(round_num=round_num, fingerprint=FP, partition_id=partition_id, model="mlp", num_examples=50,
                metrics={"acc_local": 0.9, "acc_global": 0.5}, soft_labels=soft)


def validate(fields, round_num=2):
    message = Message(content=protocol.build_reply_content(**fields), dst_node_id=7, message_type="train")
    return protocol.validate_reply(message, expected_round=round_num, fingerprint=FP, shape=(M, C),
                                   num_partitions=N)


SINGLE_REPLY_KINDS = [k for k in CATALOGUE if k not in ("error_reply", "duplicate_partition")]


@pytest.mark.parametrize("kind", SINGLE_REPLY_KINDS)
def test_each_malformed_reply_is_rejected_with_its_reason(kind):
    broken = CATALOGUE[kind].apply(honest_fields(), N)
    with pytest.raises(protocol.InvalidReply) as info:
        validate(broken)
    assert info.value.reason == CATALOGUE[kind].reason


def test_error_reply_and_duplicate_partition_entries():
    with pytest.raises(InjectedFault):
        CATALOGUE["error_reply"].apply(honest_fields(), N)
    # a duplicate is well-formed alone (the server's loop catches it): it claims the next partition
    claimed = CATALOGUE["duplicate_partition"].apply(honest_fields(partition_id=2), N)
    assert validate(claimed).partition_id == 0


def test_honest_reply_passes_and_the_plan_picks_client_and_round():
    validate(honest_fields())
    cfg = make_config({"num_clients": N, "attack.malformed": ["1:2:nan", "1:*:bad_dtype", "2:1:wrong_round"]})
    assert parse_malformed(cfg["attack.malformed"]) == {(1, 2): "nan", (1, None): "bad_dtype",
                                                        (2, 1): "wrong_round"}
    assert np.isnan(malformed_reply(cfg, 1, 2, honest_fields())["soft_labels"]).any()  # round entry wins over *
    assert malformed_reply(cfg, 1, 3, honest_fields())["soft_labels"].dtype == np.float64
    untouched = honest_fields(partition_id=0)
    assert malformed_reply(cfg, 0, 2, untouched) is untouched


@pytest.mark.parametrize("overrides,message", [
    ({"attack.malformed": "1:2:garbage"}, "unknown kind 'garbage'"),
    ({"attack.malformed": "1:two:nan"}, "round 'two'"),
    ({"attack.malformed": "7:1:nan"}, "clients [7] are not partition ids"),
    ({"attack.malformed": "1:nan"}, "not CLIENT:ROUND:KIND"),
    ({"attack.num_malicious": 2}, "'attack.kind' is 'none'"),
    ({"attack.kind": "flip", "attack.num_malicious": 4}, "exceeds num_clients=3"),
    ({"attack.kind": "flip", "attack.clients": "0,5"}, "['5'] are not partition ids"),
    ({"attack.kind": "noise"}, "one of none, random, flip"),
    ({"attack.kind": "flip", "algorithm": "fedavg", "models": "mlp"}, "'fedavg' exchanges weights"),
    ({"attack.malformed": "1:1:bad_dtype", "wire_dtype": "float16"}, "default wire format"),
])
def test_bad_attack_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        make_config(dict({"num_clients": N}, **overrides))
    assert message in str(info.value)


def test_cli_refuses_bad_attack_settings_before_starting(capsys):
    assert fedkd_main(["simulate", "--set", "num_clients=3", "--set", "attack.malformed=1:1:nope"]) == 2
    assert "attack.malformed" in capsys.readouterr().err


def test_malicious_clients_and_their_soft_labels():
    cfg = make_config({"num_clients": 10, "attack.kind": "random", "attack.num_malicious": 3})
    assert malicious_clients(cfg) == {7, 8, 9}
    assert malicious_clients(cfg.replace(attack__num_malicious=0, attack__clients=["0", "4"])) == {0, 4}
    assert malicious_clients(cfg.replace(attack__kind="none", attack__num_malicious=0)) == frozenset()

    honest = honest_fields()["soft_labels"]
    assert poisoned_soft_labels(cfg, 2, 1, honest) is honest
    r1, r1_again, r2 = (poisoned_soft_labels(cfg, 8, rnd, honest) for rnd in (1, 1, 2))
    np.testing.assert_array_equal(r1, r1_again)  # reproducible per (seed, client, round)
    assert not np.array_equal(r1, r2)
    validate(dict(honest_fields(), soft_labels=r1))  # well-formed: only fusion can limit it
    # uniform on the simplex: agrees with the honest top class about as often as chance
    assert np.mean(r1.argmax(1) == honest.argmax(1)) < 0.4

    flipped = poisoned_soft_labels(cfg.replace(attack__kind="flip"), 9, 1, honest)
    np.testing.assert_array_equal(flipped, flipped_soft_labels(honest))
    np.testing.assert_array_equal(flipped.argmax(1), C - 1 - honest.argmax(1))
    validate(dict(honest_fields(), soft_labels=flipped))


def test_honest_accuracy_leaves_malicious_clients_out():
    cfg = make_config({"num_clients": 3, "attack.kind": "flip", "attack.clients": "2"})
    record = {"per_client_local_acc": {"0": 0.9, "1": 0.7, "2": 0.1},
              "per_client_global_acc": {"0": 0.5, "1": 0.3, "2": 0.0}}
    extra = honest_accuracy_record(cfg, record)
    assert extra["malicious_clients"] == [2]
    assert extra["alma_honest"] == pytest.approx(0.8) and extra["global_acc_honest"] == pytest.approx(0.4)
    assert honest_accuracy_record(make_config({"num_clients": 3}), record) == {}


# ------------------------------------------------------------------ through Flower's simulation engine

# Client 0 is honest, client 5 is a label flipper (valid replies), clients 1-4 break the protocol in a
# different catalogue way each round; client 4 claims client 5's partition in round 4.
PLAN = {
    1: ["nan", "inf", "bad_shape", "bad_dtype"],
    2: ["negative", "not_normalised", "wrong_fingerprint", "oversized"],
    3: ["missing_key", "wrong_round", "bad_partition", "bad_metrics"],
    4: ["error_reply", None, None, "duplicate_partition"],
}
ROUNDS = 4


def expected_rejections(rnd):
    counts = {}
    for kinds in PLAN.values():
        kind = kinds[rnd - 1]
        if kind is not None:
            reason = CATALOGUE[kind].reason
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def test_plan_covers_the_whole_catalogue():
    assert {k for kinds in PLAN.values() for k in kinds if k} == set(CATALOGUE)


@pytest.mark.slow
def test_catalogue_through_the_simulation_engine(tmp_path, caplog):
    from server.simulate import simulate

    malformed = [f"{c}:{r}:{k}" for c, kinds in PLAN.items() for r, k in enumerate(kinds, 1) if k]
    cfg = make_config(dict(dataset="digits", num_clients=6, rounds=ROUNDS, transfer_size=100, local_test_size=60,
                           digest_epochs=1, revisit_epochs=1, seed=3, algorithm="knfu",
                           **{"attack.malformed": malformed, "attack.kind": "flip", "attack.clients": "5"}))
    with caplog.at_level(logging.WARNING, logger="fedkd.server"):
        summary = simulate(cfg, str(tmp_path), progress=False)

    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, ROUNDS + 1))  # the run went on
    for r in records:
        assert r["rejected"] == expected_rejections(r["round"]), r["round"]
        bad = sum(expected_rejections(r["round"]).values())
        assert r["replies"] == 6 - bad and r["missing"] == 0
        assert 0 in r["fused_clients"] and len(r["fused_clients"]) == r["replies"]
        honest = [acc for pid, acc in r["per_client_local_acc"].items() if pid != "5"]
        assert r["malicious_clients"] == [5] and r["alma_honest"] == pytest.approx(np.mean(honest))
    assert records[0]["fused_clients"] == [0, 5]  # no malformed reply reached fusion
    assert summary["rejected_replies"] == sum(len([k for k in ks if k]) for ks in PLAN.values())
    logged = caplog.text  # each rejection is logged with its reason and detail
    assert logged.count("rejected reply") == summary["rejected_replies"]
    for kind in CATALOGUE:
        assert f": {CATALOGUE[kind].reason}: " in logged, kind
