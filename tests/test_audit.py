"""Tests for the privacy-audit attack library (fedkd.audit): membership inference and LOKT.

Everything runs on CPU on 8x8 digits with tiny models; the LOKT settings below are the
smallest that still learn (about 10 s of CPU per attack).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedkd.audit import (
    LabelOracle,
    LoktConfig,
    QueryBudgetExceeded,
    attack_metrics,
    audit_membership,
    generate,
    invert,
    lokt_attack,
    membership_scores_label_only,
    membership_scores_loss,
    membership_scores_reference,
    score_reconstructions,
    train_evaluator,
    train_reference_models,
    train_tacgan,
    worst_client,
)
from fedkd.data import load_dataset
from fedkd.models import build_model
from fedkd.training import predict_logits, train_supervised

CPU = "cpu"


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    x, y = np.array(ds.x_train), np.array(ds.y_train)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order], y[order]


def _train(arch, x, y, *, epochs, batch_size=32, lr=1e-3, seed=0):
    model = build_model(arch, tuple(x.shape[1:]), 10, seed=seed)
    train_supervised(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=CPU)
    return model.eval()


# --------------------------------------------------------------------------- metrics
def test_metrics_perfectly_separable_scores():
    m = attack_metrics(np.linspace(2.0, 3.0, 50), np.linspace(0.0, 1.0, 500))
    assert m["auc"] == 1.0
    assert m["tpr_at_1fpr"] == 1.0
    assert m["tpr_at_0.1fpr"] == 1.0
    fpr, tpr = m["roc"]
    assert fpr.shape == tpr.shape == (101,)
    assert m["n_members"] == 50 and m["n_nonmembers"] == 500


def test_metrics_uninformative_and_known_roc():
    # Every score tied: the ROC is the diagonal, so TPR equals FPR.
    m = attack_metrics(np.zeros(100), np.zeros(100))
    assert m["auc"] == 0.5
    assert m["tpr_at_1fpr"] == pytest.approx(0.01)
    # Hand-computed ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1); AUC 0.75, TPR 0.5 at low FPR.
    m = attack_metrics([1.0, 0.5], [0.75, 0.0])
    assert m["auc"] == pytest.approx(0.75)
    assert m["tpr_at_1fpr"] == pytest.approx(0.5)
    assert m["tpr_at_0.1fpr"] == pytest.approx(0.5)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="member_scores"):
        attack_metrics([], [0.1])
    with pytest.raises(ValueError, match="nonmember_scores"):
        attack_metrics([0.1], [np.nan])


# --------------------------------------------------------------------------- membership
@pytest.fixture(scope="module")
def mia_setup(digits):
    x, y = digits
    members, nonmembers, disjoint = slice(0, 60), slice(60, 120), slice(120, 180)
    reference_pool = slice(180, 600)
    overfit = _train("mlp", x[members], y[members], epochs=300, batch_size=16)
    never_saw = _train("mlp", x[disjoint], y[disjoint], epochs=300, batch_size=16)
    refs = train_reference_models(
        x[reference_pool], y[reference_pool], num_classes=10, n_models=2, arch="mlp",
        subsample=60 / 420, epochs=300, batch_size=16, seed=7, device=CPU,
    )
    return {
        "members": (x[members], y[members]),
        "nonmembers": (x[nonmembers], y[nonmembers]),
        "overfit": overfit,
        "never_saw": never_saw,
        "refs": refs,
    }


def test_overfit_model_is_attackable(mia_setup):
    (xm, ym), (xn, yn) = mia_setup["members"], mia_setup["nonmembers"]
    res = audit_membership(mia_setup["overfit"], xm, ym, xn, yn, reference_models=mia_setup["refs"], seed=0)
    assert set(res) == {"loss", "confidence", "reference", "label_only"}
    assert res["loss"]["auc"] >= 0.7
    assert res["reference"]["auc"] >= 0.7
    assert res["label_only"]["auc"] > 0.55
    for metrics in res.values():
        assert metrics["n_members"] == metrics["n_nonmembers"] == 60


def test_model_that_never_saw_members_is_near_chance(mia_setup):
    (xm, ym), (xn, yn) = mia_setup["members"], mia_setup["nonmembers"]
    res = audit_membership(mia_setup["never_saw"], xm, ym, xn, yn, reference_models=mia_setup["refs"], seed=0)
    for name in ("loss", "reference", "label_only"):
        assert 0.4 <= res[name]["auc"] <= 0.6, (name, res[name]["auc"])


def test_worst_client_picks_the_leakiest(mia_setup):
    (xm, ym), (xn, yn) = mia_setup["members"], mia_setup["nonmembers"]
    per_client = {
        cid: audit_membership(model, xm, ym, xn, yn, attacks=["loss"], seed=0)
        for cid, model in ((0, mia_setup["never_saw"]), (1, mia_setup["overfit"]))
    }
    worst = worst_client(per_client)
    assert worst["loss"]["client"] == 1
    assert worst["loss"]["auc"] == per_client[1]["loss"]["auc"]


def test_membership_scores_shapes_and_determinism(mia_setup):
    xm, ym = mia_setup["members"]
    model = mia_setup["overfit"]
    loss = membership_scores_loss(model, xm, ym)
    assert loss.shape == (60,) and np.all(loss <= 0)
    a = membership_scores_label_only(model, xm, ym, n_augment=4, max_shift=1, seed=3)
    b = membership_scores_label_only(model, xm, ym, n_augment=4, max_shift=1, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 0) & (a <= 1))
    ref = membership_scores_reference(model, mia_setup["refs"], xm, ym)
    assert ref.shape == (60,) and np.all(np.isfinite(ref))


def test_membership_rejects_bad_input(mia_setup):
    xm, ym = mia_setup["members"]
    with pytest.raises(ValueError, match="x must be shaped"):
        membership_scores_loss(mia_setup["overfit"], xm[:, 0], ym)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        membership_scores_loss(mia_setup["overfit"], xm * 5, ym)
    with pytest.raises(ValueError, match="reference_models"):
        audit_membership(mia_setup["overfit"], xm, ym, xm, ym, attacks=["reference"])
    with pytest.raises(ValueError, match="unknown"):
        audit_membership(mia_setup["overfit"], xm, ym, xm, ym, attacks=["lira"])


# --------------------------------------------------------------------------- oracle
class _FixedLogits(nn.Module):
    """Predicts the class given by the first pixel's value, times 10 (0..9)."""

    def forward(self, x):
        cls = (x[:, 0, 0, 0] * 9).round().long()
        return nn.functional.one_hot(cls, 10).float()


