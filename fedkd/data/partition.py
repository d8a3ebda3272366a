"""Split a labelled pool among clients: IID, Dirichlet label skew, or pathological (k classes each).

Written in numpy rather than with flwr-datasets' partitioners: those need Hugging Face
``datasets`` and pyarrow (a large install and a slow import in every client process) and
work on ``datasets.Dataset`` tables, while the whole job here is a few array operations on
a label vector. Library code in ``fedkd/`` also stays free of Flower imports.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PARTITION_SCHEMES", "PartitionError", "label_histogram", "partition_labels"]

PARTITION_SCHEMES = ("dirichlet", "pathological", "iid")

# Dirichlet draws are redone until every client has min_size samples; this bounds the retries.
_MAX_DIRICHLET_TRIES = 1000


class PartitionError(ValueError):
    """The requested partition cannot be made (e.g. too few samples for min_size)."""


def label_histogram(labels, num_classes: int) -> np.ndarray:
    """Count how often each class occurs.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Class indices in ``[0, num_classes)``.
    num_classes : int
        Number of classes C.

    Returns
    -------
    numpy.ndarray of int64, shape (C,)
        ``hist[c]`` = number of samples with label ``c``.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    labels = _check_labels(labels)
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"labels contain {labels.max()}, outside [0, num_classes={num_classes})")
    return np.bincount(labels, minlength=int(num_classes)).astype(np.int64)


def partition_labels(
    labels,
    num_clients: int,
    scheme: str = "dirichlet",
    alpha: float = 0.5,
    classes_per_client: int = 2,
    min_size: int = 10,
    seed: int | np.random.Generator = 0,
) -> list[np.ndarray]:
    """Assign sample indices to clients.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Label of every sample of the pool (non-negative ints).
    num_clients : int
        Number of clients K (>= 1).
    scheme : {"dirichlet", "pathological", "iid"}
        ``"dirichlet"``: for every class, the share of each client is drawn from
        Dirichlet(alpha, ..., alpha); small ``alpha`` gives strong label skew, large ``alpha``
        approaches IID. Draws are repeated (a bounded number of times) until every client has
        at least ``min_size`` samples.
        ``"pathological"``: every client holds exactly ``classes_per_client`` distinct classes;
        each class is cut into equal shards, one per client holding it. Classes are spread as
        evenly as possible over clients (a class is left out only when
        ``num_clients * classes_per_client`` is smaller than the number of classes).
        ``"iid"``: a random permutation cut into near-equal parts.
    alpha : float
        Dirichlet concentration (> 0); used by ``"dirichlet"`` only.
    classes_per_client : int
        Classes per client (1 .. number of distinct labels); used by ``"pathological"`` only.
    min_size : int
        Minimum samples per client (>= 1, so no client is empty).
    seed : int or numpy.random.Generator
        Source of randomness; the same int gives the same partition.

    Returns
    -------
    list of numpy.ndarray of int64
        ``K`` sorted index arrays into ``labels``, pairwise disjoint. For ``"iid"`` and
        ``"dirichlet"`` they cover all samples; for ``"pathological"`` they cover every
        sample whose class was assigned to some client.

    Raises
    ------
    ValueError
        On bad arguments (the message names the argument).
    PartitionError
        If no partition meets ``min_size``.
    """
    labels = _check_labels(labels)
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise ValueError(f"num_clients must be an int >= 1, got {num_clients!r}")
    if not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise ValueError(f"min_size must be an int >= 1, got {min_size!r}")
    if scheme not in PARTITION_SCHEMES:
        raise ValueError(f"scheme={scheme!r} is unknown; choose one of {', '.join(PARTITION_SCHEMES)}")
    if num_clients * min_size > labels.size:
        raise PartitionError(
            f"cannot give num_clients={num_clients} clients min_size={min_size} samples each "
            f"from {labels.size} samples"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(_check_seed(seed))

    if scheme == "iid":
        parts = np.array_split(rng.permutation(labels.size), num_clients)
    elif scheme == "dirichlet":
        if not np.isscalar(alpha) or not alpha > 0 or not np.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        parts = _dirichlet(labels, int(num_clients), float(alpha), int(min_size), rng)
    else:
        parts = _pathological(labels, int(num_clients), classes_per_client, rng)

    parts = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    smallest = min(len(p) for p in parts)
    if smallest < min_size:
        raise PartitionError(
            f"scheme={scheme!r} left a client with {smallest} samples < min_size={min_size}; "
            "use fewer clients, a smaller min_size or more data"
        )
    return parts


def _check_labels(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"labels must be non-negative, found {arr.min()}")
    return arr


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or numpy.random.Generator, got {seed!r}")
    return int(seed)


def _dirichlet(labels, num_clients, alpha, min_size, rng) -> list[np.ndarray]:
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    for _ in range(_MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in members:
            idx = rng.permutation(idx)
            shares = rng.dirichlet(np.full(num_clients, alpha))
            # Cut points from the cumulative shares; the last client gets the remainder.
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
        sizes = [sum(len(c) for c in p) for p in parts]
        if min(sizes) >= min_size:
            return [np.concatenate(p) for p in parts]
    raise PartitionError(
        f"dirichlet partition with alpha={alpha} gave some client fewer than min_size={min_size} "
        f"samples in all {_MAX_DIRICHLET_TRIES} draws ({labels.size} samples, {num_clients} clients); "
        "raise alpha, lower min_size or use fewer clients"
    )


def _pathological(labels, num_clients, classes_per_client, rng) -> list[np.ndarray]:
    classes = np.unique(labels)
    if not isinstance(classes_per_client, (int, np.integer)) or not 1 <= classes_per_client <= len(classes):
        raise ValueError(
            f"classes_per_client must be an int in [1, {len(classes)}] (the number of classes present), "
            f"got {classes_per_client!r}"
        )
    # Greedy balanced assignment: each client takes the k least-used classes so far,
    # random tie-breaks. Keeps class usage within one of each other, so every class is
    # used when num_clients * k >= number of classes.
    usage = np.zeros(len(classes), dtype=np.int64)
    owners: list[list[int]] = [[] for _ in classes]
    for client in range(num_clients):
        priority = usage + rng.random(len(classes))
        chosen = np.argsort(priority)[:classes_per_client]
        usage[chosen] += 1
        for ci in chosen:
            owners[ci].append(client)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for ci, c in enumerate(classes):
        if not owners[ci]:
            continue
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < len(owners[ci]):
            raise PartitionError(
                f"class {c} has {len(idx)} samples but {len(owners[ci])} clients should hold it; "
                "lower classes_per_client or num_clients"
            )
        for client, shard in zip(owners[ci], np.array_split(idx, len(owners[ci]))):
            parts[client].append(shard)
    return [np.concatenate(p) for p in parts]
