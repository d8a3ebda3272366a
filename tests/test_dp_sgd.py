"""DP-SGD clients (issue 22): Opacus training, the accountant, the audit's DP check, label-distribution inference."""
import math

import numpy as np
import pytest
import torch

from fedkd.models import build_model
from fedkd.config import make_config
from fedkd.privacy.dp_sgd import (DpStep, dp_generators, make_dp_compatible, noise_multiplier_for,
                                  sample_rate, train_private, training_epsilon)

CPU = torch.device("cpu")


def _digits(n: int, classes=None, offset: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], y[keep]
    return x[offset: offset + n], y[offset: offset + n]


def _train(model, x, y, *, sigma=1.0, epochs=2, public=None, seed=0):
    gens = dp_generators("derived", seed, 0, 1, simulated=True, device=CPU)
    return train_private(model, x, y, clip=1.0, noise_multiplier=sigma, epochs=epochs, batch_size=16, lr=3e-3,
                         device=CPU, generators=gens, public=public)


def test_accountant_matches_opacus_own_for_the_same_training():
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _digits(96)
    model = make_dp_compatible(build_model("mlp", (1, 8, 8), 10, seed=0))
    engine = PrivacyEngine(accountant="rdp")
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16)
    module, opt, loader = engine.make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                              data_loader=loader, noise_multiplier=1.3, max_grad_norm=1.0)
    for _ in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xb), yb).backward()
            opt.step()
    ours = _train(make_dp_compatible(build_model("mlp", (1, 8, 8), 10, seed=0)), x, y, sigma=1.3)
    assert ours["steps"] == 2 * len(loader) and ours["sample_rate"] == pytest.approx(1 / len(loader))
    mine = training_epsilon([DpStep(1.3, ours["sample_rate"], ours["steps"])], 1e-5)
    assert mine == pytest.approx(engine.get_epsilon(1e-5), rel=1e-9)


def test_epsilon_grows_with_rounds_falls_with_noise_and_meets_the_target():
    q = sample_rate(300, 16)
    per_round = [training_epsilon([DpStep(1.0, q, 50)] * r, 1e-5) for r in (1, 2, 3)]
    assert 0 < per_round[0] < per_round[1] < per_round[2]
    assert training_epsilon([DpStep(2.0, q, 150)], 1e-5) < per_round[2]
    assert training_epsilon([DpStep(0.0, q, 1)], 1e-5) == math.inf  # no noise, no guarantee
    assert training_epsilon([], 1e-5) == 0.0
    dp = make_config({"privacy.dp_sgd": True, "privacy.dp_target_epsilon": 3.0, "rounds": 4}).privacy
    sigma = noise_multiplier_for(dp, 300, 16, 5)
    whole_run = training_epsilon([DpStep(sigma, q, 5 * math.ceil(300 / 16))] * 4, 1e-5)
    assert 2.9 < whole_run <= 3.0


def test_public_distillation_adds_no_privacy_cost_but_does_train():
    x, y = _digits(64)
    public_x, _ = _digits(40, offset=500)
    targets = np.full((40, 10), 0.02, np.float32)
    targets[:, 3] = 0.82
    plain = make_dp_compatible(build_model("mlp", (1, 8, 8), 10, seed=0))
    joint = make_dp_compatible(build_model("mlp", (1, 8, 8), 10, seed=0))
    a = _train(plain, x, y)
    b = _train(joint, x, y, public=(public_x, targets, 3.0, 1.0))
    assert (a["steps"], a["sample_rate"]) == (b["steps"], b["sample_rate"])  # same private steps: same epsilon
    assert any(not torch.equal(p, q) for p, q in zip(plain.parameters(), joint.parameters()))
    with torch.no_grad():
        share = (joint(torch.from_numpy(public_x)).argmax(1) == 3).float().mean()
    assert share > 0.5  # the public step pulled the model toward the targets


