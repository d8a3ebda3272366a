"""Hostile clients: the malformed-reply catalogue (v1 and v2), lies, and no reply that ends a run.

Unit tests build each catalogue entry into a real reply and check the protocol's
reason; the slow tests send the entries through Flower's simulation engine and
check the server rejects each with its reason, records it, and finishes the run.
"""
import json
import logging
from collections import Counter

import numpy as np
import pytest
from flwr.app import Message

from fedkd import protocol
from fedkd.cli import main as fedkd_main
from fedkd.cli.simulation import run_simulation
from fedkd.config import ConfigError, make_config
from fedkd.faults.malformed import CATALOGUE, InjectedFault
from fedkd.faults.plan import FaultPlan, parse_malformed
from fedkd.faults.records import honest_summary
from server.identity import IdentityBook
from server.screening import screen

from helpers import scrape_metrics

# the simulations of this module share one Ray instance and its client actors (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_ray_per_module")

M, C, FP, N = 40, 10, "f" * 16, 3


def honest_content(round_num=2, partition_id=1):
    soft = np.random.default_rng(0).dirichlet(np.ones(C), size=M).astype(np.float32)
    return protocol.build_reply_content(round_num=round_num, fingerprint=FP, partition_id=partition_id, model="mlp",
                                        num_examples=50, metrics={"acc_local": 0.9, "acc_global": 0.5},
                                        soft_labels=soft)


def rules(**overrides):
    return protocol.ReplyRules(**{**dict(round=2, fingerprint=FP, shape=(M, C), num_partitions=N,
                                         max_num_examples=10**6), **overrides})


def validate(content, **overrides):
    return protocol.validate_reply(Message(content=content, dst_node_id=7, message_type="train"), rules(**overrides))


SOFT_LABEL_KINDS = [k for k, m in CATALOGUE.items()
                    if m.target in ("soft_labels", "any") and m.reason not in (None, "identity_mismatch", "error_reply")]


@pytest.mark.parametrize("kind", SOFT_LABEL_KINDS)
def test_each_malformed_reply_is_rejected_with_its_reason(kind):
    with pytest.raises(protocol.InvalidReply) as info:
        validate(CATALOGUE[kind].apply(honest_content(), N))
    assert info.value.reason == CATALOGUE[kind].reason


def test_identity_kinds_are_well_formed_and_caught_by_the_identity_binding():
    for kind in ("impersonate", "duplicate_partition"):
        claimed = validate(CATALOGUE[kind].apply(honest_content(partition_id=2), N))
        assert claimed.partition_id == 0
        book = IdentityBook(N)
        book._bind(11, 2)
        with pytest.raises(protocol.InvalidReply) as info:
            book.check_claim(11, claimed.partition_id)
        assert info.value.reason == "identity_mismatch" and book.alarms["identity_mismatch"] == 1
    with pytest.raises(InjectedFault):
        CATALOGUE["error_reply"].apply(honest_content(), N)
    lie = CATALOGUE["identify_lie"].apply(protocol.build_identify_reply(2), N)
    assert lie["meta"]["partition_id"] == 0


def test_weights_kinds_are_rejected_against_the_global_model():
    from flwr.app import Array, ArrayRecord

    spec = {"w": ((4,), "float32"), "b": ((2,), "float32")}
    weights = ArrayRecord({"w": Array(np.ones(4, np.float32)), "b": Array(np.zeros(2, np.float32))})
    honest = protocol.build_reply_content(round_num=2, fingerprint=FP, partition_id=1, model="mlp", num_examples=5,
                                          metrics={"acc_local": 0.9, "acc_global": 0.5}, weights=weights)
    validate(honest, shape=None, weights_spec=spec)
    for kind in ("fedavg_nan", "fedavg_bad_shape"):
        with pytest.raises(protocol.InvalidReply) as info:
            validate(CATALOGUE[kind].apply(honest, N), shape=None, weights_spec=spec)
        assert info.value.reason == CATALOGUE[kind].reason
    extra = validate(CATALOGUE["fedavg_extra_metric"].apply(honest, N), shape=None, weights_spec=spec)
    assert extra.dropped_metrics == ("extra_metric",)


def test_an_unexpected_exception_on_one_reply_is_a_rejection_not_a_crash(monkeypatch):
    book = IdentityBook(N)
    book._bind(7, 1)
    good = Message(content=honest_content(), dst_node_id=7, message_type="train")
    good.metadata.__dict__["_src_node_id"] = 7  # noqa: the engine sets this on real replies

    def explode(message, rules):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(protocol, "validate_reply", explode)
    out = screen([good], rules(), book, expected_nodes={7})
    assert out.accepted == [] and out.rejected == Counter({"internal": 1})


