"""Small helpers shared by the audit attacks: input checks, devices and seeding.

Nothing here is part of the public API; the attack modules validate their inputs
through these functions so that every attack reports bad input the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = [
    "check_images",
    "check_labels",
    "check_pair",
    "as_device",
    "seeded_torch",
    "progress_bar",
    "check_positive_int",
]


def check_images(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float32 array shaped (N, C, H, W) with values in [0, 1].

    Raises ``ValueError`` naming ``name`` when the shape or value range is wrong.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be shaped (N, C, H, W), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    # A little slack for values that went through float arithmetic.
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return x


def check_labels(y, n: int, num_classes: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as an int64 array shaped (n,), checked against ``num_classes``."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be shaped ({n},) to match the images, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.min() < 0:
        raise ValueError(f"{name} holds a negative label ({int(y.min())})")
    if num_classes is not None and y.max() >= num_classes:
        raise ValueError(
            f"{name} holds label {int(y.max())}, outside range(num_classes={num_classes})"
        )
    return y


def check_pair(x, y, num_classes: int | None = None, x_name: str = "x", y_name: str = "y"):
    """Validate an (images, labels) pair; return them as (float32, int64) arrays."""
    x = check_images(x, x_name)
    y = check_labels(y, x.shape[0], num_classes, y_name)
    return x, y


def as_device(device) -> torch.device:
    """Turn ``device`` ("auto", "cpu", "cuda", "cuda:N", a torch.device, None = CPU) into a
    ``torch.device``, through ``fedkd.training.resolve_device`` so the whole project agrees
    on what "auto" means and reports an unavailable CUDA device the same way.
    """
    if device is None:
        return torch.device("cpu")
    from fedkd.training import resolve_device

    return resolve_device(device)


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG afterwards.

    Used around code we do not control that draws from the global RNG (module
    weight initialisation in ``build_model``), so that the same seed always builds
    the same network and the caller's own random stream is left untouched.
    """
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def progress_bar(iterable, *, enabled: bool, desc: str, total: int | None = None):
    """Wrap ``iterable`` in a tqdm bar when ``enabled``; otherwise return it unchanged."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int, raising ``ValueError`` unless it is >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
