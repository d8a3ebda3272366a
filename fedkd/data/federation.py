"""Turn one dataset into a federation: private client data, a public transfer set, test sets.

Pipeline (every step seeded from ``FederationSpec.seed``, each with its own stream so that
changing one step's size does not reshuffle the others):

1. hold out a stratified validation part of the training split (always, so the training
   data are the same whether runs evaluate on ``"val"`` or ``"test"``);
2. draw the public transfer set X_t from the rest; its labels are kept only for audits;
3. partition what is left (the private pool, optionally subsampled) among the clients;
4. draw the global test set and one local test set per client from the evaluation pool
   (the test split, or the validation part when ``eval_split="val"``), the local one with
   the client's own training label proportions.

Every process that builds the federation from an equal spec gets identical arrays, and the
transfer set's fingerprint lets client and server check they agree on X_t.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedkd.data.datasets import DATASET_NAMES, load_dataset
from fedkd.data.partition import PARTITION_SCHEMES, label_histogram, partition_labels
from fedkd.numbers import is_int, is_number

__all__ = ["ClientData", "Clients", "EVAL_SPLITS", "Federation", "FederationSpec", "build_federation", "fingerprint"]

EVAL_SPLITS = ("test", "val")

# Stream ids for np.random.SeedSequence([seed, stream, ...]): one per pipeline step.
_STREAM_VAL, _STREAM_TRANSFER, _STREAM_POOL, _STREAM_PARTITION, _STREAM_GLOBAL_TEST, _STREAM_LOCAL_TEST = range(6)

_FINGERPRINT_HEX_CHARS = 16


@dataclass(frozen=True)
class FederationSpec:
    """Everything that determines a federation's data; hashable, so it is the cache key.

    Attributes
    ----------
    dataset : str
        Dataset name (see ``fedkd.data.DATASET_NAMES``).
    data_root : str or None
        Folder with the dataset's files (see ``fedkd.data.load_dataset``).
    num_clients : int
        Number of clients (>= 1).
    partition : {"dirichlet", "pathological", "iid"}
        How the private pool is split (see ``fedkd.data.partition_labels``).
    alpha : float
        Dirichlet concentration (> 0); smaller means stronger label skew.
    classes_per_client : int
        Classes per client for ``"pathological"``.
    min_partition_size : int
        Minimum training samples per client (>= 1).
    seed : int
        Seed of every random step.
    transfer_size : int
        Number of public transfer images M (>= 1).
    private_pool_size : int or None
        Subsample the private pool to this many samples before partitioning; None keeps all.
    global_test_size : int or None
        Size of the global test set; None takes the whole evaluation pool.
    local_test_size : int
        Size of each client's local test set (>= 0).
    eval_split : {"test", "val"}
        Evaluation pool: the dataset's test split, or the validation part held out of the
        training split (for hyper-parameter selection that never touches the test set).
    val_fraction : float
        Fraction of the training split held out as validation, in [0, 1); must be > 0
        when ``eval_split="val"``.
    """

    dataset: str = "digits"
    data_root: str | None = None
    num_clients: int = 10
    partition: str = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    min_partition_size: int = 10
    seed: int = 0
    transfer_size: int = 500
    private_pool_size: int | None = None
    global_test_size: int | None = None
    local_test_size: int = 200
    eval_split: str = "test"
    val_fraction: float = 0.15

    def __post_init__(self):
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"dataset={self.dataset!r} is unknown; known: {', '.join(DATASET_NAMES)}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"data_root must be a str or None, got {self.data_root!r}")
        if not is_int(self.num_clients) or self.num_clients < 1:
            raise ValueError(f"num_clients must be an int >= 1, got {self.num_clients!r}")
        if self.partition not in PARTITION_SCHEMES:
            raise ValueError(f"partition={self.partition!r} is unknown; choose one of {', '.join(PARTITION_SCHEMES)}")
        if not is_number(self.alpha) or not (0 < self.alpha < float("inf")):
            raise ValueError(f"alpha must be a finite number > 0, got {self.alpha!r}")
        if not is_int(self.classes_per_client) or self.classes_per_client < 1:
            raise ValueError(f"classes_per_client must be an int >= 1, got {self.classes_per_client!r}")
        if not is_int(self.min_partition_size) or self.min_partition_size < 1:
            raise ValueError(f"min_partition_size must be an int >= 1, got {self.min_partition_size!r}")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not is_int(self.transfer_size) or self.transfer_size < 1:
            raise ValueError(f"transfer_size must be an int >= 1, got {self.transfer_size!r}")
        if self.private_pool_size is not None and (not is_int(self.private_pool_size) or self.private_pool_size < 1):
            raise ValueError(f"private_pool_size must be None or an int >= 1, got {self.private_pool_size!r}")
        if self.global_test_size is not None and (not is_int(self.global_test_size) or self.global_test_size < 1):
            raise ValueError(f"global_test_size must be None or an int >= 1, got {self.global_test_size!r}")
        if not is_int(self.local_test_size) or self.local_test_size < 0:
            raise ValueError(f"local_test_size must be an int >= 0, got {self.local_test_size!r}")
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split={self.eval_split!r} is unknown; choose one of {', '.join(EVAL_SPLITS)}")
        if not is_number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.eval_split == "val" and self.val_fraction == 0:
            raise ValueError("val_fraction must be > 0 when eval_split='val' (the validation part would be empty)")


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's private data and local test set.

    Attributes
    ----------
    client_id : int
        Index of the client, 0 .. num_clients-1 (Flower's partition-id).
    train_x : numpy.ndarray of float32, shape (n, C, H, W)
    train_y : numpy.ndarray of int64, shape (n,)
        Private training data (never leaves the client).
    test_x : numpy.ndarray of float32, shape (local_test_size, C, H, W)
    test_y : numpy.ndarray of int64, shape (local_test_size,)
        Local test set, drawn with the class proportions of ``train_y``.
    label_histogram : numpy.ndarray of int64, shape (num_classes,)
        Class counts of ``train_y``.
    train_indices : numpy.ndarray of int64, shape (n,)
        Where ``train_x`` came from: indices into the dataset's training split (for audits).
    """

    client_id: int
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    label_histogram: np.ndarray
    train_indices: np.ndarray

    @property
    def num_samples(self) -> int:
        """Number of private training samples."""
        return int(self.train_y.shape[0])


