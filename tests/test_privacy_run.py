"""Swing distillation and canaries wired into the protocol and a real simulation."""
import numpy as np
import pytest

from flwr.common.serde import recorddict_to_proto
from fedkd import protocol
from fedkd.config import make_config
from fedkd.privacy.release import epsilon_after, plain_soft_labels, release


def _release(cfg, logits, targets, client_id, round_num, simulated=True):
    return release(cfg.privacy, cfg["temperature"], logits, targets, client_id, round_num, simulated=simulated)


def test_swing_off_is_plain_distillation_byte_for_byte():
    logits = np.random.default_rng(0).normal(size=(50, 10)).astype(np.float32)
    cfg = make_config()
    soft, metrics = _release(cfg, logits, targets=None, client_id=0, round_num=1)
    assert metrics == {}
    np.testing.assert_array_equal(soft, plain_soft_labels(logits, cfg["temperature"]))
    common = dict(round_num=1, fingerprint="f", partition_id=0, model="mlp", num_examples=5,
                  metrics={"acc_local": 1.0, "acc_global": 1.0})
    a = protocol.build_reply_content(soft_labels=soft, **common)
    b = protocol.build_reply_content(soft_labels=plain_soft_labels(logits, 3.0), **common)
    assert protocol.message_bytes(a) == protocol.message_bytes(b)
    assert recorddict_to_proto(a).SerializeToString() == recorddict_to_proto(b).SerializeToString()


def test_swing_on_changes_the_release_and_stays_a_distribution():
    logits = np.random.default_rng(1).normal(size=(50, 10)).astype(np.float32) * 5
    cfg = make_config({"privacy.swing": True, "privacy.noise_scale": 0.1})
    soft, metrics = _release(cfg, logits, targets=None, client_id=0, round_num=1)
    assert soft.dtype == np.float32 and (soft >= 0).all()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(soft, plain_soft_labels(logits, cfg["temperature"]))
    assert 0 <= metrics["swing_mean_score"] <= 1
    again, _ = _release(cfg, logits, targets=None, client_id=0, round_num=1)
    np.testing.assert_array_equal(soft, again)  # simulation, noise_seed=auto: derived, reproducible studies
    fresh = make_config({"privacy.swing": True, "privacy.noise_seed": "os"})
    a, _ = _release(fresh, logits, None, 0, 1)
    b, _ = _release(fresh, logits, None, 0, 1)
    assert not np.array_equal(a, b)


def test_real_nodes_draw_swing_noise_from_the_os_and_warn_when_told_otherwise(caplog):
    import logging

    logits = np.random.default_rng(1).normal(size=(50, 10)).astype(np.float32) * 5
    auto = make_config({"privacy.swing": True, "privacy.noise_scale": 0.1})  # noise_seed=auto, the default
    a, _ = _release(auto, logits, None, 0, 1, simulated=False)
    b, _ = _release(auto, logits, None, 0, 1, simulated=False)
    assert not np.array_equal(a, b)  # nobody holding the run config can recompute the noise
    derived = auto.replace(privacy__noise_seed="derived")
    with caplog.at_level(logging.WARNING, logger="fedkd.privacy"):
        c, _ = _release(derived, logits, None, 0, 1, simulated=False)
    np.testing.assert_array_equal(c, _release(auto, logits, None, 0, 1)[0])  # = the simulation's noise
    assert "noise_seed=derived on a real node" in caplog.text


def test_epsilon_grows_with_releases_and_falls_with_noise():
    low = make_config({"privacy.swing": True, "privacy.noise_scale": 0.5})
    high = make_config({"privacy.swing": True, "privacy.noise_scale": 2.0})
    assert epsilon_after(low.privacy, 1) < epsilon_after(low.privacy, 5)
    assert epsilon_after(high.privacy, 5) < epsilon_after(low.privacy, 5)


@pytest.mark.slow
def test_swing_and_canaries_through_the_simulation(tmp_path):
    from fedkd.cli.simulation import run_simulation as simulate

    cfg = make_config(dict(num_clients=3, rounds=2, transfer_size=150, local_test_size=60, revisit_epochs=8,
                           **{"privacy.swing": True, "privacy.noise_scale": 0.05, "canaries.enabled": True,
                              "canaries.count": 5, "canaries.references": 200}))
    s = simulate(cfg, tmp_path / "run", progress=False)
    assert 0 < s["privacy"]["epsilon"] < float("inf")
    assert s["privacy"]["epsilon_per_round"][0] < s["privacy"]["epsilon_per_round"][1]
    assert set(s["privacy"]["epsilon_per_client"]) == {"0", "1", "2"}
    can = s["canaries"]
    assert can["exposure_owner"] > can["exposure_peers_mean"]  # the owner memorised its secrets
    assert can["exposure_owner"] > 0.5 * can["max_exposure"]
    assert s["transfer_size"] == 150 + 5  # canary images are public, their labels are not
    assert s["alma"] > 0.5
