"""Test helpers: model-level conveniences the tests use and the product does not."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedkd.probability import softmax
from fedkd.training import predict_logits

ArrayLike = np.ndarray | torch.Tensor
DeviceLike = str | torch.device


def predict_proba(
    model: nn.Module,
    x: ArrayLike,
    *,
    device: DeviceLike,
    temperature: float = 1.0,
    batch_size: int = 512,
) -> np.ndarray:
    """Class probabilities softmax(logits / T) of ``model`` on ``x``.

    Parameters
    ----------
    model, x, device, batch_size
        As in ``predict_logits``.
    temperature : float, default 1.0
        Softmax temperature (> 0); higher values give flatter (higher-entropy) rows.

    Returns
    -------
    ndarray of float32, shape (M, C)
        Non-negative rows summing to 1.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    logits = predict_logits(model, x, device=device, batch_size=batch_size)
    return softmax(logits, temperature).astype(np.float32)


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Copies of every entry of ``model.state_dict()`` (parameters and buffers), in state-dict order.

    Returns
    -------
    list of ndarray
        Independent CPU copies; batch-norm counters come back as 0-d int64 arrays.
    """
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    """Load arrays produced by ``get_weights`` (of the same architecture) into ``model`` in place.

    Parameters
    ----------
    model : torch.nn.Module
        Target model; its parameters keep their device and dtype.
    weights : list of ndarray
        One array per state-dict entry, in state-dict order, with matching shapes.

    Raises
    ------
    ValueError
        When the number of arrays or any shape does not match the model's state dict.
    """
    state = model.state_dict()
    weights = list(weights)
    if len(weights) != len(state):
        raise ValueError(f"weights has {len(weights)} arrays but the model's state dict has {len(state)} entries")
    new_state = {}
    for (key, current), value in zip(state.items(), weights):
        arr = np.asarray(value)
        if tuple(arr.shape) != tuple(current.shape):
            raise ValueError(
                f"weights entry for {key!r} has shape {tuple(arr.shape)}, expected {tuple(current.shape)}"
            )
        new_state[key] = torch.from_numpy(np.array(arr, copy=True)).to(current.dtype)
    model.load_state_dict(new_state, strict=True)


def scrape_metrics(port: int, stop, seen: list, interval: float = 0.5) -> None:
    """Poll a /metrics endpoint until ``stop`` is set, appending each parsed scrape to ``seen`` (a thread body)."""
    import urllib.request

    from fedkd.prometheus import parse_metrics

    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                seen.append(parse_metrics(answer.read().decode()))
        except OSError:
            pass
        stop.wait(interval)