class Clients(Sequence):
    """The clients' data as a read-only sequence; client i is built when first asked for.

    Why: a process needs at most a few clients (the driver none, an actor one at a time), and
    building all N clients' arrays (local test sets above all) made start-up and memory grow
    with N. Each client is drawn from its own seeded stream, so what it gets does not depend
    on which clients were built before it. The most recently used ``keep`` clients are kept.
    """

    def __init__(self, count: int, make: Callable[[int], ClientData], keep: int = 256):
        self._count = count
        self._make = make
        self._keep = keep
        self._built: OrderedDict[int, ClientData] = OrderedDict()
        self._lock = threading.Lock()  # actors may run several clients in threads

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self._count)))
        i = operator.index(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"client index {index} is outside 0..{self._count - 1}")
        with self._lock:
            client = self._built.get(i)
            if client is None:
                client = self._built[i] = self._make(i)
                while len(self._built) > self._keep:
                    self._built.popitem(last=False)
            else:
                self._built.move_to_end(i)
            return client

    def __iter__(self):
        return (self[i] for i in range(self._count))

    def __repr__(self) -> str:
        return f"Clients(count={self._count}, built={len(self._built)})"


@dataclass(frozen=True, eq=False)
class Federation:
    """All data of one simulated federation. Arrays are shared and read-only.

    Attributes
    ----------
    spec : FederationSpec
        What it was built from.
    num_classes : int
    input_shape : tuple of int
        ``(C, H, W)``.
    class_names : tuple of str
    transfer_x : numpy.ndarray of float32, shape (M, C, H, W)
        Public, unlabelled transfer set X_t.
    transfer_fingerprint : str
        ``fingerprint(transfer_x)``; sent with every message to detect a mismatch.
    transfer_indices : numpy.ndarray of int64, shape (M,)
        Indices of X_t into the dataset's training split (for audits).
    global_test_x : numpy.ndarray of float32, shape (T, C, H, W)
    global_test_y : numpy.ndarray of int64, shape (T,)
        Global test set, drawn from the evaluation pool (see ``FederationSpec.eval_split``).
    clients : Clients (or any sequence of ClientData)
        One entry per client, ``clients[i].client_id == i``, each built on first use (a
        read-only sequence: the cached federation is shared, so it cannot be changed in place).
    _transfer_labels_for_audit : numpy.ndarray of int64, shape (M,)
        True labels of X_t. For privacy audits and diagnostics ONLY: never send them to a
        client or use them in training, X_t is unlabelled by design.
    """

    spec: FederationSpec
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    transfer_x: np.ndarray
    transfer_fingerprint: str
    transfer_indices: np.ndarray
    global_test_x: np.ndarray
    global_test_y: np.ndarray
    clients: Sequence[ClientData]
    _transfer_labels_for_audit: np.ndarray = field(repr=False)
    _label_histograms: np.ndarray | None = field(default=None, repr=False)  # counted without building clients

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def label_histograms(self) -> np.ndarray:
        """Training label counts of every client, int64 array of shape (num_clients, num_classes)."""
        if self._label_histograms is not None:
            return self._label_histograms
        return np.stack([c.label_histogram for c in self.clients])


