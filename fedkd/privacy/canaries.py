"""Canaries: planted secrets whose exposure tells whether memorised data travels.

A canary is a random-pattern image (i.i.d. uniform pixels) with a random label.
Natural images share nothing with it, so a model can only give it a low loss by
memorising it. We plant k canaries, each repeated r times, in one client's
private data, and compare each canary's loss with the losses of R *references*:
images of exactly the same construction that were never planted anywhere.

Exposure (Carlini et al., "The Secret Sharer", 2019) of a canary is::

    exposure = log2(R) - log2(rank),   rank = 1 + #{references with loss <= canary loss}

Rank 1 (lower loss than every reference) gives the maximum, log2(R) bits. A
never-planted canary is just another draw from the reference distribution, so
its rank is uniform on {1, ..., R + 1} and its exposure averages about
1/ln(2) ~ 1.44 bits whatever R is. Ties count *against* the canary (a reference
with an equal loss ranks ahead of it) so that exposure is never overstated; the
minimum, log2(R) - log2(R + 1), is slightly below 0.

Measured on the planting client's model, exposure says how much it memorised;
measured on the other clients' models after distillation, it says whether the
secret travelled to them through the soft labels.

torch is imported only by the functions that measure a model: the server derives and checks the
canaries (numpy) without loading torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "CanarySet",
    "make_canaries",
    "make_references",
    "make_canary_set",
    "plant",
    "exposure",
    "per_sample_losses",
    "canary_exposure",
]

# Independent random streams derived from one seed, so that canaries and
# references made from the same seed never coincide.
_CANARY_STREAM = 0
_REFERENCE_STREAM = 1


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a tuple like (C, H, W), got {input_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
    return shape


def _random_patterns(n, input_shape, num_classes, seed, stream: int):
    """n uniform-pixel images and uniform random labels from one seed stream."""
    n = _check_count(n, "n")
    shape = _check_shape(input_shape)
    num_classes = _check_count(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(stream,)))
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, num_classes, size=n, dtype=np.int64)
    return x, y


def make_canaries(k: int, input_shape, num_classes: int, seed: int):
    """Draw k canaries: uniform-pixel images in [0, 1) with uniform random labels.

    Parameters
    ----------
    k : int
        Number of canaries, >= 1.
    input_shape : tuple (C, H, W)
        Image shape of the dataset they are planted in.
    num_classes : int
        Labels are drawn uniformly from range(num_classes).
    seed : int
        Same seed, same canaries.

    Returns
    -------
    x : ndarray of shape (k, C, H, W), float32
    y : ndarray of shape (k,), int64
    """
    return _random_patterns(_check_count(k, "k"), input_shape, num_classes, seed, _CANARY_STREAM)


def make_references(n: int, input_shape, num_classes: int, seed: int):
    """Draw n never-planted references of the canaries' construction.

    Uses a different random stream from ``make_canaries``, so the same ``seed``
    can be passed to both. A fresh canary that is *not* planted (a control) can be
    drawn with ``make_canaries`` and another seed.

    Returns
    -------
    x : ndarray of shape (n, C, H, W), float32
    y : ndarray of shape (n,), int64
    """
    return _random_patterns(n, input_shape, num_classes, seed, _REFERENCE_STREAM)


@dataclass(frozen=True)
class CanarySet:
    """Everything an exposure measurement needs, made from one seed.

    canary_x (k, C, H, W) float32, canary_y (k,) int64: the secrets to plant.
    reference_x (R, C, H, W) float32, reference_y (R,) int64: never planted.
    repeats: how many copies of each canary go into the client's data.
    """

    canary_x: np.ndarray
    canary_y: np.ndarray
    reference_x: np.ndarray
    reference_y: np.ndarray
    repeats: int

    @property
    def max_exposure(self) -> float:
        """log2(R): the exposure of a canary ranked ahead of every reference."""
        return float(np.log2(len(self.reference_y)))


def make_canary_set(k: int, n_references: int, repeats: int, input_shape, num_classes: int,
                    seed: int) -> CanarySet:
    """Canaries and references of one construction (see ``make_canaries``)."""
    cx, cy = make_canaries(k, input_shape, num_classes, seed)
    rx, ry = make_references(n_references, input_shape, num_classes, seed)
    return CanarySet(cx, cy, rx, ry, _check_count(repeats, "repeats"))


def plant(x, y, canary_x, canary_y, repeats: int):
    """Append ``repeats`` copies of every canary to a private dataset.

    The copies go at the end; training shuffles its batches, so the position does
    not matter, and keeping the original samples first keeps their indices.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32
    y : ndarray of shape (N,), int64
    canary_x : ndarray of shape (k, C, H, W)
    canary_y : ndarray of shape (k,)
    repeats : int >= 1

    Returns
    -------
    x_planted : ndarray of shape (N + k * repeats, C, H, W), float32
    y_planted : ndarray of shape (N + k * repeats,), int64
    """
    x = np.asarray(x)
    y = np.asarray(y)
    canary_x = np.asarray(canary_x)
    canary_y = np.asarray(canary_y)
    repeats = _check_count(repeats, "repeats")
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (N, C, H, W) and y (N,), got shapes {x.shape} and {y.shape}")
    if canary_x.ndim != 4 or canary_x.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"canary_x must be shaped (k, {', '.join(map(str, x.shape[1:]))}), got {canary_x.shape}"
        )
    if canary_y.shape != (canary_x.shape[0],):
        raise ValueError(f"canary_y must be shaped ({canary_x.shape[0]},), got {canary_y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or not np.issubdtype(canary_y.dtype, np.integer):
        raise ValueError("y and canary_y must hold integer labels")
    x_out = np.concatenate([x, np.repeat(canary_x, repeats, axis=0)]).astype(np.float32, copy=False)
    y_out = np.concatenate([y, np.repeat(canary_y, repeats)]).astype(np.int64, copy=False)
    return x_out, y_out


def exposure(canary_losses, reference_losses) -> np.ndarray:
    """Exposure in bits of each canary against the reference losses.

    Parameters
    ----------
    canary_losses : array-like of shape (k,)
        Loss of the model on each canary (its planted label).
    reference_losses : array-like of shape (R,)
        Losses on the never-planted references, R >= 1.

    Returns
    -------
    exposure : ndarray of shape (k,), float64
        log2(R) - log2(1 + #{references with loss <= canary loss}); in
        [log2(R) - log2(R + 1), log2(R)].
    """
    c = np.asarray(canary_losses, dtype=np.float64)
    r = np.asarray(reference_losses, dtype=np.float64)
    if c.ndim != 1 or c.shape[0] < 1:
        raise ValueError(f"canary_losses must be a non-empty 1-D array, got shape {c.shape}")
    if r.ndim != 1 or r.shape[0] < 1:
        raise ValueError(f"reference_losses must be a non-empty 1-D array, got shape {r.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(r))):
        raise ValueError("canary_losses and reference_losses must be finite")
    # side="right" counts references with loss <= the canary's: ties rank ahead of it.
    rank = 1 + np.searchsorted(np.sort(r), c, side="right")
    return np.log2(r.shape[0]) - np.log2(rank)


def _resolve_device(model: torch.nn.Module, device) -> torch.device:
    """None: where the model already is; otherwise the project's ``resolve_device``."""
    import torch

    from fedkd.training import resolve_device

    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    return resolve_device(device)


def _precise_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy that keeps its resolution near 0.

    CE = log(1 + S) with S = sum_{c != y} exp(z_c - z_y). The usual
    logsumexp(z) - z_y rounds to exactly 0 once the margin exceeds ~37 in float64,
    which would tie every well-memorised canary with every confident reference;
    log1p(S) keeps them apart. When some z_c > z_y, the shifted form
    m + log(exp(-m) + sum exp(d - m)) with m = max(d) avoids overflow.
    """
    import torch

    d = logits - logits.gather(1, y[:, None])          # d_y = 0
    others = d.scatter(1, y[:, None], float("-inf"))    # drop the true class
    m = others.max(dim=1).values
    small = torch.log1p(torch.exp(others).sum(dim=1))   # safe when m <= 0
    m_pos = m.clamp(min=0.0)
    large = m_pos + torch.log(torch.exp(-m_pos) + torch.exp(others - m_pos[:, None]).sum(dim=1))
    return torch.where(m <= 0, small, large)


def per_sample_losses(model: torch.nn.Module, x, y, *, batch_size: int = 512,
                      device=None) -> np.ndarray:
    """Cross-entropy of ``model`` on every (x_i, y_i), in eval mode without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits (N, num_classes).
    x : ndarray of shape (N, C, H, W), float32
    y : ndarray of shape (N,), int64
    batch_size : int, default=512
    device : str, torch.device or None, default=None
        None uses the device the model's parameters are on; otherwise the model is
        moved to ``fedkd.training.resolve_device(device)`` ("auto", "cpu", "cuda:N").

    Returns
    -------
    losses : ndarray of shape (N,), float64
    """
    import torch

    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty (N, C, H, W) array, got shape {x.shape}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer labels shaped ({x.shape[0]},), got {y.dtype} {y.shape}")
    batch_size = _check_count(batch_size, "batch_size")
    dev = _resolve_device(model, device)
    model.to(dev)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = torch.from_numpy(x[start:start + batch_size]).to(dev)
                yb = torch.from_numpy(y[start:start + batch_size]).to(dev)
                logits = model(xb)
                if logits.ndim != 2 or logits.shape[0] != xb.shape[0]:
                    raise ValueError(
                        f"model must return logits (batch, classes), got {tuple(logits.shape)}")
                if int(yb.max()) >= logits.shape[1] or int(yb.min()) < 0:
                    raise ValueError(
                        f"y holds labels outside range({logits.shape[1]}), the model's classes")
                out.append(_precise_cross_entropy(logits.double(), yb).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def canary_exposure(model: torch.nn.Module, canary_x, canary_y, ref_x, ref_y, *,
                    batch_size: int = 512, device=None) -> dict:
    """Exposure of every canary in ``model``, measured against the references.

    Parameters
    ----------
    model : torch.nn.Module
        Any client's model (the planting client's or a peer's).
    canary_x, canary_y : (k, C, H, W) float32 and (k,) int64
        The canaries with their planted labels.
    ref_x, ref_y : (R, C, H, W) float32 and (R,) int64
        Never-planted references of the same construction with their own random labels.
    batch_size, device : see ``per_sample_losses``.

    Returns
    -------
    result : dict
        ``mean`` and ``max`` (floats, bits), ``per_canary`` (list of k floats),
        ``max_possible`` (log2(R)), ``n_references`` (R).
    """
    c_loss = per_sample_losses(model, canary_x, canary_y, batch_size=batch_size, device=device)
    r_loss = per_sample_losses(model, ref_x, ref_y, batch_size=batch_size, device=device)
    e = exposure(c_loss, r_loss)
    return {
        "mean": float(e.mean()),
        "max": float(e.max()),
        "per_canary": [float(v) for v in e],
        "max_possible": float(np.log2(r_loss.shape[0])),
        "n_references": int(r_loss.shape[0]),
    }