def test_noise_is_reproducible_in_simulation_and_fresh_on_real_nodes():
    x, y = _digits(48)

    def weights(noise_seed, simulated):
        model = make_dp_compatible(build_model("mlp", (1, 8, 8), 10, seed=0))
        gens = dp_generators(noise_seed, 0, 0, 1, simulated=simulated, device=CPU)
        train_private(model, x, y, clip=1.0, noise_multiplier=1.0, epochs=1, batch_size=16, lr=3e-3, device=CPU,
                      generators=gens)
        return torch.cat([p.flatten() for p in model.parameters()])

    assert torch.equal(weights("auto", True), weights("auto", True))
    assert not torch.equal(weights("auto", False), weights("auto", False))


def test_batchnorm_models_are_fixed_the_opacus_way_and_raw_ones_refused(tmp_path):
    from fedkd.model_store import load_client_model, save_client_model

    x, y = _digits(32)
    raw = build_model("cnn_medium", (1, 8, 8), 10, seed=0)
    with pytest.raises(ValueError, match="cannot be trained with DP-SGD"):
        _train(raw, x, y, epochs=1)
    fixed = make_dp_compatible(raw)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fixed.modules())
    assert _train(fixed, x, y, epochs=1)["steps"] == 2
    save_client_model(tmp_path / "model.pt", "cnn_medium", fixed, dp_compatible=True)
    loaded, name = load_client_model(tmp_path / "model.pt", (1, 8, 8), 10)
    assert name == "cnn_medium"
    torch.testing.assert_close(loaded(torch.from_numpy(x)), fixed.eval()(torch.from_numpy(x)))


def test_the_dp_check_passes_an_honest_client_and_catches_a_broken_one():
    from fedkd.audit.dp_check import dp_replay_check
    from fedkd.privacy.canaries import make_canaries

    x, y = _digits(100)
    public_x, _ = _digits(30, offset=900)
    cand_x, cand_y = make_canaries(60, (1, 8, 8), 10, seed=1)
    included = np.random.default_rng(1).random(60) < 0.5

    def broken(model, x, y, **kw):  # noise off while the accountant still counts the configured noise
        return train_private(model, x, y, **{**kw, "noise_multiplier": 0.0})

    common = dict(clip=1.0, noise_multiplier=8.0, rounds=2, epochs_per_round=6, batch_size=16, lr=3e-3,
                  temperature=1.0, delta=1e-5, seed=0)
    model_fn = lambda: build_model("mlp", (1, 8, 8), 10, seed=0)  # noqa: E731
    honest = dp_replay_check(model_fn, x, y, public_x, cand_x, cand_y, included, **common)
    caught = dp_replay_check(model_fn, x, y, public_x, cand_x, cand_y, included, trainer=broken, **common)
    assert honest["accounted_epsilon"] == pytest.approx(caught["accounted_epsilon"])
    assert honest["passed"] and honest["empirical_lower_bound"] <= honest["accounted_epsilon"]
    assert not caught["passed"] and caught["empirical_lower_bound"] > caught["accounted_epsilon"]


def test_label_distribution_inference_recovers_a_skewed_histogram_from_plain_uploads():
    from fedkd.audit.label_distribution import label_distribution_inference
    from fedkd.privacy.release import plain_soft_labels
    from fedkd.training import predict_logits, train_supervised

    x, y = _digits(300)
    skewed = np.concatenate([np.flatnonzero(y == c)[:k] for c, k in ((0, 25), (1, 20), (2, 10), (7, 5))])
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    train_supervised(model, x[skewed], y[skewed], epochs=15, batch_size=16, lr=3e-3, seed=0, device="cpu")
    public_x, _ = _digits(400, offset=1000)
    upload = plain_soft_labels(predict_logits(model, public_x, device="cpu"), 3.0)
    population = np.bincount(y, minlength=10)
    out = label_distribution_inference({0: upload}, {0: np.bincount(y[skewed], minlength=10)}, population)
    entry = out["0"]
    assert entry["tv"] < 0.5 * entry["baseline_tv"] and entry["kl"] < 0.5 * entry["baseline_kl"]
    assert np.asarray(entry["estimate"])[[0, 1, 2, 7]].sum() > 0.8  # the held classes, out of ten
    with pytest.raises(ValueError, match="soft_labels"):
        label_distribution_inference({0: upload[:, :1]}, {0: np.ones(10)}, population)


