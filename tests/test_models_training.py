"""Tests for the model zoo (fedkd.models) and the training primitives (fedkd.training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from fedkd.models import MODEL_NAMES, build_model, count_parameters, model_for_client
from fedkd.training import distill, evaluate_accuracy, predict_logits, resolve_device, train_supervised
from helpers import get_weights, predict_proba, set_weights

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
CPU = "cpu"


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits as (N, 1, 8, 8) float32 in [0, 1], split 1200 train / rest test."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return x[:1200], y[:1200], x[1200:], y[1200:]


@pytest.fixture(scope="module")
def teacher(digits):
    """A cnn_small trained on the digits training split."""
    x_tr, y_tr, _, _ = digits
    model = build_model("cnn_small", (1, 8, 8), 10, seed=1)
    train_supervised(model, x_tr, y_tr, epochs=8, batch_size=32, lr=1e-2, seed=0, device=CPU)
    return model


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean KL(p || q) over rows."""
    p64, q64 = p.astype(np.float64), np.clip(q.astype(np.float64), 1e-12, None)
    return float(np.mean(np.sum(np.where(p64 > 0, p64 * (np.log(np.clip(p64, 1e-12, None)) - np.log(q64)), 0), 1)))


def _entropy(p: np.ndarray) -> float:
    return float(np.mean(-np.sum(p * np.log(np.clip(p, 1e-12, None)), axis=1)))


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(get_weights(a), get_weights(b), strict=True))


# ------------------------------------------------------------------------------------------------ model zoo


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_forwards_every_input_shape(name, shape):
    model = build_model(name, shape, 7, seed=0)
    logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()
    # Batch norm in training mode must cope with the smallest final feature map, even for a single image.
    assert model(torch.rand(1, *shape)).shape == (1, 7)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_avoid_layers_that_break_reproducibility(name):
    # Dropout draws random numbers; adaptive pooling has no deterministic CUDA backward pass.
    banned = (nn.Dropout, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    model = build_model(name, (3, 32, 32), 10, seed=0)
    assert not [m for m in model.modules() if isinstance(m, banned)]


def test_model_names_are_the_documented_four():
    assert MODEL_NAMES == ("mlp", "cnn_small", "cnn_medium", "cnn_large")


def test_a_registered_model_is_accepted_by_the_models_key():
    """docs/architecture.md, "How to add a model": one factory, one register_model call."""
    from fedkd.config import ConfigError, make_config
    from fedkd.models import MODEL_FACTORIES, register_model

    with pytest.raises(ConfigError, match="models"):
        make_config({"models": "tiny_linear"})
    register_model("tiny_linear", lambda shape, classes: nn.Sequential(nn.Flatten(), nn.Linear(
        shape[0] * shape[1] * shape[2], classes)))
    try:
        assert make_config({"models": "tiny_linear,mlp"}).training.models == ("tiny_linear", "mlp")
        model = build_model("tiny_linear", (1, 8, 8), 10, seed=0)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    finally:
        MODEL_FACTORIES.pop("tiny_linear")


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="cnn_medium") as info:
        build_model("vgg16", (1, 28, 28), 10)
    assert "vgg16" in str(info.value)


@pytest.mark.parametrize(
    "shape, classes",
    [((28, 28), 10), ((1, 0, 28), 10), ((1, 28, 28.5), 10), ("1x28x28", 10), ((1, 28, 28), 1), ((1, 8, 8), 2.0)],
)
def test_build_model_rejects_bad_shape_or_class_count(shape, classes):
    with pytest.raises(ValueError, match="input_shape|num_classes"):
        build_model("mlp", shape, classes)


