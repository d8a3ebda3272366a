"""An upload that repeats the targets the server sent (fedkd.fusion.echoes) is left out of the fusion."""
import numpy as np
import pytest

from fedkd.fusion.echoes import MIN_CLIENTS, distance_to_targets, find_echoes, own_shares, repetition


def rows(seed, m=60, c=10, a=0.3):
    return np.random.default_rng(seed).dirichlet(np.full(c, a), size=m).astype(np.float32)


def round_of(n=6):
    """Uploads and the targets each client was sent: honest clients' answers differ from their targets."""
    sent = {c: rows(100 + c) for c in range(n)}
    uploads = {c: (0.5 * rows(c) + 0.5 * sent[c]).astype(np.float32) for c in range(n)}  # distilled halfway
    return uploads, sent


def test_an_exact_echo_is_found_and_honest_clients_are_not():
    uploads, sent = round_of()
    uploads[4] = sent[4].copy()
    echoes = find_echoes(uploads, sent, 0.05)
    assert list(echoes) == [4] and echoes[4] == pytest.approx(0.0, abs=1e-6)


def test_an_echo_through_a_lossy_wire_format_is_still_found():
    uploads, sent = round_of()
    uploads[2] = sent[2].astype(np.float16).astype(np.float32)
    uploads[2] /= uploads[2].sum(axis=1, keepdims=True)
    assert list(find_echoes(uploads, sent, 0.05)) == [2]


def test_an_echo_blurred_with_enough_of_its_own_answer_is_not_an_echo():
    uploads, sent = round_of()
    uploads[1] = (0.5 * sent[1] + 0.5 * rows(1)).astype(np.float32)  # as far as an honest client: it is one
    uploads[3] = (0.98 * sent[3] + 0.02 * rows(3)).astype(np.float32)  # 2 % of its own: still a repetition
    assert list(find_echoes(uploads, sent, 0.05)) == [3]


def test_no_check_without_a_reference_or_when_switched_off():
    uploads, sent = round_of()
    uploads[0] = sent[0].copy()
    assert find_echoes(uploads, sent, 0.0) == {}
    few = {c: sent[c] for c in range(MIN_CLIENTS - 1)}
    assert find_echoes({c: uploads[c] for c in few}, few, 0.05) == {}
    assert find_echoes(dict(sent), sent, 0.05) == {}  # everybody repeats exactly: no median to compare with
    assert find_echoes(uploads, {}, 0.05) == {}  # round 1: nobody was sent targets


def test_between_an_echo_and_an_honest_client_an_upload_counts_for_its_own_part():
    ratios = {0: 0.0, 1: 0.04, 2: 0.1, 3: 0.3, 4: 0.5, 5: 1.0, 6: 2.0}
    assert own_shares(ratios, 0.05, 0.5) == pytest.approx({2: 0.2, 3: 0.6})  # 0, 1: echoes; 4-6: their own
    assert own_shares(ratios, 0.0, 0.5) == pytest.approx({0: 0.0, 1: 0.08, 2: 0.2, 3: 0.6})  # no echo check
    assert own_shares(ratios, 0.05, 0.0) == {}  # off
    from fedkd.config import ConfigError, make_config
    with pytest.raises(ConfigError, match="server.echo_ramp"):  # a ramp under the tolerance would credit nothing
        make_config({"server.echo_ramp": 0.05, "server.echo_tolerance": 0.1})
    assert make_config({"server.echo_ramp": 0.0, "server.echo_tolerance": 0.1})["server.echo_ramp"] == 0.0
    uploads, sent = round_of()
    uploads[3] = (0.9 * sent[3] + 0.1 * rows(3)).astype(np.float32)  # a 10 % blur: no echo, but mostly repeated
    ratios = repetition(uploads, sent)
    assert sorted(ratios) == list(range(6)) and 0.05 < ratios[3] < 0.5
    assert list(own_shares(ratios, 0.05, 0.5)) == [3] and find_echoes(uploads, sent, 0.05) == {}


