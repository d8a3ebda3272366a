"""How soft labels travel: float32, float16 or 8-bit rows, optionally only each row's top k classes.

Pure numpy (no Flower): :func:`encode` turns an (M, C) probability array into the named arrays that
``fedkd.protocol`` puts in an ArrayRecord, :func:`decode` turns them back into (M, C) float32 rows that
sum to 1. Decoding reads the arrays themselves (self-describing); the server additionally checks that a
reply uses the configured format (:func:`check_encoded`), so garbage is refused rather than decoded.

Error bounds of a round trip, per entry, for valid probability rows (what ``tests/test_performance.py``
checks):

- ``float32``: exact.
- ``float16``: relative error <= 2**-11 (round to nearest), so a row's sum moves by at most 2**-11,
  inside the protocol's row-sum tolerance of 1e-3.
- ``uint8``: a row is quantised to integer counts out of 255 that sum to exactly 255 (largest
  remainder), so every entry is off by less than 1/255 and rows still sum to 1.
- ``topk = k``: the k largest entries of a row are sent (in the dtype above, with their class indices);
  the row's remaining mass is spread evenly over the other C - k classes. An entry is then off by at
  most that remaining mass plus the dtype's error. With ``uint8`` the k values and the remaining mass
  are quantised together, so the sent values never add up to more than 1.

Decoding never renormalises: a row that did not sum to 1 when it was sent does not sum to 1 after
decoding either, so the server's checks still see a malformed upload.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPES = ("float32", "float16", "uint8")
DENSE_KEY = "soft_labels"  # the one dense array (also the server's ``targets`` record uses it)
TOPK_VALUES, TOPK_INDICES, NUM_CLASSES = "topk_values", "topk_indices", "num_classes"
UINT8_SCALE = 255
FLOAT16_RELATIVE_ERROR = 2.0**-11
UINT8_ABS_ERROR = 1.0 / UINT8_SCALE


@dataclass(frozen=True)
class WireFormat:
    """dtype: one of :data:`DTYPES`; topk: classes sent per row (0 = all)."""

    dtype: str = "float32"
    topk: int = 0

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"wire dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if isinstance(self.topk, bool) or not isinstance(self.topk, (int, np.integer)) or self.topk < 0:
            raise ValueError(f"wire topk must be an int >= 0 (0 = all classes), got {self.topk!r}")

    def sparse(self, num_classes: int) -> bool:
        """Whether rows of ``num_classes`` entries are sent as top-k (k >= C sends them whole)."""
        return 0 < self.topk < num_classes

    def payload_bytes(self, rows: int, num_classes: int) -> int:
        """Bytes of the arrays' data (without record framing) for ``rows`` x ``num_classes`` soft labels."""
        width = np.dtype(self.dtype).itemsize
        if not self.sparse(num_classes):
            return rows * num_classes * width
        return rows * self.topk * (width + _index_dtype(num_classes).itemsize) + 2

    @property
    def is_default(self) -> bool:
        return self.dtype == "float32" and self.topk == 0


def _index_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def _quantise_rows(p: np.ndarray) -> np.ndarray:
    """uint8 counts out of 255 per row of ``p`` (rows summing to 1), summing to exactly 255
    (largest-remainder rounding)."""
    scaled = p.astype(np.float64) / p.sum(axis=1, keepdims=True) * UINT8_SCALE
    counts = np.floor(scaled).astype(np.int64)
    short = UINT8_SCALE - counts.sum(axis=1)  # in [0, C)
    order = np.argsort(-(scaled - counts), axis=1, kind="stable")
    bump = np.arange(p.shape[1])[None, :] < short[:, None]  # the `short` largest remainders get +1
    np.put_along_axis(counts, order, np.take_along_axis(counts, order, axis=1) + bump, axis=1)
    return counts.astype(np.uint8)


