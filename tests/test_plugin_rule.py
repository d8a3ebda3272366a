"""A fusion rule registered from outside the package runs end to end through Flower's simulation engine.

Nothing in server/ or clients/ is touched: one function, one registry entry, its settings (one key).
"""
import json

import numpy as np
import pytest

from fedkd.cli.simulation import run_simulation
from fedkd.config import ConfigError, describe_keys, make_config
from fedkd.fusion import FusionResult, FusionRule, register, unregister
from fedkd.keys import POSITIVE, setting, settings_group


def fuse_power_mean(soft_labels, n_samples=None, power=2.0):
    """Every client gets the renormalised power mean of all soft labels (a toy rule)."""
    p = np.asarray(soft_labels, dtype=np.float64)
    mean = (p ** power).mean(axis=0) ** (1.0 / power)
    mean /= mean.sum(axis=1, keepdims=True)
    n = p.shape[0]
    return FusionResult(targets=np.broadcast_to(mean, p.shape).astype(np.float32), has_targets=np.ones(n, bool),
                        weights=np.full((n, n), 1.0 / n), info={"toy_power": power})


@pytest.fixture
def toy_rule():
    @settings_group("powermean")
    class PowerMeanSettings:
        power: float = setting(2.0, "exponent of the power mean", POSITIVE)

    rule = register(FusionRule("powermean", fuse_power_mean, PowerMeanSettings))
    yield rule
    unregister("powermean")


def test_a_registered_rule_brings_its_keys(toy_rule):
    cfg = make_config({"algorithm": "powermean", "powermean.power": 3})
    assert cfg["powermean.power"] == 3.0 and "powermean.power" in describe_keys()
    assert "powermean.power" not in cfg.for_clients()  # clients never need a server-side rule's keys
    with pytest.raises(ConfigError, match="powermean.power"):
        make_config({"algorithm": "powermean", "powermean.power": -1})


def test_an_unregistered_rule_takes_its_keys_with_it():
    @settings_group("toytrim")
    class TrimSettings:
        trim: float = setting(0.1, "fraction trimmed", POSITIVE)

    register(FusionRule("toytrim", fuse_power_mean, TrimSettings))
    assert "toytrim.trim" in describe_keys()
    unregister("toytrim")
    assert "toytrim.trim" not in describe_keys()


@pytest.mark.slow
def test_a_registered_rule_runs_through_the_simulation_engine(toy_rule, tmp_path):
    cfg = make_config(dict(dataset="digits", num_clients=3, rounds=2, transfer_size=60, local_test_size=40,
                           digest_epochs=1, revisit_epochs=1, seed=2, algorithm="powermean",
                           **{"powermean.power": 3.0}))
    summary = run_simulation(cfg, tmp_path / "run", progress=False)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["algorithm"] == "powermean" and summary["rounds"] == 2
    assert summary["identity_alarms"] == {}  # every honest identify answer matched the engine's assignment
    assert [r["toy_power"] for r in records] == [3.0, 3.0]
    assert records[0]["fused_clients"] == [0, 1, 2]
    assert records[1]["distilled_clients"] == [0, 1, 2]  # round 2's clients distilled the toy rule's targets