def fingerprint(x) -> str:
    """Short, stable identifier of an array's content.

    Parameters
    ----------
    x : numpy.ndarray
        Any array (typically the transfer set, float32 (M, C, H, W)).

    Returns
    -------
    str
        First 16 hex characters of SHA-256 over dtype, shape and the C-ordered bytes, so
        equal arrays give equal strings on every machine and a change of any of the three
        gives a different one.
    """
    arr = np.asarray(x)
    h = hashlib.sha256()
    # Little-endian dtype string, so the same values hash the same on every platform.
    dtype = arr.dtype.newbyteorder("<")
    h.update(dtype.str.encode())
    h.update(repr(tuple(int(s) for s in arr.shape)).encode())
    h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return h.hexdigest()[:_FINGERPRINT_HEX_CHARS]


def build_federation(spec: FederationSpec) -> Federation:
    """Build (or fetch from this process's cache) the federation described by ``spec``.

    Parameters
    ----------
    spec : FederationSpec
        Validated description; equal specs give identical federations.

    Returns
    -------
    Federation

    Raises
    ------
    ValueError
        If the data are too small for the spec (e.g. ``transfer_size`` larger than what is
        left after the validation hold-out); the message names the field.
    fedkd.data.DatasetNotFoundError
        If the dataset's files are missing.
    """
    if not isinstance(spec, FederationSpec):
        raise ValueError(f"spec must be a FederationSpec, got {type(spec).__name__}")
    return _build_cached(spec)


@functools.lru_cache(maxsize=4)
def _build_cached(spec: FederationSpec) -> Federation:
    return _build(spec)


# Same name as lru_cache's, so tests and long-lived processes can drop cached federations.
build_federation.cache_clear = _build_cached.cache_clear