def centroid_round(n=7, m=80, c=10, seed=0):
    """n - 1 honest clients who share a signal and each know a little of their own, and client n - 1 uploading
    the mean of their answers (what it was sent) with a 5 % blur: it sits closer to every honest client than
    they sit to each other."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, size=m)
    common = rng.normal(0, 1.5, size=(m, c))  # what they learnt alike (their errors too)
    honest = []
    for k in range(n - 1):
        logits = 3.0 * np.eye(c)[truth] + common + rng.normal(0, 0.5, size=(m, c))
        p = np.exp(logits)
        honest.append(p / p.sum(axis=1, keepdims=True))
    mean = np.mean(honest, axis=0)
    blurred = 0.95 * mean + 0.05 * rng.dirichlet(np.ones(c), size=m)
    return np.stack(honest + [blurred]).astype(np.float32)


def test_knfu_gives_a_blurred_centroid_no_more_than_its_own_share():
    from fedkd.fusion import fuse_knfu

    p = centroid_round()
    n = p.shape[0]
    honest = list(range(n - 1))

    def ratio(w):  # weight on the centroid over the mean weight on an honest peer, in the honest rows
        peers = w[np.ix_(honest, honest)]
        return w[honest, n - 1].mean() / ((peers.sum() - np.trace(peers)) / (len(honest) * (len(honest) - 1)))

    plain = fuse_knfu(p, distance="class_hellinger", beta=0.25, scale="nearest", relative=0.5)
    assert ratio(plain.weights) > 1.05  # the closeness reward the ramp is for (1.09 here)
    prior = np.ones(n)
    prior[-1] = 0.2
    shared = fuse_knfu(p, distance="class_hellinger", beta=0.25, scale="nearest", relative=0.5, peer_prior=prior)
    assert ratio(shared.weights) < 0.5 and shared.info["own_share"] == {str(n - 1): 0.2}
    # all ones is the rule unchanged, bit for bit; a prior outside [0, 1] is refused
    same = fuse_knfu(p, distance="class_hellinger", beta=0.25, scale="nearest", relative=0.5, peer_prior=np.ones(n))
    assert np.array_equal(same.weights, plain.weights) and "own_share" not in same.info
    with pytest.raises(ValueError, match="peer_prior"):
        fuse_knfu(p, distance="class_hellinger", peer_prior=np.full(n, 1.5))
    # the original rule takes it too: a share of 0 is no weight at all
    prior[-1] = 0.0
    original = fuse_knfu(p, peer_prior=prior)
    assert np.all(original.weights[:, -1] == 0) and original.has_targets.all()


def test_the_distance_is_total_on_edge_rows():
    one_hot = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    assert distance_to_targets(one_hot, one_hot) == 0.0
    assert distance_to_targets(one_hot, one_hot[::-1].copy()) == 1.0
    tiny = np.full((4, 4), 0.25, dtype=np.float32)
    tiny[0] = [1.0 - 3e-45, 1e-45, 1e-45, 1e-45]
    assert np.isfinite(distance_to_targets(tiny, one_hot))


@pytest.mark.slow
@pytest.mark.parametrize("wire", [{}, {"wire_topk": 2}])
def test_an_echoing_client_is_left_out_of_the_fusion_in_a_simulated_run(tmp_path, caplog, wire):
    """fault.kind=echo: from round 2 the client uploads the targets it was sent; the server sees the repetition,
    fuses without it and says so; with server.echo_tolerance=0 it is fused like any client. Under a lossy wire
    format the server compares with the targets as they arrived (top-k drops what the echo cannot send back)."""
    import json
    import logging

    from fedkd.cli.simulation import run_simulation
    from fedkd.config import make_config

    base = dict(dataset="digits", num_clients=4, rounds=3, transfer_size=60, local_test_size=20,
                global_test_size=60, models="mlp", save_models=False, algorithm="fedmd", seed=3,
                **{"fault.kind": "echo", "fault.clients": ["3"], "server.min_contributors": 1}, **wire)
    with caplog.at_level(logging.WARNING, logger="fedkd.server"):
        run_simulation(make_config(base), tmp_path / "on", progress=False)
    records = [json.loads(x) for x in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    assert "echoes" not in records[0] and 3 in records[0]["fused_clients"]  # round 1: nothing to repeat
    assert list(records[1]["echoes"]) == ["3"] and records[1]["fused_clients"] == [0, 1, 2]
    assert any("client 3 uploaded the targets it was sent" in r.getMessage() for r in caplog.records)
    if wire:
        return
    run_simulation(make_config(dict(base, **{"server.echo_tolerance": 0.0})), tmp_path / "off", progress=False)
    off = [json.loads(x) for x in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert all("echoes" not in r and 3 in r["fused_clients"] for r in off)


def test_echo_noise_blurs_only_an_echo_that_has_targets_to_repeat():
    from fedkd.config import ConfigError, make_config
    from fedkd.faults.knowledge import blur
    from fedkd.faults.plan import FaultPlan

    plan = FaultPlan.from_settings(make_config({"fault.kind": "echo", "fault.num_malicious": 2,
                                                "fault.echo_noise": 0.05}).faults)
    assert plan.echo_noise == 0.05 and plan.collude_noise == 0.0
    sent = np.full((6, 4), 0.25, dtype=np.float32)
    own = blur(sent, plan.echo_noise, plan.blur_rng(9, 2, "echo-noise"))
    assert np.all(own >= 0.95 * sent - 1e-6) and not np.allclose(own, sent)
    # its own stream: not the colluders' stream of the same client and round
    assert not np.allclose(own, blur(sent, 0.05, plan.blur_rng(9, 2)))
    with pytest.raises(ConfigError, match="fault.echo_noise"):
        make_config({"fault.kind": "swap", "fault.num_malicious": 2, "fault.echo_noise": 0.05})
    with pytest.raises(ConfigError, match="fault.echo_noise"):
        make_config({"fault.kind": "echo", "fault.num_malicious": 2, "fault.echo_noise": 1.0})
    # fault.echo_with=own: the echo mixes in its own honest answer instead (no randomness to draw)
    from fedkd.faults.knowledge import blend
    own = np.tile(np.array([[0.7, 0.1, 0.1, 0.1]], dtype=np.float32), (6, 1))
    mixed = blend(sent, own, 0.2)
    assert np.allclose(mixed, 0.8 * sent + 0.2 * own, atol=1e-6) and np.allclose(mixed.sum(axis=1), 1.0)
    plan = FaultPlan.from_settings(make_config({"fault.kind": "echo", "fault.num_malicious": 2,
                                                "fault.echo_noise": 0.2, "fault.echo_with": "own"}).faults)
    assert plan.echo_with == "own"
    with pytest.raises(ConfigError, match="fault.echo_with"):
        make_config({"fault.kind": "echo", "fault.num_malicious": 2, "fault.echo_with": "own"})
    with pytest.raises(ValueError, match="one shape"):
        blend(sent, own[:3], 0.2)


@pytest.mark.slow
def test_an_echo_blurred_with_half_noise_is_no_longer_an_echo_in_a_simulated_run(tmp_path):
    """fault.echo_noise reaches the upload: at 0.5 the repetition is gone (what this costs an honest client is
    measured in docs/robustness.md §6c, not here); round 1 has no targets, so nothing is blurred there."""
    import json

    from fedkd.cli.simulation import run_simulation
    from fedkd.config import make_config

    base = dict(dataset="digits", num_clients=4, rounds=2, transfer_size=60, local_test_size=20,
                global_test_size=60, models="mlp", save_models=False, algorithm="fedmd", seed=3,
                **{"fault.kind": "echo", "fault.clients": ["3"], "server.min_contributors": 1})
    run_simulation(make_config(dict(base, **{"fault.echo_noise": 0.5})), tmp_path / "blurred", progress=False)
    run_simulation(make_config(base), tmp_path / "exact", progress=False)
    blurred, exact = ([json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                      for name in ("blurred", "exact"))
    assert blurred[0]["alma"] == exact[0]["alma"]  # round 1: the echo is honest, blurred or not
    assert list(exact[1]["echoes"]) == ["3"] and "echoes" not in blurred[1]
    assert blurred[1]["fused_clients"] == [0, 1, 2, 3]


@pytest.mark.slow
def test_the_echo_ramp_takes_an_echos_weight_where_the_echo_check_is_off(tmp_path, caplog):
    """server.echo_ramp alone (server.echo_tolerance=0): an exact echo's own share is 0, so KnFu gives it no weight
    from round 2 on; the record lists every client's distance to its targets (``repetition``) and the shares
    below 1 (``own_share``), and the server log says so per client. With the ramp off too, the echo is fused
    like any peer."""
    import json
    import logging

    from fedkd.cli.simulation import run_simulation
    from fedkd.config import make_config

    base = dict(dataset="digits", num_clients=5, rounds=2, transfer_size=60, local_test_size=20,
                global_test_size=60, models="mlp", save_models=False, algorithm="knfu", seed=3,
                **{"fault.kind": "echo", "fault.clients": ["4"], "server.min_contributors": 1,
                   "server.echo_tolerance": 0.0})
    with caplog.at_level(logging.INFO, logger="fedkd.server"):
        run_simulation(make_config(base), tmp_path / "ramp", progress=False)
    assert any("client 4's upload is 0.000 of the median" in r.getMessage() for r in caplog.records)
    run_simulation(make_config(dict(base, **{"server.echo_ramp": 0.0})), tmp_path / "off", progress=False)
    ramp, off = ([json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                 for name in ("ramp", "off"))
    assert "repetition" not in ramp[0] and "own_share" not in ramp[0]  # round 1: nobody was sent targets
    assert ramp[1]["repetition"]["4"] == pytest.approx(0.0, abs=1e-4) and ramp[1]["own_share"]["4"] < 1e-3
    assert ramp[1]["fused_clients"] == [0, 1, 2, 3, 4] and "echoes" not in ramp[1]
    assert all(row[4] == 0 for row in ramp[1]["weights"][:4])  # (its own row keeps knfu.self_share)
    assert "own_share" not in off[1] and any(row[4] > 0 for row in off[1]["weights"][:4])


def test_the_echo_ramp_pairs_study_builds_valid_runs_and_pairs_one_machines_rows(tmp_path, monkeypatch):
    """experiments/echo_ramp_pairs.py: every setting is a valid config with the ramp pinned, and its table pairs a
    run with the ramp only with the same setting and seed without it *on the same machine*."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import echo_ramp_pairs as pairs
    from fedkd.config import load_config

    for setting in pairs.SETTINGS:
        base, o = pairs.overrides(setting, 0.5, 1)
        cfg = load_config(base, [f"{k}={v}" for k, v in o.items()])
        assert cfg["server.echo_ramp"] == 0.5 and cfg["seed"] == 1 and cfg["algorithm"] == "knfu"
    monkeypatch.setattr(pairs, "LEDGER", tmp_path / "ledger.jsonl")

    def row(ramp, machine, alma):
        return {"name": f"lp3-er{ramp:g}-s0", "setting": "lp3", "ramp": ramp, "seed": 0, "machine": machine,
                "alma": alma, "global_acc": alma}

    rows = [row(0.0, "a", 0.90), row(0.5, "a", 0.91), row(0.5, "b", 0.99)]  # b's run has no partner on b
    pairs.LEDGER.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = [x for x in pairs.table().splitlines() if x.startswith("| lp3")]
    assert lines == ["| lp3 | 90.00 → 91.00 | +1.00 | +1.00 | – | 0 |"]


