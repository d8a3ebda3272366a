"""The canary experiment a run config describes, built the same way by every party.

The canaries (random-pattern images with random labels) are planted in one
client's private data. With ``canaries.in_transfer`` their images, without
labels, are also appended to the public transfer set: the secret is then the
label the owner memorised, and the question is whether peers learn it from the
owner's soft labels on those images. Every party derives the same canaries and
so the same transfer set and fingerprint from the settings.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from fedkd.data import fingerprint
from fedkd.privacy.canaries import CanarySet, canary_exposure, make_canary_set, plant
from fedkd.seeding import derive_seed
from fedkd.privacy.settings import CanarySettings


def canary_set(s: CanarySettings, input_shape, num_classes: int) -> CanarySet | None:
    if not s.enabled:
        return None
    return _cached_set(s.count, s.references, s.repeats, tuple(input_shape), int(num_classes),
                       derive_seed(s.seed, "canaries"))


@lru_cache(maxsize=8)
def _cached_set(k, references, repeats, input_shape, num_classes, seed) -> CanarySet:
    return make_canary_set(k, references, repeats, input_shape, num_classes, seed)


def transfer_with_canaries(s: CanarySettings, canaries: CanarySet | None, transfer_x: np.ndarray,
                           transfer_fingerprint: str | None = None) -> tuple[np.ndarray, str]:
    """The transfer set every party uses (the public one, plus the canary images if so set) and its fingerprint."""
    if canaries is None or not s.in_transfer:
        return transfer_x, transfer_fingerprint or fingerprint(transfer_x)
    x = np.concatenate([transfer_x, canaries.canary_x]).astype(np.float32)
    x.setflags(write=False)
    return x, fingerprint(x)


def plant_if_owner(s: CanarySettings, canaries: CanarySet | None, client_id: int, train_x: np.ndarray,
                   train_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The client's private data, with the canaries planted if it is their owner."""
    if canaries is None or client_id != s.client:
        return train_x, train_y
    return plant(train_x, train_y, canaries.canary_x, canaries.canary_y, canaries.repeats)


def measure_exposure(canaries: CanarySet | None, model, device) -> dict:
    """Mean and max exposure (bits) of the run's canaries on ``model``; {} without canaries."""
    if canaries is None:
        return {}
    out = canary_exposure(model, canaries.canary_x, canaries.canary_y, canaries.reference_x,
                          canaries.reference_y, device=device)
    return {"canary_exposure": float(out["mean"]), "canary_exposure_max": float(out["max"])}


# Whole-federation helpers for simulations and audits, which hold every client's data.
def transfer_inputs(s: CanarySettings, federation) -> tuple[np.ndarray, str]:
    canaries = canary_set(s, federation.input_shape, federation.num_classes)
    return transfer_with_canaries(s, canaries, federation.transfer_x, federation.transfer_fingerprint)


def private_training_data(s: CanarySettings, federation, client) -> tuple[np.ndarray, np.ndarray]:
    canaries = canary_set(s, federation.input_shape, federation.num_classes)
    return plant_if_owner(s, canaries, client.client_id, client.train_x, client.train_y)
