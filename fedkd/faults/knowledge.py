"""Malicious knowledge: what a lying client uploads instead of its honest soft labels.

Each kind is a pure numpy transform of the liar's honest (M, C) soft labels on the transfer set into a
well-formed reply (float32, rows on the simplex), so the server cannot reject it by form; only fusion can
limit its influence. The kinds probe different blind spots of an effectiveness measure:

``random``  rows drawn uniformly from the simplex (Dirichlet(1)): no knowledge, but not flat either.
``flip``    class c -> C-1-c: confident, and wrong on every image; its class marginal is only mirrored.
``shift``   one-hot rows of class (argmax + 1) mod C: maximally confident and wrong on every image, with
            the honest marginal merely rotated by one class.
``mimic``   every row equals one class distribution that matches the honest marginal: it agrees with
            everybody "on average" and says nothing about any image. A rule that compares class profiles
            (KnFu's original ``profile_kl``) sees a perfect neighbour; per-sample measures see an answer
            that ignores the input.
``swap``    a targeted attack: the honest answer, except that class SRC's mass is moved to class DST
            (``attack.swap = "3:8"``): right on every image but those the model takes for SRC, so an
            effectiveness measure that averages over all images hardly sees it.
``echo``    the targets the server sent the liar this round (its neighbours' mix), uploaded as its own
            answer: built to sit close to the clients it was fused from, and free of any knowledge of its
            own. Honest while it has received none (round 1, or a round it got no targets).

Colluders (``attack.collude``) are not a transform of one client's answer: see ``fedkd.faults.clientapp``.

For ``mimic``, the federation's honest class marginal is not available to a single client. By default
the liar uses its own soft labels' column mean, the best estimate it has (it is exactly its own honest
knowledge profile, so under ``profile_kl`` the liar keeps precisely the weight its honest self had). A
simulation that wants the stronger adversary who knows the honest marginal passes it as ``marginal``.
"""
from __future__ import annotations

import numpy as np

from fedkd.faults.settings import LIE_KINDS  # the keys' vocabulary; each kind is implemented below
UNTARGETED_KINDS = ("random", "flip", "shift", "mimic")  # what liars upload when they do not aim at one class