def test_build_model_seed_fixes_init_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("cnn_large", (1, 28, 28), 10, seed=5)
    b = build_model("cnn_large", (1, 28, 28), 10, seed=5)
    c = build_model("cnn_large", (1, 28, 28), 10, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_model_for_client_cycles_over_clients():
    models = ["mlp", "cnn_small", "cnn_large"]
    assigned = [model_for_client(models, i) for i in range(7)]
    assert assigned == ["mlp", "cnn_small", "cnn_large", "mlp", "cnn_small", "cnn_large", "mlp"]
    assert model_for_client(("cnn_medium",), 41) == "cnn_medium"


@pytest.mark.parametrize("models, client_id", [([], 0), (["mlp", "resnet152"], 0), (["mlp"], -1), ("mlp", 0)])
def test_model_for_client_rejects_bad_input(models, client_id):
    with pytest.raises(ValueError):
        model_for_client(models, client_id)


def test_count_parameters_matches_layer_arithmetic():
    mlp = build_model("mlp", (1, 8, 8), 10, seed=0)
    assert count_parameters(mlp) == (64 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)
    for p in mlp.net[1].parameters():
        p.requires_grad_(False)
    assert count_parameters(mlp, trainable_only=True) == (256 * 128 + 128) + (128 * 10 + 10)


# ------------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["cnn_small", "mlp"])
def test_train_supervised_learns_digits(digits, name):
    x_tr, y_tr, x_te, y_te = digits
    model = build_model(name, (1, 8, 8), 10, seed=0)
    before = evaluate_accuracy(model, x_te, y_te, device=CPU)
    stats = train_supervised(model, x_tr, y_tr, epochs=8, batch_size=32, lr=1e-2, seed=0, device=CPU)
    after = evaluate_accuracy(model, x_te, y_te, device=CPU)
    assert before < 0.3
    assert after > 0.85
    assert stats["steps"] == 8 * math.ceil(1200 / 32)
    assert 0 <= stats["loss"] < 0.5


def test_zero_epochs_is_a_no_op(digits):
    x_tr, y_tr, _, _ = digits
    model = build_model("cnn_medium", (1, 8, 8), 10, seed=0)
    before = get_weights(model)
    stats = train_supervised(model, x_tr, y_tr, epochs=0, batch_size=32, lr=1e-2, seed=0, device=CPU)
    stats_kd = distill(
        model, x_tr, np.full((1200, 10), 0.1, np.float32),
        temperature=2.0, epochs=0, batch_size=32, lr=1e-2, seed=0, device=CPU,
    )  # fmt: skip
    assert stats["steps"] == 0 and stats_kd["steps"] == 0
    assert all(np.array_equal(u, v) for u, v in zip(before, get_weights(model), strict=True))


def test_training_is_deterministic_per_seed(digits):
    x_tr, y_tr, _, _ = digits
    x, y = x_tr[:300], y_tr[:300]
    rng_state = torch.get_rng_state()

    def run(seed: int) -> nn.Module:
        model = build_model("cnn_medium", (1, 8, 8), 10, seed=0)  # batch norm: buffers are compared too
        train_supervised(model, x, y, epochs=2, batch_size=16, lr=1e-2, seed=seed, device=CPU)
        return model

    assert _same_weights(run(3), run(3))
    assert not _same_weights(run(3), run(4))
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_dropout_is_seeded_by_the_training_seed(digits):
    x_tr, y_tr, _, _ = digits

    def run(seed: int) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.Linear(32, 10))
        torch.manual_seed(12345 + seed)  # a different global state each run must not matter
        train_supervised(model, x_tr[:200], y_tr[:200], epochs=2, batch_size=20, lr=1e-2, seed=seed, device=CPU)
        return model

    assert _same_weights(run(7), run(7))
    assert not _same_weights(run(7), run(8))


def test_distill_is_deterministic_per_seed(digits, teacher):
    x_t = digits[2][:200]
    targets = predict_proba(teacher, x_t, temperature=2.0, device=CPU)

    def run(seed: int) -> nn.Module:
        model = build_model("cnn_large", (1, 8, 8), 10, seed=0)
        distill(model, x_t, targets, temperature=2.0, epochs=1, batch_size=32, lr=1e-3, seed=seed, device=CPU)
        return model

    assert _same_weights(run(1), run(1))
    assert not _same_weights(run(1), run(2))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_distill_moves_student_toward_teacher(digits, teacher, optimizer):
    _, _, x_te, y_te = digits
    x_t = x_te  # public transfer set: the held-out images, unlabelled
    temperature = 2.0
    targets = predict_proba(teacher, x_t, temperature=temperature, device=CPU)
    student = build_model("mlp", (1, 8, 8), 10, seed=3)

    def gap() -> tuple[float, float]:
        student_probs = predict_proba(student, x_t, temperature=temperature, device=CPU)
        agreement = float(np.mean(student_probs.argmax(1) == targets.argmax(1)))
        return _kl(targets, student_probs), agreement

    kl_before, agree_before = gap()
    lr = 1e-2 if optimizer == "adam" else 5e-2
    stats = distill(
        student, x_t, targets,
        temperature=temperature, epochs=15, batch_size=32, lr=lr, seed=0, device=CPU, optimizer=optimizer,
    )  # fmt: skip
    kl_after, agree_after = gap()
    assert kl_after < 0.5 * kl_before
    assert agree_before < 0.3 and agree_after > 0.8
    assert stats["loss"] >= 0
    # Only soft labels were used, yet the student now classifies the held-out digits.
    assert evaluate_accuracy(student, x_te, y_te, device=CPU) > 0.7


def test_distill_accepts_torch_targets_and_one_hot_rows(digits):
    x = digits[0][:64]
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(digits[1][:64]), 10).float()
    model = build_model("cnn_small", (1, 8, 8), 10, seed=0)
    stats = distill(model, x, one_hot, temperature=1.0, epochs=1, batch_size=16, lr=1e-3, seed=0, device=CPU)
    assert stats["steps"] == 4 and math.isfinite(stats["loss"])