def test_the_advantage_interval_says_whether_uploads_tell_more_than_the_guess():
    """Uploads that follow each client's histogram leak (interval above 0); uploads that are the population's
    proportions do not (the interval is at 0); one client gets no interval."""
    from fedkd.audit.label_distribution import label_distribution_inference

    rng = np.random.default_rng(0)
    histograms = {c: rng.multinomial(200, rng.dirichlet(np.full(10, 0.3))) for c in range(8)}
    population = np.sum(list(histograms.values()), axis=0)

    def upload_like(hist):  # 100 public answers whose top classes follow ``hist``
        tops = rng.choice(10, size=100, p=hist / hist.sum())
        return np.eye(10)[tops] * 0.9 + 0.01

    telling = label_distribution_inference({c: upload_like(h) for c, h in histograms.items()}, histograms,
                                           population)
    assert telling["advantage"]["tv"]["leaks"] and telling["advantage"]["tv"]["ci95"][0] > 0
    blind = label_distribution_inference({c: np.tile(population / population.sum(), (100, 1)) for c in histograms},
                                         histograms, population, estimator="mean")
    low, high = blind["advantage"]["tv"]["ci95"]
    assert not blind["advantage"]["tv"]["leaks"] and abs(low) < 1e-9 and abs(high) < 1e-9
    one = label_distribution_inference({0: upload_like(histograms[0])}, {0: histograms[0]}, population)
    assert one["advantage"]["tv"]["ci95"] is None and one["advantage"]["tv"]["leaks"] is None


def test_the_accountant_history_survives_the_node_checkpoint(tmp_path):
    from flwr.app import Context, RecordDict

    from clients.train import dp_history_record, dp_history_so_far
    from clients.node_checkpoint import restore_node_state, save_node_state

    history = (DpStep(1.1, 1 / 17, 170), DpStep(1.1, 1 / 17, 170))
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    assert dp_history_so_far(ctx) == ()
    ctx.state["dp_sgd"] = dp_history_record(history)
    save_node_state(tmp_path, 0, 2, ctx)
    fresh = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    assert restore_node_state(tmp_path, 0, 2, fresh)
    assert dp_history_so_far(fresh) == history
    assert training_epsilon(dp_history_so_far(fresh), 1e-5) == training_epsilon(history, 1e-5)


def test_dp_sgd_through_the_simulation(tmp_path):
    """A tiny DP-SGD run: every client's epsilon grows round by round and stays within the whole-run target."""
    import json

    from fedkd.cli.simulation import run_simulation

    cfg = make_config(dict(num_clients=3, rounds=2, transfer_size=100, local_test_size=50, revisit_epochs=2,
                           models=["mlp", "cnn_medium"], order="joint",
                           **{"privacy.dp_sgd": True, "privacy.dp_target_epsilon": 4.0,
                              "server.min_contributors": 1}))  # a pool of 2 peers: every client gets targets
    s = run_simulation(cfg, tmp_path / "run", progress=False)
    rounds = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert set(rounds[0]["training_epsilon_per_client"]) == {"0", "1", "2"}
    for cid in ("0", "1", "2"):
        assert 0 < rounds[0]["training_epsilon_per_client"][cid] < rounds[1]["training_epsilon_per_client"][cid]
    assert 3.5 < s["privacy"]["training_epsilon"] <= 4.0 and s["privacy"]["training_delta"] == 1e-5
    assert s["privacy"]["training_epsilon_per_round"] == [r["training_epsilon"] for r in rounds]
    assert rounds[1]["distilled_clients"] == [0, 1, 2] and 0 <= s["alma"] <= 1  # (tiny: utility is not the point)
