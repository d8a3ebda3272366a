"""Swing distillation and canaries wired into the protocol and a real simulation."""
import numpy as np
import pytest

from fedkd import protocol
from fedkd.config import make_config
from fedkd.privacy.release import epsilon_after, plain_soft_labels, release


def test_swing_off_is_plain_distillation_byte_for_byte():
    logits = np.random.default_rng(0).normal(size=(50, 10)).astype(np.float32)
    cfg = make_config()
    soft, metrics = release(cfg, logits, targets=None, client_id=0, round_num=1)
    assert metrics == {}
    np.testing.assert_array_equal(soft, plain_soft_labels(logits, cfg["temperature"]))
    common = dict(round_num=1, fingerprint="f", partition_id=0, model="mlp", num_examples=5,
                  metrics={"acc_local": 1.0, "acc_global": 1.0})
    a = protocol.build_reply_content(soft_labels=soft, **common)
    b = protocol.build_reply_content(soft_labels=plain_soft_labels(logits, 3.0), **common)
    assert protocol.message_bytes(a) == protocol.message_bytes(b)
    assert protocol.recorddict_to_proto(a).SerializeToString() == protocol.recorddict_to_proto(b).SerializeToString()


def test_swing_on_changes_the_release_and_stays_a_distribution():
    logits = np.random.default_rng(1).normal(size=(50, 10)).astype(np.float32) * 5
    cfg = make_config({"privacy.swing": True, "privacy.noise_scale": 0.1})
    soft, metrics = release(cfg, logits, targets=None, client_id=0, round_num=1)
    assert soft.dtype == np.float32 and (soft >= 0).all()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(soft, plain_soft_labels(logits, cfg["temperature"]))
    assert 0 <= metrics["swing_mean_score"] <= 1
    again, _ = release(cfg, logits, targets=None, client_id=0, round_num=1)
    np.testing.assert_array_equal(soft, again)  # derived noise seed: reproducible studies
    fresh = make_config({"privacy.swing": True, "privacy.noise_seed": "os"})
    a, _ = release(fresh, logits, None, 0, 1)
    b, _ = release(fresh, logits, None, 0, 1)
    assert not np.array_equal(a, b)


def test_epsilon_grows_with_releases_and_falls_with_noise():
    low = make_config({"privacy.swing": True, "privacy.noise_scale": 0.5})
    high = make_config({"privacy.swing": True, "privacy.noise_scale": 2.0})
    assert epsilon_after(low, 1) < epsilon_after(low, 5)
    assert epsilon_after(high, 5) < epsilon_after(low, 5)


@pytest.mark.slow
def test_swing_and_canaries_through_the_simulation(tmp_path):
    from server.simulate import simulate

    cfg = make_config(dict(num_clients=3, rounds=2, transfer_size=150, local_test_size=60, revisit_epochs=8,
                           **{"privacy.swing": True, "privacy.noise_scale": 0.05, "canaries.enabled": True,
                              "canaries.count": 5, "canaries.references": 200}))
    s = simulate(cfg, str(tmp_path / "run"), progress=False)
    assert 0 < s["privacy"]["epsilon"] < float("inf")
    assert s["privacy"]["epsilon_per_round"][0] < s["privacy"]["epsilon_per_round"][1]
    assert set(s["privacy"]["epsilon_per_client"]) == {"0", "1", "2"}
    can = s["canaries"]
    assert can["exposure_owner"] > can["exposure_peers_mean"]  # the owner memorised its secrets
    assert can["exposure_owner"] > 0.5 * can["max_exposure"]
    assert s["transfer_size"] == 150 + 5  # canary images are public, their labels are not
    assert s["alma"] > 0.5
