"""order=joint: cross-entropy and distillation in the same steps."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fedkd.models import build_model
from fedkd.training import evaluate_accuracy, train_joint, train_supervised
from helpers import predict_proba


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return x, d.target.astype(np.int64)


def test_joint_keeps_private_classes_and_learns_the_others(digits):
    x, y = digits
    private = np.flatnonzero(y < 3)[:150]          # a client that only holds classes 0, 1, 2
    public = np.arange(1000, 1400)                 # transfer images
    test = np.arange(1400, 1797)
    teacher = build_model("mlp", (1, 8, 8), 10, seed=1)
    train_supervised(teacher, x[:1000], y[:1000], epochs=15, batch_size=32, lr=3e-3, seed=0, device="cpu")
    targets = predict_proba(teacher, x[public], temperature=2.0, device="cpu")

    alone = build_model("cnn_small", (1, 8, 8), 10, seed=2)
    train_supervised(alone, x[private], y[private], epochs=10, batch_size=16, lr=3e-3, seed=0, device="cpu")
    joint = build_model("cnn_small", (1, 8, 8), 10, seed=2)
    out = train_joint(joint, x[private], y[private], x[public], targets, temperature=2.0, distill_weight=1.0,
                      epochs=10, batch_size=16, lr=3e-3, seed=0, device="cpu")
    assert out["steps"] == 10 * int(np.ceil(150 / 16))
    own = test[y[test] < 3]
    assert evaluate_accuracy(joint, x[own], y[own], device="cpu") > 0.8
    assert evaluate_accuracy(alone, x[test], y[test], device="cpu") < 0.35  # only knows 3 classes
    assert evaluate_accuracy(joint, x[test], y[test], device="cpu") > 0.6   # learned the rest from targets


def test_joint_is_deterministic_and_validates(digits):
    x, y = digits
    targets = np.full((50, 10), 0.1, dtype=np.float32)
    weights = []
    for _ in range(2):
        m = build_model("mlp", (1, 8, 8), 10, seed=0)
        train_joint(m, x[:40], y[:40], x[40:90], targets, temperature=3.0, distill_weight=0.5, epochs=2,
                    batch_size=8, lr=1e-3, seed=5, device="cpu")
        weights.append([p.detach().clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    with pytest.raises(ValueError, match="distill_weight"):
        train_joint(m, x[:40], y[:40], x[40:90], targets, temperature=3.0, distill_weight=-1, epochs=1,
                    batch_size=8, lr=1e-3, seed=0, device="cpu")
    with pytest.raises(ValueError):
        train_joint(m, x[:40], y[:40], x[40:90], targets[:10], temperature=3.0, distill_weight=1, epochs=1,
                    batch_size=8, lr=1e-3, seed=0, device="cpu")
