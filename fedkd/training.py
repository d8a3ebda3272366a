"""Training primitives in plain PyTorch: local training, distillation, prediction, evaluation, weights.

All functions take numpy arrays (or tensors) in the project's conventions -- images float32 (N, C, H, W) in
[0, 1], labels int64 (N,), soft labels float32 (M, C) with rows summing to 1 -- validate them once, move them
to the device once, and then work on tensors only (mini-batches are gathered with a permutation index, not
rebuilt from numpy).

Randomness: a training call with a given ``seed`` shuffles with its own ``torch.Generator`` and runs under a
forked, seeded global generator (for dropout or other random layers a caller's model may have), so the same
model, data and seed give bit-identical weights on the CPU and the caller's global RNG state is untouched.

The model is moved to ``device`` in place and left there. Each function puts the model in the mode it needs
(``train()`` for training, ``eval()`` for prediction) and restores the mode it found afterwards.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator
from numbers import Integral, Real

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedkd.optimizers import check_name as check_optimizer
from fedkd.optimizers import make_optimizer
from fedkd.probability import ROW_SUM_TOLERANCE


# Soft-label rows may drift from 1 by float32 rounding, noise-and-renormalise steps and the like.

DeviceLike = str | torch.device
ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------------- device


def resolve_device(spec: DeviceLike = "auto") -> torch.device:
    """Turn a device specification into a ``torch.device`` that is usable on this machine.

    Parameters
    ----------
    spec : str or torch.device, default "auto"
        "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N", or a ``torch.device``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For an unknown specification, or a CUDA device that this machine does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {spec!r}")
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available on this machine")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


# ----------------------------------------------------------------------------------------------- validation


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _read_only_view(arr: np.ndarray) -> torch.Tensor:
    """A tensor sharing memory with ``arr`` even when it is read-only (the shared, cached
    datasets are): training only indexes these tensors, never writes them, so torch's
    'not writable' warning does not apply and a copy per call would be waste."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr)


def _as_images(x: ArrayLike, name: str = "x") -> torch.Tensor:
    """Float32 CPU tensor (N, C, H, W); shares memory with ``x`` when it already is float32."""
    if isinstance(x, torch.Tensor):
        tensor = x.detach().to("cpu", torch.float32)
    else:
        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
        tensor = _read_only_view(np.ascontiguousarray(arr, dtype=np.float32))
    if tensor.ndim != 4:
        raise ValueError(f"{name} must be images shaped (N, C, H, W), got shape {tuple(tensor.shape)}")
    return tensor


def _as_labels(y: ArrayLike, n: int, num_classes: int, name: str = "y") -> torch.Tensor:
    """Int64 CPU tensor (n,) with every label in [0, num_classes)."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if len(arr) != n:
        raise ValueError(f"x and {name} differ in length: {n} images but {len(arr)} labels")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) for a model with {num_classes} outputs, "
            f"got range [{arr.min()}, {arr.max()}]"
        )
    return _read_only_view(arr.astype(np.int64, copy=False))


