"""Model zoo: build a registered classifier by name (``fedkd/models/registry.py`` holds the names).

Sizes are chosen so that simulating ten clients on two CPU cores stays practical: on one core, an epoch over
1,000 images of 28x28 (batch 32) takes about 0.2 s for ``cnn_small``, 0.5 s for ``cnn_medium`` and 0.8 s for
``cnn_large``.

Models (parameter counts for 28x28 grey images and 10 classes):

- ``mlp``: flatten -> 256 -> 128 -> classes (~235k; grows with the image size).
- ``cnn_small``: conv 16 -> conv 32, each max-pooled, linear head on the 7x7 map (~20k; ~10k for 8x8).
- ``cnn_medium``: conv 16 -> 32 -> 64 with batch norm, max-pooled to 4x4, 128-unit hidden head (~156k).
- ``cnn_large``: a narrow ResNet, stem + one basic block per stage (20, 40, 80), global mean (~121k);
  the deepest model and the most compute per image.

None of them uses dropout or adaptive pooling, so with ``torch.use_deterministic_algorithms(True)`` they
also train reproducibly on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

from fedkd.models.registry import MODEL_FACTORIES, check_name


def _check_input_shape(input_shape: object) -> tuple[int, int, int]:
    ok = (
        isinstance(input_shape, Sequence)
        and len(input_shape) == 3
        and all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in input_shape)
    )
    if not ok:
        raise ValueError(f"input_shape must be three positive ints (C, H, W), got {input_shape!r}")
    return tuple(int(s) for s in input_shape)  # type: ignore[union-attr, return-value]


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    seed: int | None = None,
) -> nn.Module:
    """Build a freshly initialised classifier from the zoo.

    Parameters
    ----------
    name : str
        One of ``MODEL_NAMES``.
    input_shape : tuple of int
        (C, H, W) of one image, e.g. (1, 8, 8), (1, 28, 28) or (3, 32, 32).
    num_classes : int
        Number of classes (>= 2); the model returns logits shaped (B, num_classes).
    seed : int or None, default None
        Seed for the weight initialisation; the same seed gives identical weights. None draws from torch's
        global CPU generator (whatever ``torch.manual_seed`` left there). With a seed, the global generator
        is left untouched.

    Returns
    -------
    torch.nn.Module
        The model on the CPU, in training mode.
    """
    check_name(name)
    shape = _check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if seed is None:
        return MODEL_FACTORIES[name](shape, int(num_classes))
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    # fork_rng restores the global CPU generator afterwards, so seeding here has no side effects.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        return MODEL_FACTORIES[name](shape, int(num_classes))


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (buffers such as batch-norm statistics excluded).

    Parameters
    ----------
    model : torch.nn.Module
        Any module.
    trainable_only : bool, default False
        Count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
