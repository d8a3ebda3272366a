"""The model registry: the names a run's ``models`` key may use, and which model each client gets.

Nothing here imports torch: a run's settings are checked (every model name is known) in processes that
never build a model, such as a simulation's driver. The built-in factories import their architectures
(``fedkd/models/architectures.py``) when called; ``fedkd/models/zoo.py`` builds and seeds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

ModelFactory = Callable[[tuple[int, int, int], int], "nn.Module"]  # (input shape (C, H, W), classes) -> model


def _mlp(shape, classes):
    from fedkd.models.architectures import MLP

    return MLP(shape, classes, hidden=(256, 128))


def _cnn_small(shape, classes):
    from fedkd.models.architectures import PlainCNN

    return PlainCNN(shape, classes, channels=(16, 32))


def _cnn_medium(shape, classes):
    from fedkd.models.architectures import PlainCNN

    return PlainCNN(shape, classes, channels=(16, 32, 64), batch_norm=True, head_hidden=128)


def _cnn_large(shape, classes):
    from fedkd.models.architectures import SmallResNet

    return SmallResNet(shape, classes, widths=(20, 40, 80))


# The names a run's ``models`` key may use. Add one with :func:`register_model`
# (docs/architecture.md, "How to add a model"); tests/test_models_training.py registers one.
MODEL_FACTORIES: dict[str, ModelFactory] = {
    "mlp": _mlp, "cnn_small": _cnn_small, "cnn_medium": _cnn_medium, "cnn_large": _cnn_large,
}

MODEL_NAMES: tuple[str, ...] = tuple(MODEL_FACTORIES)  # the built-in models


def register_model(name: str, factory: ModelFactory) -> None:
    """Make ``name`` a model the ``models`` key accepts; ``factory(input_shape, num_classes)`` builds it.

    The factory must be deterministic given torch's seed (``build_model`` seeds it) and return a model whose
    forward pass maps (B, C, H, W) float32 images to (B, num_classes) logits.
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ValueError(f"a model needs a plain name, got {name!r}")
    MODEL_FACTORIES[name] = factory


def model_names() -> tuple[str, ...]:
    """Every registered model name (built-in and added)."""
    return tuple(MODEL_FACTORIES)


def check_name(name: object) -> str:
    if not isinstance(name, str) or name not in MODEL_FACTORIES:
        raise ValueError(f"unknown model name {name!r}; expected one of {', '.join(MODEL_FACTORIES)}")
    return name


def model_for_client(models: Sequence[str], client_id: int) -> str:
    """Architecture name of a client: the list of names is cycled over client ids.

    Parameters
    ----------
    models : list or tuple of str
        Non-empty list of names from ``MODEL_NAMES``; client ``i`` gets ``models[i % len(models)]``.
    client_id : int
        Zero-based client (partition) id.

    Returns
    -------
    str
        The architecture name for this client.
    """
    if isinstance(models, str) or not isinstance(models, Sequence) or len(models) == 0:
        raise ValueError(f"models must be a non-empty list of model names, got {models!r}")
    for name in models:
        check_name(name)
    if isinstance(client_id, bool) or not isinstance(client_id, int) or client_id < 0:
        raise ValueError(f"client_id must be a non-negative int, got {client_id!r}")
    return models[client_id % len(models)]