def _check(soft: np.ndarray) -> np.ndarray:
    s = np.asarray(soft)
    if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 2:
        raise ValueError(f"soft labels must be (M, C) with M >= 1 and C >= 2, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("soft labels contain NaN or Inf")
    return s


def random_rows(num_rows: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(M, C) float32 rows drawn uniformly from the simplex (Dirichlet(1)), the draws earlier robustness runs used."""
    rows = rng.dirichlet(np.ones(num_classes), size=num_rows)
    return (rows / rows.sum(axis=1, keepdims=True)).astype(np.float32)


def flip(soft: np.ndarray) -> np.ndarray:
    """Class c -> C-1-c on every row (sums are unchanged: the entries are only reordered)."""
    return np.ascontiguousarray(_check(soft)[:, ::-1], dtype=np.float32)


def shift(soft: np.ndarray) -> np.ndarray:
    """One-hot rows of class (argmax + 1) mod C: the honest top class, moved on by one."""
    s = _check(soft)
    m, c = s.shape
    out = np.zeros((m, c), dtype=np.float32)
    out[np.arange(m), (s.argmax(axis=1) + 1) % c] = 1.0
    return out


def mimic(soft: np.ndarray, marginal: np.ndarray | None = None) -> np.ndarray:
    """Every row equal to ``marginal`` (default: the column mean of ``soft``), renormalised, float32."""
    s = _check(soft)
    m, c = s.shape
    row = s.astype(np.float64).mean(axis=0) if marginal is None else np.asarray(marginal, dtype=np.float64)
    if row.shape != (c,) or np.any(row < 0) or not np.all(np.isfinite(row)) or row.sum() <= 0:
        raise ValueError(f"marginal must be {c} finite non-negative numbers with a positive sum, got {row}")
    row = (row / row.sum()).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(row, (m, c)))


def parse_swap(text: str) -> tuple[int, int]:
    """``"3:8"`` -> (3, 8); ValueError for anything else (two different class indices >= 0)."""
    parts = [x.strip() for x in str(text).split(":")]
    if len(parts) != 2 or not all(x.isdigit() for x in parts) or parts[0] == parts[1] or \
            int(parts[0]) == int(parts[1]):
        raise ValueError(f"{text!r} is not SRC:DST, two different class indices")
    return int(parts[0]), int(parts[1])


def swap(soft: np.ndarray, src: int, dst: int) -> np.ndarray:
    """The honest rows with column ``src``'s mass added to column ``dst`` and ``src`` set to 0."""
    s = _check(soft)
    c = s.shape[1]
    if not (0 <= src < c and 0 <= dst < c) or src == dst:
        raise ValueError(f"swap {src}:{dst} needs two different classes in [0, {c})")
    out = np.array(s, dtype=np.float32, copy=True)
    out[:, dst] += out[:, src]
    out[:, src] = 0.0
    return np.ascontiguousarray(out)


def blur(soft: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """(1 - share) x the rows + share x random rows: a colluder's copy of the shared answer, or an echo's copy
    of its targets, made its own."""
    s = _check(soft)
    if not 0.0 <= share < 1.0:
        raise ValueError(f"blur share must be in [0, 1), got {share}")
    out = (1.0 - share) * s + share * random_rows(s.shape[0], s.shape[1], rng)
    return np.ascontiguousarray(out / out.sum(axis=1, keepdims=True), dtype=np.float32)


def blend(rows: np.ndarray, own: np.ndarray, share: float) -> np.ndarray:
    """(1 - share) x the rows + share x the client's own honest answer: an echo that distils almost wholly
    (``fault.echo_with=own``), close to everyone and, unlike random rows, agreeing with the images."""
    r, o = _check(rows), _check(own)
    if r.shape != o.shape:
        raise ValueError(f"blend needs two answers of one shape, got {r.shape} and {o.shape}")
    if not 0.0 <= share < 1.0:
        raise ValueError(f"blend share must be in [0, 1), got {share}")
    out = (1.0 - share) * r + share * o
    return np.ascontiguousarray(out / out.sum(axis=1, keepdims=True), dtype=np.float32)


def echo(soft: np.ndarray, received: np.ndarray | None) -> np.ndarray:
    """The targets ``received`` from the server (renormalised float32), or the honest rows without any."""
    s = _check(soft)
    if received is None:
        return np.ascontiguousarray(s, dtype=np.float32)
    r = np.asarray(received, dtype=np.float64)
    if r.shape != s.shape or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"received targets must be finite, non-negative and {s.shape}, got {r.shape}")
    return np.ascontiguousarray(r / r.sum(axis=1, keepdims=True), dtype=np.float32)


def lie(kind: str, soft: np.ndarray, rng: np.random.Generator, *,
        marginal: np.ndarray | None = None, swap_classes: tuple[int, int] = (0, 1),
        received: np.ndarray | None = None) -> np.ndarray:
    """What a liar of ``kind`` uploads instead of its honest soft labels ``soft`` (M, C).

    rng:      used by ``random`` only (seed it per client and round for reproducible runs); the other
              kinds are deterministic functions of ``soft``.
    marginal: (C,) for ``mimic`` only: the class distribution to repeat on every row (see the module doc).
    swap_classes: (SRC, DST) for ``swap`` only.
    received: (M, C) for ``echo`` only: the targets the server sent this round (None: it sent none).
    Returns float32 (M, C) with rows summing to 1.
    """
    s = _check(soft)
    if kind == "random":
        return random_rows(s.shape[0], s.shape[1], rng)
    if kind == "flip":
        return flip(s)
    if kind == "shift":
        return shift(s)
    if kind == "mimic":
        return mimic(s, marginal)
    if kind == "swap":
        return swap(s, *swap_classes)
    if kind == "echo":
        return echo(s, received)
    raise ValueError(f"unknown lie kind {kind!r}; known: {', '.join(LIE_KINDS)}")
