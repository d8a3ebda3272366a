"""Server checkpoint/resume: the files, the refusals, and a resumed run that matches an uninterrupted one."""
import json
import os

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, MetricRecord, RecordDict

from clients.node_checkpoint import restore_node_state, save_node_state
from fedkd.cli import main as fedkd_main
from fedkd.cli.simulation import run_simulation
from fedkd.config import make_config
from fedkd.fusion import get_rule
from fedkd.run_records import RunRecorder
from server import checkpoint
from server.checkpoint import CheckpointError
from server.identity import IdentityBook
from server.public import PublicFacts
from server.strategy import KnowledgeFusion

TINY = dict(dataset="digits", num_clients=3, rounds=3, alpha=0.5, transfer_size=100, local_test_size=60,
            models=["cnn_small", "mlp"], digest_epochs=1, revisit_epochs=2, seed=11, algorithm="knfu")
M, C = 5, 4


def _targets(seed):
    rng = np.random.default_rng(seed)
    return {f"targets/{pid}": rng.dirichlet(np.ones(C), size=M).astype(np.float32) for pid in (0, 2)}


def _strategy(cfg):
    facts = PublicFacts(fingerprint="f", num_classes=C, transfer_size=M, input_shape=(1, 8, 8), has_global_test=True)
    return KnowledgeFusion(get_rule(cfg["algorithm"]), cfg, facts, IdentityBook(cfg["num_clients"]))


def test_checkpoint_round_trip_and_old_arrays_removed(tmp_path):
    cfg = make_config(TINY)
    rounds = [{"round": 1, "alma": 0.5}, {"round": 2, "alma": 0.625}, {"round": 3, "alma": 0.75}]
    recorder = RunRecorder(tmp_path, cfg, {})  # the round records live in its metrics.jsonl
    recorder.log_round(rounds[0])
    checkpoint.save_checkpoint(tmp_path, 1, cfg, _targets(1), 1)
    recorder.log_round(rounds[1])
    checkpoint.save_checkpoint(tmp_path, 2, cfg, _targets(2), 2)
    recorder.log_round(rounds[2])  # a crash after round 3 was logged but before its checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-r2.npz", "checkpoint.json", "config.json",
                                                          "metrics.jsonl"]
    ckpt = checkpoint.load_checkpoint(tmp_path)
    assert ckpt.round == 2 and ckpt.rounds == rounds[:2]
    strategy = _strategy(cfg)
    assert checkpoint.restore(ckpt, strategy, RunRecorder(tmp_path / "again", cfg, {})) == 2
    assert sorted(strategy.targets) == [0, 2]
    for name, target in _targets(2).items():
        np.testing.assert_array_equal(strategy.targets[int(name.split("/")[1])], target)


def test_a_checkpoint_costs_the_same_every_round(tmp_path):
    """checkpoint.json names how many metrics.jsonl lines it covers instead of copying them (O(1) per round)."""
    cfg = make_config(TINY)
    recorder = RunRecorder(tmp_path, cfg, {})
    sizes = []
    for rnd in range(1, 6):
        recorder.log_round({"round": rnd, "weights": np.full((30, 30), 0.5).tolist()})
        checkpoint.save_checkpoint(tmp_path, rnd, cfg, _targets(rnd), rnd)
        sizes.append((tmp_path / "checkpoint.json").stat().st_size)
    assert len(set(sizes)) == 1
    assert [r["round"] for r in checkpoint.load_checkpoint(tmp_path).rounds] == [1, 2, 3, 4, 5]


def test_a_checkpoint_whose_round_records_are_gone_is_refused(tmp_path):
    cfg = make_config(TINY)
    recorder = RunRecorder(tmp_path, cfg, {})
    recorder.log_round({"round": 1})
    checkpoint.save_checkpoint(tmp_path, 2, cfg, _targets(1), 2)
    with pytest.raises(CheckpointError, match="1 round records, the checkpoint needs 2"):
        checkpoint.load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage,message", [
    (lambda p: (p / "checkpoint-r1.npz").write_bytes((p / "checkpoint-r1.npz").read_bytes()[:40]),
     "corrupt or truncated"),
    (lambda p: (p / "checkpoint-r1.npz").unlink(), "does not exist"),
    (lambda p: (p / "checkpoint.json").write_text("{not json"), "is not a fedkd checkpoint"),
    (lambda p: (p / "checkpoint.json").write_text(json.dumps({"round": 1, "arrays_file": "../../etc/passwd",
                                                              "config": {}, "records": 0})), "may not"),
])
def test_a_corrupt_checkpoint_is_refused_naming_the_file(tmp_path, damage, message):
    cfg = make_config(TINY)
    checkpoint.save_checkpoint(tmp_path, 1, cfg, _targets(1), 0)
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_checkpoint(tmp_path)


@pytest.mark.parametrize("state,message", [
    ({"targets/0": np.full((M, C), np.nan, np.float32)}, "non_finite"),
    ({"targets/0": np.full((M, C), 0.5, np.float32)}, "not_normalised"),
    ({"targets/0": np.full((M + 1, C), 0.25, np.float32)}, "expected float32"),
    ({"targets/9": np.full((M, C), 0.25, np.float32)}, "not a client id"),
    ({"weights/0": np.zeros(3)}, "unexpected entry"),
])
def test_restored_arrays_are_validated_like_replies(tmp_path, state, message):
    cfg = make_config(TINY)
    checkpoint.save_checkpoint(tmp_path, 1, cfg, state, 0)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.restore(checkpoint.load_checkpoint(tmp_path), _strategy(cfg),
                           RunRecorder(tmp_path / "again", cfg, {}))