def test_the_plan_picks_client_and_round():
    cfg = make_config({"num_clients": N, "fault.malformed": ["1:2:nan", "1:*:bad_dtype", "2:1:wrong_round"]})
    plan = FaultPlan.from_settings(cfg.faults)
    assert parse_malformed(cfg["fault.malformed"]) == {(1, 2): "nan", (1, None): "bad_dtype",
                                                        (2, 1): "wrong_round"}
    assert plan.malformation(1, 2) == "nan" and plan.malformation(1, 3) == "bad_dtype"
    assert plan.malformation(0, 2) is None


@pytest.mark.parametrize("overrides,message", [
    ({"fault.malformed": "1:2:garbage"}, "unknown kind 'garbage'"),
    ({"fault.malformed": "1:two:nan"}, "round 'two'"),
    ({"fault.malformed": "7:1:nan"}, "clients [7] are not client ids"),
    ({"fault.malformed": "1:nan"}, "not CLIENT:ROUND:KIND"),
    ({"fault.malformed": "1:1:fedavg_nan"}, "exchanges soft labels"),
    ({"fault.malformed": "1:1:nan", "algorithm": "fedavg", "models": "mlp"}, "exchanges weights"),
    ({"fault.malformed": "1:1:bad_dtype", "wire_dtype": "float16"}, "default wire format"),
])
def test_bad_fault_plans_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        FaultPlan.from_settings(make_config(dict({"num_clients": N}, **overrides)).faults)
    assert message in str(info.value)


@pytest.mark.parametrize("overrides,message", [
    ({"fault.num_malicious": 2}, "'fault.kind' is 'none'"),
    ({"fault.kind": "flip", "fault.num_malicious": 4}, "exceeds num_clients=3"),
    ({"fault.kind": "flip", "fault.clients": "0,5"}, "['5'] are not client ids"),
    ({"fault.kind": "noise"}, "one of none, random, flip, shift, mimic"),
    ({"fault.kind": "flip", "algorithm": "fedavg", "models": "mlp"}, "'fedavg' exchanges weights"),
])
def test_bad_attack_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        make_config(dict({"num_clients": N}, **overrides))
    assert message in str(info.value)


def test_cli_refuses_bad_attack_settings_before_starting(capsys, tmp_path):
    assert fedkd_main(["simulate", "--out", str(tmp_path / "r"), "--set", "num_clients=3",
                       "--set", "fault.malformed=1:1:nope"]) == 2
    assert "fault.malformed" in capsys.readouterr().err


def test_honest_summary_leaves_malicious_clients_out():
    plan = FaultPlan.from_settings(make_config({"num_clients": 3, "fault.kind": "flip", "fault.clients": "2"}).faults)
    rounds = [{"per_client_local_acc": {"0": 0.9, "1": 0.7, "2": 0.1},
               "per_client_global_acc": {"0": 0.5, "1": 0.3, "2": 0.0}}]
    extra = honest_summary(plan, rounds)
    assert extra["malicious_clients"] == [2]
    assert extra["alma_honest"] == pytest.approx(0.8) and extra["global_acc_honest"] == pytest.approx(0.4)
    assert honest_summary(FaultPlan.from_settings(make_config({"num_clients": 3}).faults), rounds) == {}


# ------------------------------------------------------------------ through Flower's simulation engine

# Client 0 is honest, client 5 is a label flipper (valid replies until round 5), clients 1-4 break the
# protocol in a different catalogue way each round.
PLAN = {
    1: ["nan", "inf", "bad_shape", "bad_dtype", "no_accuracy"],
    2: ["negative", "not_normalised", "wrong_fingerprint", "oversized", "accuracy_out_of_range"],
    3: ["missing_key", "wrong_round", "bad_partition", "bad_metrics", "huge_num_examples"],
    4: ["error_reply", "stray_wire_arrays", "impersonate", "duplicate_partition", "negative_entry"],
    5: [None, None, None, None, "nan_entry"],  # the flipper's last reply is malformed too
}
ROUNDS = 5
SMALL = dict(dataset="digits", transfer_size=100, local_test_size=60, digest_epochs=1, revisit_epochs=1)