def _rng(spec: FederationSpec, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, *stream]))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask selecting round(fraction * n_c) random samples of every class c."""
    mask = np.zeros(labels.size, dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        mask[rng.choice(members, size=int(round(fraction * members.size)), replace=False)] = True
    return mask


def _proportional_counts(histogram: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` into integer counts proportional to ``histogram`` (largest remainder)."""
    if total == 0 or histogram.sum() == 0:
        return np.zeros_like(histogram)
    exact = histogram / histogram.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    # Ties go to the lower class index (stable sort), which keeps it deterministic.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def _draw_like(
    histogram: np.ndarray, total: int, pool_labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Indices into ``pool_labels``: ``total`` samples with class proportions of ``histogram``.

    Classes absent from the pool are dropped and the proportions renormalised. Within a
    class, sampling is without replacement unless the class has too few samples.
    """
    available = np.bincount(pool_labels, minlength=histogram.size)[: histogram.size]
    wanted = np.where(available > 0, histogram, 0)
    counts = _proportional_counts(wanted, total)
    chosen = []
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(pool_labels == c)
        chosen.append(rng.choice(members, size=counts[c], replace=counts[c] > members.size))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _build(spec: FederationSpec) -> Federation:
    ds = load_dataset(spec.dataset, spec.data_root)
    n_train = ds.y_train.size

    # 1. Validation hold-out (always made, so training data do not depend on eval_split).
    val_mask = _stratified_holdout(ds.y_train, spec.val_fraction, _rng(spec, _STREAM_VAL))
    val_idx = np.flatnonzero(val_mask)
    rest_idx = np.flatnonzero(~val_mask)

    # 2. Public transfer set.
    if spec.transfer_size >= rest_idx.size:
        raise ValueError(
            f"transfer_size={spec.transfer_size} leaves no private data: only {rest_idx.size} of "
            f"{n_train} training images remain after the validation hold-out (val_fraction={spec.val_fraction})"
        )
    shuffled = _rng(spec, _STREAM_TRANSFER).permutation(rest_idx)
    transfer_idx = np.sort(shuffled[: spec.transfer_size])
    pool_idx = np.sort(shuffled[spec.transfer_size:])

    # 3. Private pool (optionally subsampled), partitioned among clients.
    if spec.private_pool_size is not None:
        if spec.private_pool_size > pool_idx.size:
            raise ValueError(
                f"private_pool_size={spec.private_pool_size} exceeds the {pool_idx.size} images left "
                f"after the validation hold-out and transfer_size={spec.transfer_size}"
            )
        pool_idx = np.sort(_rng(spec, _STREAM_POOL).choice(pool_idx, size=spec.private_pool_size, replace=False))
    parts = partition_labels(
        ds.y_train[pool_idx],
        spec.num_clients,
        scheme=spec.partition,
        alpha=spec.alpha,
        classes_per_client=spec.classes_per_client,
        min_size=spec.min_partition_size,
        seed=_rng(spec, _STREAM_PARTITION),
    )

    # 4. Evaluation pool, global test set, local test sets.
    if spec.eval_split == "val":
        eval_x, eval_y = ds.x_train[val_idx], ds.y_train[val_idx]
    else:
        eval_x, eval_y = ds.x_test, ds.y_test
    if eval_y.size == 0:
        raise ValueError(f"eval_split={spec.eval_split!r} gives an empty evaluation pool")
    if spec.global_test_size is None:
        global_sel = np.arange(eval_y.size)
    elif spec.global_test_size > eval_y.size:
        raise ValueError(
            f"global_test_size={spec.global_test_size} exceeds the {eval_y.size} images of the "
            f"evaluation pool (eval_split={spec.eval_split!r})"
        )
    else:
        global_sel = np.sort(_rng(spec, _STREAM_GLOBAL_TEST).choice(eval_y.size, size=spec.global_test_size, replace=False))

    # Labels and histograms of every client now (cheap); each client's arrays on first use.
    train_indices = [pool_idx[part] for part in parts]
    histograms = _frozen(np.stack([label_histogram(ds.y_train[idx], ds.num_classes) for idx in train_indices])
                         if parts else np.zeros((0, ds.num_classes), dtype=np.int64))

    def make_client(cid: int) -> ClientData:
        idx, hist = train_indices[cid], histograms[cid]
        local_sel = _draw_like(hist, spec.local_test_size, eval_y, _rng(spec, _STREAM_LOCAL_TEST, cid))
        return ClientData(
            client_id=cid,
            train_x=_frozen(ds.x_train[idx]),
            train_y=_frozen(ds.y_train[idx]),
            test_x=_frozen(eval_x[local_sel]),
            test_y=_frozen(eval_y[local_sel]),
            label_histogram=hist,
            train_indices=_frozen(idx),
        )

    transfer_x = _frozen(ds.x_train[transfer_idx])
    return Federation(
        spec=spec,
        num_classes=ds.num_classes,
        input_shape=ds.input_shape,
        class_names=ds.class_names,
        transfer_x=transfer_x,
        transfer_fingerprint=fingerprint(transfer_x),
        transfer_indices=_frozen(transfer_idx),
        global_test_x=_frozen(eval_x[global_sel]),
        global_test_y=_frozen(eval_y[global_sel]),
        clients=Clients(len(train_indices), make_client),
        _transfer_labels_for_audit=_frozen(ds.y_train[transfer_idx]),
        _label_histograms=histograms,
    )