def test_training_validates_inputs(digits):
    x, y = digits[0][:50], digits[1][:50]
    model = build_model("cnn_small", (1, 8, 8), 10, seed=0)
    common = dict(epochs=1, batch_size=8, lr=1e-3, seed=0, device=CPU)
    with pytest.raises(ValueError, match="length"):
        train_supervised(model, x, y[:49], **common)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        train_supervised(model, x, np.full(50, 10, np.int64), **common)
    with pytest.raises(ValueError, match="integer"):
        train_supervised(model, x, y.astype(np.float32), **common)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        train_supervised(model, x[:, 0], y, **common)
    with pytest.raises(ValueError, match="batch_size"):
        train_supervised(model, x, y, **{**common, "batch_size": 0})
    with pytest.raises(ValueError, match="lr"):
        train_supervised(model, x, y, **{**common, "lr": -1.0})
    with pytest.raises(ValueError, match="optimizer"):
        train_supervised(model, x, y, **common, optimizer="lbfgs")
    uniform = np.full((50, 10), 0.1, np.float32)
    with pytest.raises(ValueError, match=r"targets must be shaped .*\(50, 10\)"):
        distill(model, x, uniform[:, :9] / 0.9, temperature=2.0, **common)
    with pytest.raises(ValueError, match="sum to 1"):
        distill(model, x, uniform * 2, temperature=2.0, **common)
    with pytest.raises(ValueError, match="non-negative"):
        distill(model, x, uniform - 0.2, temperature=2.0, **common)
    with pytest.raises(ValueError, match="temperature"):
        distill(model, x, uniform, temperature=0.0, **common)


# ----------------------------------------------------------------------------------------------- prediction


def test_predict_proba_rows_sum_to_one_and_temperature_flattens(teacher, digits):
    x = digits[2][:100]
    sharp = predict_proba(teacher, x, device=CPU)
    flat = predict_proba(teacher, x, temperature=4.0, device=CPU)
    for probs in (sharp, flat):
        assert probs.dtype == np.float32 and probs.shape == (100, 10)
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert _entropy(flat) > _entropy(sharp) + 0.1
    np.testing.assert_array_equal(flat.argmax(1), sharp.argmax(1))


def test_predict_logits_batches_and_modes(teacher, digits):
    x = digits[2][:100]
    teacher.train()
    small = predict_logits(teacher, x, batch_size=7, device=CPU)
    assert teacher.training  # the caller's mode is restored
    teacher.eval()
    large = predict_logits(teacher, x, device=CPU)
    assert small.dtype == np.float32 and small.shape == (100, 10)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-5)


def test_empty_inputs_give_empty_predictions_and_nan_accuracy():
    model = build_model("cnn_medium", (1, 8, 8), 10, seed=0)
    empty_x, empty_y = np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, np.int64)
    assert predict_logits(model, empty_x, device=CPU).shape == (0, 10)
    assert predict_proba(model, empty_x, device=CPU).shape == (0, 10)
    assert math.isnan(evaluate_accuracy(model, empty_x, empty_y, device=CPU))


def test_evaluate_accuracy_counts_correct_predictions(teacher, digits):
    x, y = digits[2][:50], digits[3][:50]
    predicted = predict_logits(teacher, x, device=CPU).argmax(1)
    assert evaluate_accuracy(teacher, x, predicted, device=CPU) == 1.0
    wrong = (predicted + 1) % 10
    assert evaluate_accuracy(teacher, x, wrong, device=CPU) == 0.0
    assert evaluate_accuracy(teacher, x, y, device=CPU) == pytest.approx(np.mean(predicted == y))


# -------------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weights_round_trip_exactly(name):
    source = build_model(name, (1, 8, 8), 10, seed=0)
    if name in ("cnn_medium", "cnn_large"):  # move batch-norm buffers away from their defaults
        source.train()
        source(torch.rand(8, 1, 8, 8))
    target = build_model(name, (1, 8, 8), 10, seed=1)
    weights = get_weights(source)
    assert len(weights) == len(source.state_dict())
    set_weights(target, weights)
    assert _same_weights(source, target)
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(predict_logits(source, x, device=CPU), predict_logits(target, x, device=CPU))
    # get_weights hands out copies: editing them does not touch the model.
    weights[0][...] = 0
    assert not np.array_equal(get_weights(source)[0], weights[0])


def test_set_weights_rejects_other_architectures():
    small = build_model("cnn_small", (1, 8, 8), 10, seed=0)
    weights = get_weights(small)
    with pytest.raises(ValueError, match="entries"):
        set_weights(small, weights[:-1])
    with pytest.raises(ValueError, match="shape"):
        set_weights(small, [w[..., None] if w.ndim else w for w in weights])
    with pytest.raises(ValueError):
        set_weights(build_model("mlp", (1, 8, 8), 10, seed=0), weights)


# --------------------------------------------------------------------------------------------------- device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="cuda:99"):
        resolve_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda")