def _as_probabilities(targets: ArrayLike, n: int, num_classes: int, name: str = "targets") -> torch.Tensor:
    """Float32 CPU tensor (n, num_classes) of probability rows."""
    if isinstance(targets, torch.Tensor):
        tensor = targets.detach().to("cpu", torch.float32)
    else:
        tensor = _read_only_view(np.ascontiguousarray(targets, dtype=np.float32))
    if tensor.shape != (n, num_classes):
        raise ValueError(
            f"{name} must be shaped (M, C) = ({n}, {num_classes}) to match x and the model's outputs, "
            f"got {tuple(tensor.shape)}"
        )
    if n:
        if not torch.isfinite(tensor).all() or (tensor < 0).any():
            raise ValueError(f"{name} must hold finite, non-negative probabilities")
        worst = (tensor.sum(dim=1, dtype=torch.float64) - 1.0).abs().max().item()
        if worst > ROW_SUM_TOLERANCE:
            raise ValueError(f"{name} rows must sum to 1 (largest deviation {worst:.3g})")
    return tensor


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put ``model`` in train/eval mode for the block, then restore the mode it had."""
    was_training = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was_training)


def _output_width(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """Number of logits ``model`` produces for images shaped like ``x`` (one eval-mode forward pass)."""
    probe = x[:1] if len(x) else torch.zeros((1, *x.shape[1:]), dtype=torch.float32)
    with _mode(model, training=False), torch.no_grad():
        out = model(probe.to(device))
    if out.ndim != 2:
        raise ValueError(f"model must return logits shaped (B, C), got shape {tuple(out.shape)}")
    return int(out.shape[1])


# ------------------------------------------------------------------------------------------------- training


def _fit(
    model: nn.Module,
    n: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    optimizer: str,
    shuffler: torch.Generator | None = None,
) -> dict[str, float | int]:
    """Mini-batch optimisation over shuffled epochs of ``n`` samples; ``batch_loss(idx)`` is a batch mean.

    ``shuffler`` (default: seeded with ``seed``) draws each epoch's order; a caller that draws more
    from it (the joint step's transfer batches) passes its own. The running loss stays on the device,
    so a step never waits for the host. Returns the sample-weighted mean loss of the last epoch and
    the number of optimiser steps.
    """
    if epochs == 0 or n == 0:
        return {"loss": float("nan"), "steps": 0}
    opt = make_optimizer(optimizer, model.parameters(), lr)  # not torch.optim: why in fedkd/optimizers.py
    shuffler = shuffler if shuffler is not None else torch.Generator().manual_seed(seed)
    # Fork the global generators so seeded dropout (if a model has any) leaves the caller's RNG state alone.
    cuda_devices = [device] if device.type == "cuda" else []
    steps = 0
    with torch.random.fork_rng(devices=cuda_devices), _mode(model, training=True):
        torch.random.default_generator.manual_seed(seed)
        if cuda_devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(n, generator=shuffler).to(device)
            total = torch.zeros((), dtype=torch.float64, device=device)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = batch_loss(idx)
                loss.backward()
                opt.step()
                total += loss.detach().double() * len(idx)
                steps += 1
    return {"loss": float(total.item() / n), "steps": steps}


def _check_run_args(
    epochs: object, batch_size: object, seed: object, lr: object, device: DeviceLike, optimizer: object
) -> tuple[int, int, int, float, torch.device]:
    check_optimizer(optimizer)
    return (
        _check_int(epochs, "epochs", 0),
        _check_int(batch_size, "batch_size", 1),
        _check_int(seed, "seed", 0),
        _check_positive(lr, "lr"),
        resolve_device(device),
    )


def train_supervised(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: DeviceLike,
    optimizer: str = "adam",
) -> dict[str, float | int]:
    """Train ``model`` in place with cross-entropy on labelled (private) data.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits (B, C); updated in place and moved to ``device``.
    x : ndarray or Tensor, shape (N, C_in, H, W)
        Float images.
    y : ndarray or Tensor, shape (N,)
        Integer labels in [0, C).
    epochs : int
        Passes over the data (0 returns at once without touching the model).
    batch_size : int
        Mini-batch size (>= 1); the last batch of an epoch may be smaller.
    lr : float
        Learning rate (> 0).
    seed : int
        Seeds the shuffling (and any random layers); same seed, same result.
    device : str or torch.device
        Where to train; see ``resolve_device``.
    optimizer : {"adam", "sgd"}, default "adam"
        A fresh optimiser is built for every call ("sgd" uses momentum 0.9).

    Returns
    -------
    dict
        ``loss``: mean cross-entropy over the last epoch (nan when nothing was trained);
        ``steps``: number of optimiser steps taken.
    """
    epochs, batch_size, seed, lr, dev = _check_run_args(epochs, batch_size, seed, lr, device, optimizer)
    images = _as_images(x)
    model.to(dev)
    labels = _as_labels(y, len(images), _output_width(model, images, dev))
    x_dev, y_dev = images.to(dev), labels.to(dev)
    return _fit(
        model, len(images), lambda idx: F.cross_entropy(model(x_dev[idx]), y_dev[idx]),
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=dev, optimizer=optimizer,
    )  # fmt: skip


def distill(
    model: nn.Module,
    x: ArrayLike,
    targets: ArrayLike,
    *,
    temperature: float,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: DeviceLike,
    optimizer: str = "adam",
) -> dict[str, float | int]:
    """Distil soft labels into ``model`` in place: minimise KL(targets || softmax(logits / T)) * T**2.

    The T**2 factor (Hinton et al., 2015) keeps gradient magnitudes comparable across temperatures.

    Parameters
    ----------
    model : torch.nn.Module
        Student returning logits (B, C); updated in place and moved to ``device``.
    x : ndarray or Tensor, shape (M, C_in, H, W)
        Transfer-set images.
    targets : ndarray or Tensor, shape (M, C)
        Teacher probabilities per transfer image (non-negative rows summing to 1).
    temperature : float
        Softmax temperature T (> 0) applied to the student's logits.
    epochs, batch_size, lr, seed, device, optimizer
        As in ``train_supervised``.

    Returns
    -------
    dict
        ``loss``: mean T**2-scaled KL over the last epoch (nan when nothing was trained);
        ``steps``: number of optimiser steps taken.
    """
    temperature = _check_positive(temperature, "temperature")
    epochs, batch_size, seed, lr, dev = _check_run_args(epochs, batch_size, seed, lr, device, optimizer)
    images = _as_images(x)
    model.to(dev)
    probs = _as_probabilities(targets, len(images), _output_width(model, images, dev))

    x_dev, t_dev = images.to(dev), probs.to(dev)
    return _fit(
        model, len(images), lambda idx: _kd_loss(model(x_dev[idx]), t_dev[idx], temperature),
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=dev, optimizer=optimizer,
    )  # fmt: skip


def _kd_loss(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2-scaled KL(targets || softmax(logits / T)); kl_div treats 0 * log 0 as 0, so sparse targets are fine."""
    log_student = F.log_softmax(logits / temperature, dim=1)
    return F.kl_div(log_student, targets, reduction="batchmean") * temperature**2


# ----------------------------------------------------------------------------------------------- prediction


def predict_logits(model: nn.Module, x: ArrayLike, *, device: DeviceLike, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` on ``x`` in eval mode, without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits (B, C); moved to ``device``.
    x : ndarray or Tensor, shape (M, C_in, H, W)
        Images (M may be 0).
    device : str or torch.device
        Where to run; see ``resolve_device``.
    batch_size : int, default 512
        Images per forward pass (memory only; results do not depend on it beyond float rounding).

    Returns
    -------
    ndarray of float32, shape (M, C)
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    dev = resolve_device(device)
    images = _as_images(x)
    model.to(dev)
    if len(images) == 0:
        return np.zeros((0, _output_width(model, images, dev)), dtype=np.float32)
    chunks = []
    with _mode(model, training=False), torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunks.append(model(images[start : start + batch_size].to(dev)).float().cpu())
    logits = torch.cat(chunks)
    if logits.ndim != 2:
        raise ValueError(f"model must return logits shaped (B, C), got shape {tuple(logits.shape)}")
    return logits.numpy()


def evaluate_accuracy(
    model: nn.Module, x: ArrayLike, y: ArrayLike, *, device: DeviceLike, batch_size: int = 512
) -> float:
    """Top-1 accuracy of ``model`` on labelled images.

    Parameters
    ----------
    model, x, device, batch_size
        As in ``predict_logits``.
    y : ndarray or Tensor, shape (M,)
        Integer labels in [0, C).

    Returns
    -------
    float
        Fraction of correct predictions in [0, 1]; nan for an empty set.
    """
    images = _as_images(x)
    logits = predict_logits(model, images, device=device, batch_size=batch_size)
    labels = _as_labels(y, len(images), logits.shape[1]).numpy()
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(logits.argmax(axis=1) == labels))


# ------------------------------------------------------------------------------------------ joint training


def train_joint(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    transfer_x: ArrayLike,
    targets: ArrayLike,
    *,
    temperature: float,
    distill_weight: float,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: DeviceLike,
    optimizer: str = "adam",
) -> dict[str, float | int]:
    """Cross-entropy on private data and distillation on the transfer set in the same steps.

    Every step takes one private batch and one transfer batch and minimises
    ``CE(private) + distill_weight * T**2 * KL(targets || softmax(logits / T))``. Unlike
    digest-then-revisit, the private loss cannot wash out what distillation taught,
    because both pull at once. An epoch is one pass over the private data; transfer
    batches cycle through their own shuffled order.

    x, y: private images (N, C_in, H, W) and labels (N,); transfer_x (M, C_in, H, W) and
    targets (M, C) probabilities; the other arguments as in ``train_supervised``/``distill``.
    Returns ``loss`` (mean combined loss over the last epoch) and ``steps``.
    """
    temperature = _check_positive(temperature, "temperature")
    if not distill_weight >= 0:
        raise ValueError(f"distill_weight must be >= 0, got {distill_weight!r}")
    epochs, batch_size, seed, lr, dev = _check_run_args(epochs, batch_size, seed, lr, device, optimizer)
    images, public = _as_images(x), _as_images(transfer_x, "transfer_x")
    model.to(dev)
    width = _output_width(model, images, dev)
    labels = _as_labels(y, len(images), width)
    probs = _as_probabilities(targets, len(public), width)
    n, m = len(images), len(public)
    x_dev, y_dev, p_dev, t_dev = images.to(dev), labels.to(dev), public.to(dev), probs.to(dev)
    shuffler = torch.Generator().manual_seed(seed)
    public_order, cursor = torch.randperm(m, generator=shuffler), 0

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        nonlocal public_order, cursor
        if cursor + batch_size > m:  # transfer batches cycle through their own shuffled order
            public_order, cursor = torch.randperm(m, generator=shuffler), 0
        pidx = public_order[cursor : cursor + batch_size].to(dev)
        cursor += batch_size
        ce = F.cross_entropy(model(x_dev[idx]), y_dev[idx])
        return ce + distill_weight * _kd_loss(model(p_dev[pidx]), t_dev[pidx], temperature)

    return _fit(model, n, batch_loss, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=dev,
                optimizer=optimizer, shuffler=shuffler)
