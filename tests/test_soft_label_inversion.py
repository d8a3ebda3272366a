"""The server's soft-label inversion (after "Breaching FedMD", Takahashi et al., CVPR 2023) on known answers.

A client's uploads on a public set that shows all its classes let the server reconstruct every class;
for classes the public set never shows, the decoder can only draw public look-alikes.
"""
from __future__ import annotations

import numpy as np
import pytest

from fedkd.audit import train_evaluator
from fedkd.audit.soft_label_inversion import SliConfig, class_queries, paired_inputs, soft_label_inversion
from fedkd.data import load_dataset
from fedkd.models import build_model
from fedkd.privacy.release import plain_soft_labels
from fedkd.training import predict_logits, train_supervised

CONFIG = SliConfig(epochs=80, n_per_class=6)


def _train(x, y, *, epochs=20, seed=0, arch="mlp"):
    model = build_model(arch, tuple(x.shape[1:]), 10, seed=seed)
    train_supervised(model, x, y, epochs=epochs, batch_size=32, lr=3e-3, seed=seed, device="cpu")
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    x, y = np.array(ds.x_train), np.array(ds.y_train)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    private, public = slice(0, 600), slice(600, 1000)
    judge = train_evaluator(x[private], y[private], num_classes=10, arch="cnn_small", epochs=15, seed=2)
    client = _train(x[private], y[private], seed=1)
    federation = _train(x[1000:1200], y[1000:1200], seed=3)  # what "the others" know: the targets
    return dict(xp=x[private], yp=y[private], xpub=x[public], ypub=y[public], judge=judge, client=client,
                federation=federation)


def _uploads(model, x):
    return plain_soft_labels(predict_logits(model, x, device="cpu"), 3.0)


def test_classes_the_public_set_shows_are_reconstructed(digits):
    d = digits
    res = soft_label_inversion(d["xpub"], _uploads(d["client"], d["xpub"]), _uploads(d["federation"], d["xpub"]),
                               d["judge"], d["xp"], d["yp"], num_classes=10, config=CONFIG, seed=0)
    assert res["chance"] == 0.1
    assert res["attack_acc_top1"] >= 0.7
    assert res["reconstructions"].shape == (10, 6, 1, 8, 8)
    assert sorted(res["per_class_acc"]) == list(range(10))
    # Reconstructions come from the client's confident rows of each class.
    for c, rows in res["query_rows"].items():
        assert np.mean(d["ypub"][rows] == c) >= 0.5


def test_private_only_classes_come_out_as_public_look_alikes(digits):
    """The public set holds only digits 0-4; the client holds 0-9. Classes 5-9 exist only privately."""
    d = digits
    keep = d["ypub"] < 5
    xpub = d["xpub"][keep]
    res = soft_label_inversion(xpub, _uploads(d["client"], xpub), None, d["judge"], d["xp"], d["yp"],
                               num_classes=10, config=CONFIG, seed=0)
    public_classes = np.mean([res["per_class_acc"][c] for c in range(5)])
    private_only = np.mean([res["per_class_acc"][c] for c in range(5, 10)])
    assert public_classes >= 0.8
    # Measured 0.47 at this seed: the decoder extrapolates towards a class the public set lacks, and some
    # of its blurry outputs pass the judge (an 8 is a blob), but far less often than a class it has seen.
    assert private_only <= public_classes - 0.3
    dist = res["knn_distance_per_class"]
    assert np.mean([dist[c] for c in range(5, 10)]) > np.mean([dist[c] for c in range(5)])


def test_queries_and_inputs_are_well_formed():
    q = np.full((6, 3), 1 / 3)
    q[2] = [0.1, 0.8, 0.1]
    q[4] = [0.2, 0.7, 0.1]
    t = np.full((6, 3), 1 / 3)
    u, rows = class_queries(q, t, 1, n=3, push=0.5)
    assert u.shape == (3, 6) and list(rows[:2]) == [2, 4]
    assert paired_inputs(q, None).shape == (6, 3)
    with pytest.raises(ValueError, match="client_soft"):
        soft_label_inversion(np.zeros((6, 1, 8, 8), np.float32), q[:5], None, None, None, None, num_classes=3)
