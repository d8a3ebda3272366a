"""RMIA (offline) on known answers: a model that memorised its members, and one that never saw them."""
from __future__ import annotations

import numpy as np
import pytest

from fedkd.audit import attack_metrics
from fedkd.audit.membership import reference_subsets, train_reference_models
from fedkd.audit.rmia import (
    DEFAULT_OFFLINE_A,
    choose_offline_a,
    membership_scores_rmia,
    rmia_scores_from_probs,
)
from fedkd.data import load_dataset
from fedkd.models import build_model
from fedkd.training import train_supervised


def _train(x, y, *, epochs, seed=0):
    model = build_model("mlp", tuple(x.shape[1:]), 10, seed=seed)
    train_supervised(model, x, y, epochs=epochs, batch_size=16, lr=1e-3, seed=seed, device="cpu")
    return model.eval()


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits")
    x, y = np.array(ds.x_train), np.array(ds.y_train)
    order = np.random.default_rng(1).permutation(len(x))
    x, y = x[order], y[order]
    members, nonmembers, disjoint = slice(0, 40), slice(40, 80), slice(80, 120)
    pool, population = slice(120, 200), slice(200, 500)
    # Random labels, on members and non-members alike: a model fits the members' labels only by
    # memorising them (known answer AUC ~ 1), and the two groups still come from one distribution.
    labels = np.random.default_rng(2).integers(0, 10, size=80)
    ym, yn = labels[:40], labels[40:]
    memorised = _train(x[members], ym, epochs=300)
    never_saw = _train(x[disjoint], y[disjoint], epochs=300)
    refs = train_reference_models(x[pool], y[pool], num_classes=10, n_models=2, arch="mlp", subsample=0.5,
                                  epochs=300, batch_size=16, seed=7)
    masks = []
    for idx in reference_subsets(80, 2, 0.5, 7):
        mask = np.zeros(80, bool)
        mask[idx] = True
        masks.append(mask)
    return dict(xm=x[members], ym=ym, xn=x[nonmembers], yn=yn, memorised=memorised, never_saw=never_saw,
                refs=refs, pool=(x[pool], y[pool]), masks=masks, population=(x[population], y[population]))


def _auc(s, model, a):
    xs = np.concatenate([s["xm"], s["xn"]])
    ys = np.concatenate([s["ym"], s["yn"]])
    scores = membership_scores_rmia(model, s["refs"], xs, ys, *s["population"], a=a)
    return attack_metrics(scores[:40], scores[40:])


def test_a_is_chosen_on_the_references(setup):
    choice = choose_offline_a(setup["refs"], *setup["pool"], setup["masks"], *setup["population"])
    assert choice["tuned"] and 0.0 <= choice["a"] <= 1.0
    assert set(choice["auc_by_a"]) == {str(a) for a in np.round(np.linspace(0, 1, 11), 2)}
    # one reference leaves nothing to tune on
    assert choose_offline_a(setup["refs"][:1], *setup["pool"], setup["masks"][:1],
                            *setup["population"]) == {"a": DEFAULT_OFFLINE_A, "auc_by_a": {}, "tuned": False}


def test_memorised_members_are_found(setup):
    m = _auc(setup, setup["memorised"], 0.3)
    assert m["auc"] >= 0.9
    assert m["tpr_at_1fpr"] >= 0.3


def test_model_that_never_saw_members_is_near_chance(setup):
    m = _auc(setup, setup["never_saw"], 0.3)
    assert 0.35 <= m["auc"] <= 0.65


def test_score_arithmetic():
    # The candidate whose target probability rises most above its references' beats more population samples.
    target_x = np.array([0.9, 0.5, 0.1])
    refs_x = np.array([[0.1, 0.5, 0.1]])
    target_z = np.full(50, 0.5)
    refs_z = np.full((1, 50), 0.5)
    s = rmia_scores_from_probs(target_x, refs_x, target_z, refs_z, a=0.0)
    assert s[0] > s[1] > s[2]
    assert s[0] >= 1.0 and s[2] < 0.02
    with pytest.raises(ValueError, match="a must"):
        rmia_scores_from_probs(target_x, refs_x, target_z, refs_z, a=1.5)
    with pytest.raises(ValueError, match="OUT"):
        rmia_scores_from_probs(target_x, np.full((1, 3), np.nan), target_z, refs_z, a=0.3)
