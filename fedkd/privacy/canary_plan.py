"""The canary experiment a run config describes, built the same way by every party.

The canaries (random-pattern images with random labels) are planted in one
client's private data. With ``canaries.in_transfer`` their images, without
labels, are also appended to the public transfer set: the secret is then the
label the owner memorised, and the question is whether peers learn it from the
owner's soft labels on those images. Every party derives the same canaries and
so the same transfer set and fingerprint from the config.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from fedkd.data import fingerprint
from fedkd.privacy.canaries import CanarySet, canary_exposure, make_canary_set, plant
from fedkd.seeding import derive_seed


def canary_set(cfg, federation) -> CanarySet | None:
    if not cfg["canaries.enabled"]:
        return None
    return _cached_set(cfg["canaries.count"], cfg["canaries.references"], cfg["canaries.repeats"],
                       tuple(federation.input_shape), federation.num_classes,
                       derive_seed(cfg["seed"], "canaries"))


@lru_cache(maxsize=8)
def _cached_set(k, references, repeats, input_shape, num_classes, seed) -> CanarySet:
    return make_canary_set(k, references, repeats, input_shape, num_classes, seed)


def transfer_inputs(cfg, federation) -> tuple[np.ndarray, str]:
    """The transfer set every party uses, and its fingerprint."""
    canaries = canary_set(cfg, federation)
    if canaries is None or not cfg["canaries.in_transfer"]:
        return federation.transfer_x, federation.transfer_fingerprint
    x = np.concatenate([federation.transfer_x, canaries.canary_x]).astype(np.float32)
    x.setflags(write=False)
    return x, fingerprint(x)


def private_training_data(cfg, federation, client) -> tuple[np.ndarray, np.ndarray]:
    """The client's private data, with the canaries planted if it is their owner."""
    canaries = canary_set(cfg, federation)
    if canaries is None or client.client_id != cfg["canaries.client"]:
        return client.train_x, client.train_y
    return plant(client.train_x, client.train_y, canaries.canary_x, canaries.canary_y, canaries.repeats)


def measure_exposure(cfg, federation, model, device) -> dict:
    """Mean and max exposure (bits) of the run's canaries on ``model``; {} without canaries."""
    canaries = canary_set(cfg, federation)
    if canaries is None:
        return {}
    out = canary_exposure(model, canaries.canary_x, canaries.canary_y, canaries.reference_x,
                          canaries.reference_y, device=device)
    return {"canary_exposure": float(out["mean"]), "canary_exposure_max": float(out["max"])}