def test_oracle_counts_queries_and_enforces_budget():
    x = np.zeros((7, 1, 8, 8), np.float32)
    x[:, 0, 0, 0] = np.arange(7) / 9
    oracle = LabelOracle(_FixedLogits(), budget=10)
    np.testing.assert_array_equal(oracle(x), np.arange(7))
    labels = oracle(torch.from_numpy(x[:3]))
    assert isinstance(labels, torch.Tensor) and labels.tolist() == [0, 1, 2]
    assert oracle.queries == 10 and oracle.calls == 2 and oracle.remaining == 0
    with pytest.raises(QueryBudgetExceeded):
        oracle(x[:1])
    assert oracle.queries == 10  # a refused query is not counted
    with pytest.raises(ValueError, match="budget"):
        LabelOracle(_FixedLogits(), budget=-1)


# --------------------------------------------------------------------------- LOKT pieces
def test_tacgan_is_deterministic_and_counts_queries(digits):
    x, _ = digits
    public = x[:50]
    runs = []
    for _ in range(2):
        oracle = LabelOracle(_FixedLogits())
        gen, dis = train_tacgan(oracle, public, 10, steps=6, warmup=2, batch_size=8, n_dis=2, seed=3)
        runs.append(generate(gen, np.arange(10), seed=1))
        assert oracle.queries == len(public) + (6 - 2) * 2 * 8
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (10, 1, 8, 8)
    assert runs[0].min() >= 0 and runs[0].max() <= 1
    real, logits = dis(torch.from_numpy(public[:4]))
    assert real.shape == (4,) and logits.shape == (4, 10)


def test_conv_gan_and_inversion_shapes():
    rng = np.random.default_rng(0)
    public = rng.random((40, 3, 16, 16)).astype(np.float32)
    oracle = LabelOracle(_FixedLogits())
    gen, dis = train_tacgan(oracle, public, 10, steps=3, warmup=1, batch_size=4, hidden=32, seed=0)
    assert gen.arch == "conv" and dis.arch == "conv"
    images = invert(gen, [dis.classifier()], 4, n=3, steps=2, seed=0)
    assert images.shape == (3, 3, 16, 16)
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="target_class"):
        invert(gen, [dis.classifier()], 10, n=1, steps=1)