def test_fedavg_weights_survive_exactly_and_are_checked(tmp_path):
    from server.fedavg import CheckedFedAvg

    cfg = make_config(dict(TINY, algorithm="fedavg", models=["mlp"]))
    facts = PublicFacts(fingerprint="f", num_classes=10, transfer_size=M, input_shape=(1, 8, 8), has_global_test=True)
    strategy = CheckedFedAvg(cfg, facts, IdentityBook(3))
    state = strategy.state_dict()
    state = {k: (v + 1 if k.startswith("arrays/") and v.dtype.kind == "f" else v) for k, v in state.items()}
    checkpoint.save_checkpoint(tmp_path, 4, cfg, state, 0)
    restored = CheckedFedAvg(cfg, facts, IdentityBook(3))
    assert checkpoint.restore(checkpoint.load_checkpoint(tmp_path), restored,
                              RunRecorder(tmp_path / "run", cfg, {})) == 4
    for name, array in restored.arrays.items():
        np.testing.assert_array_equal(array.numpy(), state[f"arrays/{name}"])
    bad = dict(state)
    bad[next(k for k in bad if k.startswith("arrays/"))] = np.zeros(2, np.float32)
    checkpoint.save_checkpoint(tmp_path, 5, cfg, bad, 0)
    with pytest.raises(CheckpointError, match="expected float32"):
        checkpoint.restore(checkpoint.load_checkpoint(tmp_path), CheckedFedAvg(cfg, facts, IdentityBook(3)),
                           RunRecorder(tmp_path / "run2", cfg, {}))


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path):
    cfg = make_config(TINY)
    checkpoint.save_checkpoint(tmp_path, 1, cfg, _targets(1), 0)
    # a crash after the next round's arrays were written but before checkpoint.json was switched
    (tmp_path / "checkpoint-r2.npz").write_bytes(b"half a file")
    (tmp_path / "checkpoint.json.tmp").write_text("{")
    assert checkpoint.load_checkpoint(tmp_path).round == 1


def test_resume_refuses_a_missing_checkpoint_and_changed_settings(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        checkpoint.load_checkpoint(tmp_path)
    cfg = make_config(TINY)
    checkpoint.save_checkpoint(tmp_path, 2, cfg, _targets(1), 0)
    with pytest.raises(CheckpointError, match=r"algorithm: 'knfu' -> 'fedmd'.*seed: 11 -> 12"):
        checkpoint.load_for_resume(tmp_path, cfg.replace(algorithm="fedmd", seed=12))
    # more rounds, another device or other server settings are fine
    checkpoint.load_for_resume(tmp_path, cfg.replace(rounds=9, device="cpu", server__reply_timeout=5.0))


def test_cli_resume_config_and_its_refusals(tmp_path, capsys):
    cfg = make_config(TINY)
    checkpoint.save_checkpoint(tmp_path, 2, cfg.replace(attack__stop_after_round=2), {}, 0)
    resumed = checkpoint.resume_config(tmp_path, assignments=["rounds=5"])
    assert resumed["server.resume"] and resumed["fault.stop_after_round"] == 0 and resumed["rounds"] == 5
    assert resumed["seed"] == 11  # the checkpoint's config, not the defaults
    assert fedkd_main(["simulate", "--resume", "--out", str(tmp_path), "--set", "alpha=0.1"]) == 2
    assert "alpha: 0.5 -> 0.1" in capsys.readouterr().err
    assert fedkd_main(["simulate", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert fedkd_main(["simulate", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_server_only_keys_are_not_sent_to_clients():
    sent = make_config(dict(TINY, **{"server.resume": True, "out": "/somewhere/else"})).for_clients()
    assert "server.resume" not in sent and "out" not in sent and "algorithm" not in sent
    assert not any(k.startswith(("knfu.", "attack.", "sim.", "metrics.")) for k in sent)
    assert sent["server.checkpoint"] is True  # clients need this one: it switches the node-side checkpoint


def test_node_state_round_trip_keeps_two_rounds(tmp_path):
    def context(state):
        return Context(run_id=1, node_id=1, node_config={"partition-id": 2}, state=state, run_config={})

    for rnd in (1, 2, 3):
        state = RecordDict({"model": ArrayRecord({"w": Array(np.full(3, rnd, np.float32))}),
                            "privacy": MetricRecord({"releases": rnd})})
        save_node_state(tmp_path, 2, rnd, context(state))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client_2_round_2.state", "client_2_round_3.state"]
    fresh = context(RecordDict())
    assert restore_node_state(tmp_path, 2, 2, fresh)
    np.testing.assert_array_equal(fresh.state["model"]["w"].numpy(), np.full(3, 2, np.float32))
    assert fresh.state["privacy"]["releases"] == 2
    assert not restore_node_state(tmp_path, 2, 1, context(RecordDict()))


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """3 rounds straight vs. a 'crash' after round 2 (fault.stop_after_round) and `fedkd simulate --resume`."""
    cfg = make_config(TINY)
    full, half = tmp_path / "full", tmp_path / "a-much-longer-folder-name"  # paths no longer travel
    straight = run_simulation(cfg, full, progress=False)

    stopped = run_simulation(cfg.replace(attack__stop_after_round=2), half, progress=False)
    assert stopped["rounds"] == 2
    assert json.loads((half / "checkpoint.json").read_text())["round"] == 2
    for c in range(3):
        assert sorted(os.listdir(half / "nodes" / f"client-{c}")) == [f"client_{c}_round_{r}.state" for r in (1, 2)]

    assert fedkd_main(["simulate", "--resume", "--out", str(half), "--quiet"]) == 0
    resumed = json.loads((half / "summary.json").read_text())
    assert resumed == json.loads((full / "summary.json").read_text()) == straight
    lines = [json.loads(x) for x in (half / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [1, 2, 3]
    assert json.loads((half / "checkpoint.json").read_text())["round"] == 3