def test_the_server_hands_the_shares_only_to_rules_that_take_them():
    """KnowledgeFusion passes ``peer_prior`` (1 for the clients without a share) to a rule registered with
    ``peer_prior=True``, never to one without it (FedMD's average, DS-FL, a plug-in that does not expect it)."""
    from fedkd.config import make_config
    from fedkd.fusion import FusionResult, FusionRule
    from server.identity import IdentityBook
    from server.public import PublicFacts
    from server.strategy import KnowledgeFusion

    seen = []

    def rule(soft_labels, n_samples=None, **kwargs):
        seen.append(kwargs)
        n = soft_labels.shape[0]
        return FusionResult(targets=np.asarray(soft_labels, np.float32), has_targets=np.ones(n, bool),
                            weights=np.full((n, n), 1.0 / n))

    cfg = make_config({"num_clients": 4, "server.min_contributors": 1})
    facts = PublicFacts(fingerprint="f", num_classes=4, transfer_size=5, input_shape=(1, 8, 8), has_global_test=True)
    for takes in (True, False):
        strategy = KnowledgeFusion(FusionRule("probe", rule, peer_prior=takes), cfg, facts, IdentityBook(4))
        strategy.latest = {c: (2, np.full((5, 4), 0.25, np.float32), 10) for c in range(4)}
        strategy.own_share = {2: 0.25}
        strategy._fuse(2, [0, 1, 2, 3])
    assert seen[0]["peer_prior"].tolist() == [1.0, 1.0, 0.25, 1.0] and "peer_prior" not in seen[1]
