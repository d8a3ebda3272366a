"""Server checkpoint/resume: the files, the refusals, and a resumed run that matches an uninterrupted one."""
import json
import os
import shutil

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

# the simulations of this module share one Ray instance and its client actors (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_ray_per_module")

# server.min_contributors = 1: with 3 clients a target that must mix 2 peers is often taken away, and the
# tampering cases below need every client's targets in the checkpoint
TINY = dict(dataset="digits", num_clients=3, rounds=3, alpha=0.5, transfer_size=100, local_test_size=60,
            models=["cnn_small", "mlp"], digest_epochs=1, revisit_epochs=2, seed=11, algorithm="knfu",
            **{"server.min_contributors": 1})
M, C = 5, 4


def _targets(seed):
    rng = np.random.default_rng(seed)
    return {f"targets/{pid}": rng.dirichlet(np.ones(C), size=M).astype(np.float32) for pid in (0, 2)}


def _save(out, rnd, cfg, state):
    """A checkpoint after round ``rnd`` with its ``rnd`` round records, as the round loop writes them."""
    if not (out / "config.json").exists():
        (out / "config.json").write_text(json.dumps(dict(cfg)))
    path = out / "metrics.jsonl"
    have = len(path.read_text().splitlines()) if path.exists() else 0
    with open(path, "a") as fh:
        for r in range(have + 1, rnd + 1):
            fh.write(json.dumps({"round": r, "alma": 0.5}) + "\n")
    return checkpoint.save_checkpoint(out, rnd, cfg, state, rnd)


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
    assert max(sizes) - min(sizes) <= 8  # only the numbers' digits grow
    assert [r["round"] for r in checkpoint.load_checkpoint(tmp_path).rounds] == [1, 2, 3, 4, 5]


def test_a_checkpoint_whose_round_records_are_gone_is_refused(tmp_path):
    cfg = make_config(TINY)
    _save(tmp_path, 2, cfg, _targets(1))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "metrics.jsonl").write_text(lines[0])
    with pytest.raises(CheckpointError, match="does not hold the round records"):
        checkpoint.load_checkpoint(tmp_path)


def _forged(path, **changes):
    """checkpoint.json edited with fedkd's own digest recomputed: only the semantic checks can refuse it."""
    meta = json.loads(path.read_text())
    meta.update(changes)
    meta["digest"] = checkpoint._json_digest(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage,message", [
    (lambda p: (p / "checkpoint-r1.npz").write_bytes((p / "checkpoint-r1.npz").read_bytes()[:40]),
     "corrupt or truncated"),
    (lambda p: (p / "checkpoint-r1.npz").unlink(), "arrays not found"),
    (lambda p: (p / "checkpoint.json").write_text("{not json"), "is not a fedkd checkpoint"),
    (lambda p: _forged(p / "checkpoint.json", arrays_file="../../etc/passwd"), "may not"),
    (lambda p: _forged(p / "checkpoint.json", round=10**9, arrays_file="checkpoint-r1000000000.npz"),
     "every round writes one"),
    (lambda p: _forged(p / "checkpoint.json", records="1"), "is not a count"),
    (lambda p: (p / "checkpoint.json").write_text("[" * 100_000 + "]" * 100_000), "not a fedkd checkpoint"),
])
def test_a_corrupt_checkpoint_is_refused_naming_the_file(tmp_path, damage, message):
    cfg = make_config(TINY)
    _save(tmp_path, 1, cfg, _targets(1))
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_checkpoint(tmp_path)


@pytest.mark.parametrize("state,message", [
    ({"targets/0": np.full((M, C), np.nan, np.float32)}, "bad_probabilities"),
    ({"targets/0": np.full((M, C), 0.5, np.float32)}, "bad_probabilities"),
    ({"targets/0": np.full((M + 1, C), 0.25, np.float32)}, "expected float32"),
    ({"targets/9": np.full((M, C), 0.25, np.float32)}, "not a client id"),
    ({"weights/0": np.zeros(3)}, "unexpected entry"),
])
def test_restored_arrays_are_validated_like_replies(tmp_path, state, message):
    cfg = make_config(TINY)
    _save(tmp_path, 1, cfg, state)
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
    _save(tmp_path, 4, cfg, state)
    restored = CheckedFedAvg(cfg, facts, IdentityBook(3))
    assert checkpoint.restore(checkpoint.load_checkpoint(tmp_path), restored,
                              RunRecorder(tmp_path / "run", cfg, {})) == 4
    for name, array in restored.arrays.items():
        np.testing.assert_array_equal(array.numpy(), state[f"arrays/{name}"])
    bad = dict(state)
    bad[next(k for k in bad if k.startswith("arrays/"))] = np.zeros(2, np.float32)
    _save(tmp_path, 5, cfg, bad)
    with pytest.raises(CheckpointError, match="expected float32"):
        checkpoint.restore(checkpoint.load_checkpoint(tmp_path), CheckedFedAvg(cfg, facts, IdentityBook(3)),
                           RunRecorder(tmp_path / "run2", cfg, {}))


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path):
    cfg = make_config(TINY)
    _save(tmp_path, 1, cfg, _targets(1))
    # a crash after the next round's arrays were written but before checkpoint.json was switched
    (tmp_path / "checkpoint-r2.npz").write_bytes(b"half a file")
    (tmp_path / "checkpoint.json.tmp").write_text("{")
    assert checkpoint.load_checkpoint(tmp_path).round == 1