def test_scoring_private_samples_themselves(digits):
    """Sanity of the scorer: real private images of a class are judged correct and at distance 0."""
    x, y = digits
    evaluator = _train("mlp", x[:300], y[:300], epochs=30)
    rec = np.stack([x[:300][y[:300] == c][:5] for c in (2, 7)])
    s = score_reconstructions(
        rec, [2, 7], evaluator, private_x=x[:300], private_y=y[:300], public_x=x[300:400]
    )
    assert s["attack_acc_top1"] == 1.0 and s["attack_acc_top5"] == 1.0
    assert s["knn_distance"] == pytest.approx(0.0, abs=1e-5)
    assert s["knn_distance_public"] > 0.5
    assert s["chance_top1"] == 0.1 and s["chance_top5"] == 0.5


# --------------------------------------------------------------------------- LOKT end to end
LOKT_TEST_CONFIG = LoktConfig(
    gan_steps=400, gan_warmup=80, surrogate_archs=("mlp",), surrogate_per_class=30,
    surrogate_epochs=10, n_per_class=8, invert_steps=60,
)


@pytest.fixture(scope="module")
def lokt_setup(digits):
    x, y = digits
    private, public = slice(0, 600), slice(600, 1000)
    evaluator = _train("cnn_small", x[private], y[private], epochs=15, batch_size=64, lr=3e-3, seed=2)
    return x[private], y[private], x[public], evaluator


@pytest.fixture(scope="module")
def full_target_attack(lokt_setup):
    xp, yp, xpub, evaluator = lokt_setup
    target = _train("mlp", xp, yp, epochs=20, seed=1)
    return lokt_attack(
        target, xpub, None, evaluator, xp, yp, num_classes=10, config=LOKT_TEST_CONFIG, seed=0
    )


def test_lokt_recovers_classes_far_above_chance(full_target_attack):
    res = full_target_attack
    # Chance is 0.1; this setting reaches 1.0 (see docs/audit.md).
    assert res["attack_acc_top1"] >= 0.6
    assert res["attack_acc_top1"] > res["random_latent"]["attack_acc_top1"] + 0.3
    assert res["attack_acc_top5"] >= res["attack_acc_top1"]
    assert res["reconstructions"].shape == (10, 8, 1, 8, 8)
    assert sorted(res["per_class_acc"]) == list(range(10))
    # Reconstructions are closer to private digits of their class than random draws are.
    assert res["knn_distance"] < res["random_latent"]["knn_distance"]


def test_lokt_counts_every_query(full_target_attack, lokt_setup):
    res = full_target_attack
    n_public = len(lokt_setup[2])
    expected = LOKT_TEST_CONFIG.expected_queries(n_public, 10)
    assert res["queries"] == expected == sum(res["queries_by_stage"].values())
    assert res["queries_by_stage"]["public_labels"] == n_public
    assert res["queries_by_stage"]["surrogate_data"] == 10 * 30


def test_lokt_cross_client_classes_the_target_never_learned(lokt_setup, full_target_attack):
    """A target that never saw classes 5-9 gives the attack nothing to reconstruct for them."""
    xp, yp, xpub, evaluator = lokt_setup
    held = yp < 5
    target = _train("mlp", xp[held], yp[held], epochs=20, seed=1)
    res = lokt_attack(
        target, xpub, [5, 6, 7, 8, 9], evaluator, xp, yp, num_classes=10,
        config=LOKT_TEST_CONFIG, seed=0,
    )
    assert sorted(res["per_class_acc"]) == [5, 6, 7, 8, 9]
    assert res["reconstructions"].shape[0] == 5
    full = np.mean([full_target_attack["per_class_acc"][c] for c in range(5, 10)])
    assert res["attack_acc_top1"] <= 0.4 < full


def test_lokt_respects_a_budget(lokt_setup):
    xp, yp, xpub, evaluator = lokt_setup
    target = _train("mlp", xp[:100], yp[:100], epochs=1, seed=1)
    with pytest.raises(QueryBudgetExceeded):
        lokt_attack(target, xpub, [0], evaluator, xp, yp, num_classes=10, config=LOKT_TEST_CONFIG,
                    budget=len(xpub) + 10)
    with pytest.raises(ValueError, match="classes"):
        lokt_attack(target, xpub, [10], evaluator, xp, yp, num_classes=10, config=LOKT_TEST_CONFIG)


def test_train_evaluator_learns(lokt_setup):
    xp, yp, _, evaluator = lokt_setup
    assert (predict_logits(evaluator, xp, device=CPU).argmax(1) == yp).mean() > 0.9
    other = train_evaluator(xp[:200], yp[:200], num_classes=10, arch="mlp", epochs=5, seed=0)
    assert isinstance(other, nn.Module)