def encode(p: np.ndarray, fmt: WireFormat) -> dict[str, np.ndarray]:
    """(M, C) float32 probability rows -> named arrays in ``fmt``.

    The default format sends the array as it is; the compact ones need well-formed rows (finite,
    non-negative, positive sums) and refuse anything else with a ValueError.
    """
    if fmt.is_default:
        return {DENSE_KEY: np.ascontiguousarray(p)}
    if not (isinstance(p, np.ndarray) and p.ndim == 2 and p.shape[1] >= 2 and bool(np.all(np.isfinite(p)))
            and bool(np.all(p >= 0)) and bool(np.all(p.sum(axis=1) > 0))):
        raise ValueError("only finite, non-negative (M, C) probability rows can be sent in a compact wire format")
    m, c = p.shape
    if not fmt.sparse(c):
        dense = _quantise_rows(p) if fmt.dtype == "uint8" else p.astype(fmt.dtype)
        return {DENSE_KEY: np.ascontiguousarray(dense)}
    idx = np.argpartition(-p, fmt.topk - 1, axis=1)[:, : fmt.topk]
    idx = np.sort(idx, axis=1)  # a stable, canonical order
    values = np.take_along_axis(p, idx, axis=1).astype(np.float64)
    if fmt.dtype == "uint8":  # quantise the kept values together with the rest of the row's mass
        rest = np.clip(1.0 - values.sum(axis=1, keepdims=True), 0.0, None)
        sent = _quantise_rows(np.concatenate([values, rest], axis=1))[:, : fmt.topk]
    else:
        sent = values.astype(fmt.dtype)
    return {TOPK_VALUES: np.ascontiguousarray(sent), TOPK_INDICES: idx.astype(_index_dtype(c)),
            NUM_CLASSES: np.array([c], dtype=np.uint16)}


def format_of(arrays: dict[str, np.ndarray]) -> tuple[str, bool]:
    """(dtype name, sparse?) of encoded arrays."""
    if TOPK_VALUES in arrays:
        return str(arrays[TOPK_VALUES].dtype), True
    return str(arrays[DENSE_KEY].dtype), False


def check_encoded(arrays: dict[str, np.ndarray], fmt: WireFormat, shape: tuple[int, int]) -> str | None:
    """Why ``arrays`` are not soft labels of ``shape`` in ``fmt`` (a short reason), or None if they are.

    Returns ``"missing_key"``, ``"stray_arrays"`` (arrays the format does not have), ``"bad_dtype"``
    or ``"bad_shape"``; values are checked after decoding.
    """
    m, c = shape
    expected = {TOPK_VALUES, TOPK_INDICES, NUM_CLASSES} if fmt.sparse(c) else {DENSE_KEY}
    if not expected <= set(arrays):
        return "missing_key"
    if set(arrays) != expected:
        return "stray_arrays"
    if fmt.sparse(c):
        values, idx, classes = arrays[TOPK_VALUES], arrays[TOPK_INDICES], arrays[NUM_CLASSES]
        if str(values.dtype) != fmt.dtype or idx.dtype != _index_dtype(c):
            return "bad_dtype"
        if values.shape != (m, fmt.topk) or idx.shape != (m, fmt.topk) or classes.shape != (1,):
            return "bad_shape"
        if int(classes[0]) != c or (idx.size and int(idx.max()) >= c):
            return "bad_shape"
        if np.any(np.diff(idx.astype(np.int64), axis=1) <= 0):  # repeated class in a row
            return "bad_shape"
        return None
    if str(arrays[DENSE_KEY].dtype) != fmt.dtype:
        return "bad_dtype"
    if arrays[DENSE_KEY].shape != (m, c):
        return "bad_shape"
    return None


def decode(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Named arrays from :func:`encode` -> (M, C) float32 rows (summing to 1 when they did when sent).

    Nothing is renormalised and non-finite or negative values stay visible, so the caller's checks
    still reject a malformed upload; a float32 dense array comes back exactly as sent.
    """
    dtype, sparse = format_of(arrays)
    if not sparse:
        dense = arrays[DENSE_KEY]
        if dtype == "uint8":
            return (dense.astype(np.float64) / UINT8_SCALE).astype(np.float32)
        return dense.astype(np.float32, copy=False)
    values = arrays[TOPK_VALUES].astype(np.float64)
    if dtype == "uint8":
        values /= UINT8_SCALE
    idx = arrays[TOPK_INDICES].astype(np.int64)
    k = values.shape[1]
    c = int(arrays[NUM_CLASSES][0])
    with np.errstate(invalid="ignore"):
        rest = np.clip(1.0 - values.sum(axis=1, keepdims=True), 0.0, None) / (c - k)
    dense = np.repeat(rest, c, axis=1)
    np.put_along_axis(dense, idx, values, axis=1)
    return dense.astype(np.float32)


from fedkd.keys import CLIENT, NON_NEGATIVE, one_of, setting, settings_group  # noqa: E402


@settings_group("", audience=CLIENT)
class WireSettings:
    """How soft labels and targets travel (both directions)."""

    wire_dtype: str = setting("float32", "how soft labels and targets travel: float32, float16 or uint8 (counts out "
                              "of 255 per row); see docs/performance.md", one_of(DTYPES))
    wire_topk: int = setting(0, "send only each row's k largest soft labels, the rest of the mass spread evenly "
                             "(0 = all classes)", NON_NEGATIVE)

    @property
    def format(self) -> WireFormat:
        return WireFormat(dtype=self.wire_dtype, topk=self.wire_topk)