def test_resume_refuses_a_missing_checkpoint_and_changed_settings(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        checkpoint.load_checkpoint(tmp_path)
    cfg = make_config(TINY)
    _save(tmp_path, 2, cfg, _targets(1))
    with pytest.raises(CheckpointError, match=r"algorithm: 'knfu' -> 'fedmd'.*seed: 11 -> 12"):
        checkpoint.load_for_resume(tmp_path, cfg.replace(algorithm="fedmd", seed=12))
    # more rounds, another device or other server settings are fine
    checkpoint.load_for_resume(tmp_path, cfg.replace(rounds=9, device="cpu", server__reply_timeout=5.0))


def test_cli_resume_config_and_its_refusals(tmp_path, capsys):
    cfg = make_config(TINY)
    _save(tmp_path, 2, cfg.replace(fault__stop_after_round=2), {})
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


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run 'crashed' after round 2 of 3 (fault.stop_after_round): its folder, to copy and resume."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    stopped = run_simulation(make_config(TINY).replace(fault__stop_after_round=2), out, progress=False)
    assert stopped["rounds"] == 2
    return out


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, stopped_run):
    """3 rounds straight vs. a 'crash' after round 2 and `fedkd simulate --resume`; on the way, a resume from a
    tampered checkpoint is refused, leaves every file as it was, and the good checkpoint then resumes."""
    cfg = make_config(TINY)
    full, half = tmp_path / "full", tmp_path / "a-much-longer-folder-name"  # paths no longer travel
    straight = run_simulation(cfg, full, progress=False)

    shutil.copytree(stopped_run, half)
    assert json.loads((half / "checkpoint.json").read_text())["round"] == 2
    for c in range(3):
        assert sorted(os.listdir(half / "nodes" / f"client-{c}")) == [f"client_{c}_round_{r}.state" for r in (1, 2)]

    good = _files(half)
    TAMPERING["nan targets"][0](half)  # what a hostile DS-FL client could get checkpointed, or a torn write
    tampered = _files(half)
    assert fedkd_main(["simulate", "--resume", "--out", str(half), "--quiet"]) == 2
    assert _files(half) == tampered  # refused: nothing written, the records are all there
    for name, data in good.items():  # the good checkpoint back
        (half / name).write_bytes(data)

    assert fedkd_main(["simulate", "--resume", "--out", str(half), "--quiet"]) == 0
    resumed = json.loads((half / "summary.json").read_text())
    assert resumed == json.loads((full / "summary.json").read_text()) == straight
    lines = [json.loads(x) for x in (half / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [1, 2, 3]
    assert checkpoint.load_checkpoint(half).round == 3  # its records digest extends the resumed one's


# ---------------------------------------------------------------- tampering: refused whole, nothing touched

def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rewrite(out, change, forge=True):
    """Rewrite the checkpoint's arrays with ``change(state)``; with ``forge``, recompute every digest as fedkd
    would, so that only the semantic checks can refuse it."""
    meta = json.loads((out / "checkpoint.json").read_text())
    path = out / meta["arrays_file"]
    with np.load(path) as npz:
        state = {k: npz[k] for k in npz.files}
    state = change(state)
    np.savez(path, **state)
    if forge:
        _forged(out / "checkpoint.json", arrays={k: checkpoint.array_digest(k, v) for k, v in state.items()})


def _swap(state):
    first, second = sorted(k for k in state if k.startswith("targets/"))[:2]
    state[first], state[second] = state[second], state[first]
    return state


def _nan_last_targets(state):
    last = sorted(k for k in state if k.startswith("targets/"))[-1]
    return {**state, last: np.full_like(state[last], np.nan)}


def _nudge(state):
    t = state["targets/0"].copy()
    low, high = int(t[0].argmin()), int(t[0].argmax())
    t[0, high] += t[0, low] + 0.0009  # the row still sums to 1, one entry is -0.0009
    t[0, low] = -0.0009
    return {**state, "targets/0": t}


def _edit_record(out):
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"alma": 0.', '"alma": 1.')  # same length: only the digest can tell
    (out / "metrics.jsonl").write_text("".join(lines))


def _fifo(out):
    path = out / json.loads((out / "checkpoint.json").read_text())["arrays_file"]
    path.unlink()
    os.mkfifo(path)


def _compressed(out):
    path = out / json.loads((out / "checkpoint.json").read_text())["arrays_file"]
    with np.load(path) as npz:
        state = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **state)


TAMPERING = {
    "nan targets": (lambda o: _rewrite(o, lambda s: {k: np.full_like(v, np.nan) if k.startswith("targets/") else v
                                                     for k, v in s.items()}, forge=False),
                    "entry 'targets/0' was changed after it was written"),
    "swapped targets": (lambda o: _rewrite(o, _swap, forge=False), "was changed after it was written"),
    "nan targets, digests forged": (lambda o: _rewrite(o, _nan_last_targets), "NaN/Inf entries"),
    "entries of -0.0009": (lambda o: _rewrite(o, _nudge), "negative probabilities"),
    "failed_rounds -1e9": (lambda o: _rewrite(o, lambda s: {**s, "failed_rounds": np.array([-10**9])}),
                           "entry 'failed_rounds'"),
    "key targets/00": (lambda o: _rewrite(o, lambda s: {("targets/00" if k == "targets/0" else k): v
                                                        for k, v in s.items()}), "unexpected entry 'targets/00'"),
    "round 1e9": (lambda o: _forged(o / "checkpoint.json", round=10**9), "may not"),
    "config edited": (lambda o: (o / "checkpoint.json").write_text(
        (o / "checkpoint.json").read_text().replace('"alpha": 0.5', '"alpha": 5.0')), "edited or torn"),
    "config edited, digest forged": (lambda o: _forged(o / "checkpoint.json", config={
        **json.loads((o / "checkpoint.json").read_text())["config"], "alpha": 5.0}), "disagree on alpha"),
    "no records": (lambda o: (o / "metrics.jsonl").write_text(""), "does not hold the round records"),
    "record edited": (_edit_record, "round records were changed"),
    "FIFO as arrays": (_fifo, "is not a regular file (a FIFO)"),
    "compressed arrays": (_compressed, "is compressed"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_checkpoint_is_refused_naming_it_and_every_file_stays(stopped_run, tmp_path, capsys, case):
    from server.rounds import run_federation

    tamper, message = TAMPERING[case]
    out = tmp_path / "r"
    shutil.copytree(stopped_run, out)
    tamper(out)
    before = _files(out)
    assert fedkd_main(["simulate", "--resume", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert _files(out) == before
    if case == "FIFO as arrays":
        return
    # the server's own check (a deployment resumes through it) refuses before it writes anything too
    cfg = make_config(dict(TINY, **{"server.resume": True}))
    with pytest.raises(CheckpointError):
        run_federation(None, cfg, out, progress=False)
    assert _files(out) == before


@pytest.mark.parametrize("meta,message", [
    ([10**9, 5], "outside rounds 1..2"), ([0, 5], "outside rounds"), ([1, 10**18], "examples, outside"),
    ([1], "malformed"),
])
def test_restored_staleness_and_counts_are_bounded(tmp_path, meta, message):
    cfg = make_config(dict(TINY, clients_per_round=2))
    state = {"latest/1": np.full((M, C), 0.25, np.float32), "latest_meta/1": np.array(meta, np.int64),
             "failed_rounds": np.array([0], np.int64)}
    _save(tmp_path, 2, cfg, state)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_for_resume(tmp_path, cfg)


@pytest.mark.parametrize("share,message", [
    (np.array([1.5]), "not a share within"), (np.array([-0.1]), "not a share within"),
    (np.array([0.5, 0.5]), "not a share within"), (np.array([1], np.int64), "not a share within"),
])
def test_a_restored_own_share_is_bounded(tmp_path, share, message):
    cfg = make_config(dict(TINY, clients_per_round=2))
    state = {"latest/1": np.full((M, C), 0.25, np.float32), "latest_meta/1": np.array([1, 5], np.int64),
             "latest_share/1": share, "failed_rounds": np.array([0], np.int64)}
    _save(tmp_path, 2, cfg, state)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_for_resume(tmp_path, cfg)


def test_the_own_share_of_a_latest_upload_survives_a_checkpoint():
    """With sampling an older upload stays in the pool: its share (server.echo_ramp) must come back with it, or
    a blurred echo would regain its weight after a resume."""
    strategy = _strategy(make_config(dict(TINY, clients_per_round=2)))
    upload = np.full((M, C), 0.25, np.float32)
    strategy.latest = {0: (1, upload, 5), 1: (2, upload, 7)}
    strategy.own_share = {1: 0.375}
    state = strategy.state_dict()
    assert state["latest_share/1"].tolist() == [0.375] and "latest_share/0" not in state
    again = _strategy(make_config(dict(TINY, clients_per_round=2)))
    again.load_state_dict(state)
    assert again.own_share == {1: 0.375} and sorted(again.latest) == [0, 1]