def expected_rejections(rnd):
    counts = {}
    for kinds in PLAN.values():
        kind = kinds[rnd - 1]
        if kind is not None:
            reason = CATALOGUE[kind].reason
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def test_plan_covers_the_soft_label_catalogue():
    covered = {k for kinds in PLAN.values() for k in kinds if k}
    assert covered == {k for k, m in CATALOGUE.items() if m.target in ("soft_labels", "any")}


@pytest.mark.slow
def test_catalogue_through_the_simulation_engine(tmp_path, caplog):
    import threading

    from fedkd.deploy.processes import free_port

    malformed = [f"{c}:{r}:{k}" for c, kinds in PLAN.items() for r, k in enumerate(kinds, 1) if k]
    port = free_port()
    cfg = make_config(dict(SMALL, num_clients=6, rounds=ROUNDS, seed=3, algorithm="knfu",
                           **{"fault.malformed": malformed, "fault.kind": "flip", "fault.clients": "5",
                              "metrics.port": port, "metrics.linger": 3.0}))
    stop, scrapes = threading.Event(), []
    scraper = threading.Thread(target=scrape_metrics, args=(port, stop, scrapes), daemon=True)
    scraper.start()
    try:
        with caplog.at_level(logging.WARNING, logger="fedkd.server"):
            summary = run_simulation(cfg, tmp_path / "run", progress=False)
    finally:
        stop.set()
        scraper.join(timeout=5)

    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, ROUNDS + 1))  # the run went on
    for r in records:
        assert r["rejected"] == expected_rejections(r["round"]), r["round"]
        bad = sum(expected_rejections(r["round"]).values())
        assert r["replies"] == 6 - bad and r["missing"] == 0
        assert 0 in r["fused_clients"] and len(r["fused_clients"]) == r["replies"]
        assert 0 <= r["alma"] <= 1
    assert records[0]["fused_clients"] == [0, 5]  # no malformed reply reached fusion
    total = sum(len([k for k in ks if k]) for ks in PLAN.values())
    assert sum(summary["rejected_replies"].values()) == total
    assert summary["identity_alarms"] == {"identity_mismatch": 2}  # impersonate + duplicate_partition
    assert summary["robustness"]["malicious_clients"] == [5]
    final = scrapes[-1]  # /metrics counts every reason too
    for reason, count in summary["rejected_replies"].items():
        assert final[f'fedkd_replies_rejected_total{{reason="{reason}"}}'] == count, reason
    assert final['fedkd_identity_alarms_total{reason="identity_mismatch"}'] == 2
    assert final["fedkd_alma"] <= 1.0
    logged = caplog.text  # each rejection is logged with its reason and detail
    assert logged.count("rejected reply") == total
    for kind in (k for ks in PLAN.values() for k in ks if k):
        assert f": {CATALOGUE[kind].reason}: " in logged, kind


@pytest.mark.slow
def test_fedavg_catalogue_through_the_simulation_engine(tmp_path):
    malformed = ["1:1:fedavg_nan", "2:1:fedavg_bad_shape", "1:2:fedavg_extra_metric", "2:2:huge_num_examples"]
    cfg = make_config(dict(SMALL, num_clients=3, rounds=2, seed=3, algorithm="fedavg", models="mlp",
                           **{"fault.malformed": malformed}))
    summary = run_simulation(cfg, tmp_path / "run", progress=False)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["rejected"] == {"non_finite": 1, "bad_shape": 1} and records[0]["fused_clients"] == [0]
    assert records[1]["rejected"] == {"bad_num_examples": 1} and records[1]["fused_clients"] == [0, 1]
    assert records[1]["dropped_metric_keys"] == {"client 1": 1}  # counted per client, the names never kept
    assert summary["dropped_metric_keys"] == {"client 1": 1}
    assert np.isfinite(summary["alma"]) and 0 <= summary["global_acc"] <= 1


@pytest.mark.slow
def test_an_identify_lie_changes_nothing_for_the_victim(tmp_path):
    """A node answering the identify query with client 2's id stays client 1: the run equals an honest one."""
    base = dict(SMALL, num_clients=3, rounds=2, seed=5, algorithm="knfu")
    honest = run_simulation(make_config(base), tmp_path / "honest", progress=False)
    lying = run_simulation(make_config(dict(base, **{"fault.malformed": "1:*:identify_lie"})), tmp_path / "lie",
                           progress=False)
    assert lying["identity_alarms"] == {"identity_mismatch": 1}
    for key in ("alma_per_round", "global_acc_per_round", "per_client_local_acc", "per_client_global_acc"):
        assert lying[key] == honest[key], key
