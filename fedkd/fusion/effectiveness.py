"""How effective client m's knowledge is for client n: pairwise distances and informativeness.

KnFu (S. J. Seyedmohammadi, S. K. Atapour, J. Abouei, A. Mohammadi, "KnFu: Effective Knowledge Fusion",
arXiv:2403.11892, 2024) fuses, for each client, only the knowledge of its *semantic neighbours*. Which
clients those are depends on how knowledge is compared. Every measure here is a function of the stacked
soft labels ``p`` (N, M, C) (float64, rows on the simplex) that returns an (N, N) matrix ``d[n, m] >= 0``
with ``d[n, n] ~ 0``, computed for all pairs without a Python loop over pairs:

``profile_kl``  KL(e_n || e_m) between class profiles e = mean_i P[i] (the original rule; one (N,C)@(C,N)
                product). It sees only class marginals: two clients whose answers to the *same* image
                disagree (permuted labels, a label flipper with a similar marginal, a flat "mimic") can
                look identical.
``sample_kl``   mean over transfer samples i of KL(P_n[i] || P_m[i]): answers to the same inputs are
                compared. Sum_i,c q_n log q_n - Q_n . log Q_m is one (N, M*C)@(M*C, N) product, done in
                chunks of samples so memory stays bounded (``block_bytes``) at any N.
``sample_js``   mean over i of the Jensen-Shannon divergence (symmetric, bounded by log 2). The mixture
                (P_n[i] + P_m[i]) / 2 admits no product form, so it is computed over tiles of pairs of
                bounded size (upper triangle only, JS being symmetric): N^2 M C logarithms, far dearer
                than the products (see experiments/bench/fusion.py).
``sample_hellinger``  mean over i of the squared Hellinger distance 1 - sum_c sqrt(P_n[i,c] P_m[i,c]):
                symmetric and bounded like JS, but one product; the cheap alternative when N is large.
``class_hellinger``  per-class agreement: the transfer samples are split by the class the federation's
                coordinate-wise median answer gives them, the mean squared Hellinger distance is taken on
                each class's samples, and d[n, m] is the largest of these. A client that answers honestly
                except on one class (a targeted swap, 3 -> 8) differs on a tenth of the samples: averaged
                over all of them that is lost among honest disagreement, per class it is the whole class.
                The classes partition the samples, so all classes together cost one product, as above.

Two further pieces make the measures usable as KnFu weights (see ``fuse_knfu``):

``row_scale``        a robust scale per row (median distance to the informative peers), so that beta means
                     the same thing whatever the distance's units (nats of KL, bounded JS, ...).
``informativeness``  how much a client's answers say about the input at all (0 for a flat or a constant
                     answer), so that "knowing nothing" is never mistaken for agreement.
``agreement_beyond_chance``  per pair, whether two clients' answers to the *same* images agree more than
                     the same answers would if one client's were shuffled over the images (a z-score): an
                     answer that does not depend on the image (random rows, a constant) or that contradicts
                     the client's (a flip, a shift) shows no such agreement, however close its marginals.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

_EPS = 1e-12  # profile smoothing of the original rule (kept as it was, for bit-identical results)
SMOOTH = 1e-6  # per-sample KL: rows become (P + SMOOTH) / (1 + C * SMOOTH) before any logarithm
SCALE_FLOOR = 1e-6  # nats: a row whose median peer distance is below this has indistinguishable peers
FLAT_FLOOR = 1e-6  # informativeness below this (float rounding of an exactly flat client) counts as 0
BLOCK_BYTES = 4 * 2**20  # working memory of one block of the per-sample measures (about the L2/L3 cache)


# ---------------------------------------------------------------- profile (class-marginal) distance

def knowledge_profiles(p: np.ndarray) -> np.ndarray:
    """(N, M, C) soft labels -> (N, C) mean predicted class distribution per client."""
    e = p.mean(axis=1) + _EPS
    return e / e.sum(axis=1, keepdims=True)


def pairwise_kl(e: np.ndarray) -> np.ndarray:
    """d[n, m] = KL(e_n || e_m) for rows of ``e`` (N, C), via one matrix product."""
    log_e = np.log(e)
    neg_entropy = np.sum(e * log_e, axis=1)          # sum_c e_n log e_n
    cross = e @ log_e.T                              # sum_c e_n log e_m
    return np.maximum(neg_entropy[:, None] - cross, 0.0)


def profile_kl(p: np.ndarray, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """KL between class profiles (``block_bytes`` is unused: the (N, C) profiles are small)."""
    return pairwise_kl(knowledge_profiles(p))


# ---------------------------------------------------------------- per-sample distances

def sample_mean(x: np.ndarray) -> np.ndarray:
    """(N, M, C) -> (N, C), the mean over the M transfer samples, as BLAS products (a ones vector times each
    client's (M, C) block): numpy's own reduction over a middle axis takes about 4x as long."""
    return np.ones(x.shape[1]) @ x / x.shape[1]


def _check(p: np.ndarray) -> tuple[int, int, int]:
    if p.ndim != 3:
        raise ValueError(f"soft labels must be (N, M, C), got shape {p.shape}")
    return p.shape


def _sample_chunk(n: int, c: int, itemsize: int, block_bytes: int) -> int:
    """Transfer samples per chunk so that one (N, chunk*C) operand fits in ``block_bytes``."""
    return max(1, block_bytes // max(1, n * c * itemsize))


def sample_kl(p: np.ndarray, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """d[n, m] = (1/M) sum_i KL(q_n[i] || q_m[i]), q = P smoothed by ``SMOOTH``.

    The smoothing keeps a one-hot peer (e.g. a "shift" liar) at a large but finite distance, bounded by
    about log(1/SMOOTH) = 13.8 nats per sample, so the row statistics below stay finite. For each chunk of
    samples: d += negentropy_n - Q_n @ log(Q_m)^T, one BLAS product of (N, chunk*C) by (chunk*C, N).
    """
    n, m, c = _check(p)
    chunk = _sample_chunk(n, c, 8, block_bytes)
    cross = np.zeros((n, n))
    negent = np.zeros(n)
    for start in range(0, m, chunk):
        q = p[:, start:start + chunk, :].reshape(n, -1) + SMOOTH
        q /= 1.0 + c * SMOOTH
        log_q = np.log(q)
        negent += np.einsum("ij,ij->i", q, log_q)
        cross += q @ log_q.T
    return np.maximum(negent[:, None] - cross, 0.0) / m


def _xlogx(x: np.ndarray) -> np.ndarray:
    """x log x with 0 log 0 = 0 (entries below the dtype's tiny are taken as 0)."""
    return x * np.log(np.maximum(x, np.finfo(x.dtype).tiny))


def sample_js(p: np.ndarray, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """d[n, m] = (1/M) sum_i JS(P_n[i], P_m[i]), JS(a, b) = H((a+b)/2) - (H(a) + H(b))/2, in nats.

    With s = a + b (so that sum_c s = 2 on each sample): sum_c (s/2) log(s/2) = (sum_c s log s)/2 - log 2,
    so each pair needs one pass of s log s over its M*C entries and no other per-pair work. Computed in
    float32 (the precision soft labels travel in) over square tiles of client pairs whose (rows, cols,
    M*C) buffer fits in ``block_bytes``; only tiles on or above the diagonal are computed, then mirrored.
    Entries are floored at 1e-30 once, so 0 log 0 needs no test in the inner loop. Cost: N(N+1)/2 * M * C
    logarithms. Float32 rounding leaves about 1e-7 nats per sample (identical clients come out at ~1e-7,
    below ``SCALE_FLOOR``, so ``row_scale`` still treats them as identical).
    """
    n, m, c = _check(p)
    flat = np.maximum(p.reshape(n, m * c).astype(np.float32), np.float32(1e-30))
    plogp = np.einsum("ij,ij->i", flat.astype(np.float64), np.log(flat.astype(np.float64)))  # -sum_i H(P_n[i])
    tile = min(n, max(1, int(np.sqrt(block_bytes / (4 * m * c)))))
    buf = np.empty((tile, tile, m * c), dtype=np.float32)
    logs = np.empty_like(buf)
    slog = np.zeros((n, n))
    for a in range(0, n, tile):
        rows = flat[a:a + tile]
        for b in range(a, n, tile):
            cols = flat[b:b + tile]
            s = buf[:rows.shape[0], :cols.shape[0]]
            ls = logs[:rows.shape[0], :cols.shape[0]]
            np.add(rows[:, None, :], cols[None, :, :], out=s)
            np.log(s, out=ls)
            block = np.einsum("ijk,ijk->ij", s, ls)
            slog[a:a + tile, b:b + tile] = block
            slog[b:b + tile, a:a + tile] = block.T
    mlogm = 0.5 * slog - m * np.log(2.0)  # sum_i sum_c mix log mix
    js = 0.5 * (plogp[:, None] + plogp[None, :]) - mlogm
    np.fill_diagonal(js, 0.0)
    return np.maximum(js, 0.0) / m


def sample_hellinger(p: np.ndarray, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """d[n, m] = (1/M) sum_i (1 - sum_c sqrt(P_n[i,c] P_m[i,c])), the mean squared Hellinger distance.

    Symmetric and bounded by 1 like JS, but a single product per chunk of samples (sqrt(P) @ sqrt(P)^T).
    """
    n, m, c = _check(p)
    chunk = _sample_chunk(n, c, 8, block_bytes)
    affinity = np.zeros((n, n))
    for start in range(0, m, chunk):
        # rows are checked >= 0 at the door; the clip keeps a rounding-level -0.0 or -1e-45 from a NaN
        root = np.sqrt(np.maximum(p[:, start:start + chunk, :].reshape(n, -1), 0.0))
        affinity += root @ root.T
    return np.clip(1.0 - affinity / m, 0.0, 1.0)


MIN_CLASS_SAMPLES = 5  # class_hellinger: classes with fewer consensus samples are too noisy to count alone


# ``consensus_classes``: above this many clients the median is taken over a fixed random sample of them
CONSENSUS_CLIENTS = 127


def consensus_classes(p: np.ndarray) -> np.ndarray:
    """(M,) the class of each transfer sample by the coordinate-wise median of the N answers.

    The median, not the mean: a minority of colluders (fewer than half) cannot move it. Above
    ``CONSENSUS_CLIENTS`` clients it is the median of a fixed uniform sample of that many (seed 0): at
    N = 1000 the full median cost 0.7 of the fusion's one matrix product, the sample's 0.1. The property
    holds for the sample: a coalition holding a fraction f of all clients holds about f of it (standard
    deviation sqrt(f (1 - f) / 127) <= 0.045), so a 30 % coalition reaches half of the sample with a
    probability below 1e-6. Up to ``CONSENSUS_CLIENTS`` clients every answer counts, as before.
    """
    n = p.shape[0]
    if n > CONSENSUS_CLIENTS:
        p = p[np.sort(np.random.default_rng(0).choice(n, CONSENSUS_CLIENTS, replace=False))]
    return np.median(p, axis=0).argmax(axis=1)


def class_hellinger(p: np.ndarray, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """d[n, m] = max over classes k of (1/|S_k|) sum_{i in S_k} (1 - sum_c sqrt(P_n[i,c] P_m[i,c])).

    S_k: the samples whose consensus class (``consensus_classes``) is k. Classes with fewer than
    ``MIN_CLASS_SAMPLES`` samples are pooled into one "rest" subset, so that no max is taken over a
    handful of images; with no class large enough this is ``sample_hellinger``.
    """
    return class_hellinger_parts(p, block_bytes)[0]


def class_hellinger_parts(p: np.ndarray, block_bytes: int = BLOCK_BYTES,
                          roots: "ClassRoots | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """``class_hellinger`` and, from the same products, ``sample_hellinger`` (the classes partition the
    samples, so the size-weighted mean of the per-class distances is the mean over all samples).

    ``roots`` (``class_roots(p)``) lets a caller that needs sqrt(P) again (``agreement_beyond_chance``) compute
    it once; ``block_bytes`` is unused then: the products run on views of it, one per class.
    """
    n, m, c = _check(p)
    roots = class_roots(p) if roots is None else roots
    least = np.full((n, n), np.inf)  # the smallest per-class mean affinity: the largest distance
    total = np.zeros((n, n))
    for start, stop in roots.spans:
        block = roots.root[:, start:stop, :].reshape(n, -1)  # a view: no copy
        affinity = block @ block.T
        total += affinity
        affinity *= 1.0 / (stop - start)
        np.minimum(least, affinity, out=least)
    # affinities are <= 1 (Cauchy-Schwarz) up to rounding, which the clip removes
    return np.clip(1.0 - least, 0.0, 1.0), np.clip(1.0 - total / m, 0.0, 1.0)


@dataclass(frozen=True)
class ClassRoots:
    """sqrt(P) (N, M, C) with the transfer samples sorted by consensus class, and each class's sample span.

    Why one sorted copy: every class's Hellinger affinities are then a product on a contiguous slice (no
    gather per class), and sums over all samples (``agreement_beyond_chance``) do not depend on their order.
    Costs one (N, M, C) float64 array besides ``p``.
    """

    root: np.ndarray
    spans: tuple[tuple[int, int], ...]


def class_roots(p: np.ndarray) -> ClassRoots:
    """``ClassRoots`` of soft labels (N, M, C); classes with fewer than ``MIN_CLASS_SAMPLES`` consensus
    samples are pooled into one "rest" span, so that no max is taken over a handful of images."""
    n, m, c = _check(p)
    labels = consensus_classes(p)
    counts = np.bincount(labels, minlength=c)
    small = counts < MIN_CLASS_SAMPLES
    labels = np.where(small[labels], c, labels)  # pooled "rest" subset
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(c + 2))
    root = np.take(p, order, axis=1)  # the one gather (C-ordered, so each class's slice is a view)
    # rows are checked >= 0 at the door; the clip keeps a rounding-level -0.0 or -1e-45 from a NaN
    np.sqrt(np.maximum(root, 0.0, out=root), out=root)
    spans = tuple((int(bounds[k]), int(bounds[k + 1])) for k in range(c + 1) if bounds[k + 1] > bounds[k])
    return ClassRoots(root, spans)


def near_duplicate_votes(distance: np.ndarray, frac: float) -> np.ndarray:
    """(N,) how many clients share each client's vote: the size of its group of near-duplicate uploads.

    Two uploads are near-duplicates when their distance is at most ``frac`` times the smaller of the two
    clients' median peer distances (``row_scale``); groups are the connected components of that relation.
    Per row, not over all pairs: a minority of far-off liars (3 of 10 shifting every answer) makes
    nearly half of all pairs liar-to-honest pairs and lifts a median over all pairs so far that honest
    clients of a mild skew became "near-duplicates" of each other and shared one vote; each honest
    row's own median stays among its honest peers. Independent clients
    (their own data, their own model) never answer hundreds of images alike, so a group of them is
    one source of knowledge uploaded several times -- colluders or sybils -- and shares one vote.
    This is FoolsGold's observation (C. Fung, C. J. M. Yoon, I. Beschastnikh, "The Limitations of
    Federated Learning in Sybil Settings", RAID 2020): sybils pursuing one goal upload unusually
    similar contributions, so similarity among contributors is evidence against independence.
    """
    d = np.asarray(distance, dtype=np.float64)
    n = d.shape[0]
    if n < 2 or frac <= 0:
        return np.ones(n)
    scale = row_scale(d)
    limit = frac * np.minimum(scale[:, None], scale[None, :])
    close = (d <= limit) & ~np.eye(n, dtype=bool)
    close |= close.T
    if not close.any():
        return np.ones(n)
    # imported here, where there is a group to find: scipy.sparse costs ~0.25 s to import, in round 1's critical path
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    _, label = connected_components(csr_matrix(close), directed=False)
    return np.bincount(label)[label].astype(np.float64)


DistanceFn = Callable[..., np.ndarray]

DISTANCES: dict[str, DistanceFn] = {
    "profile_kl": profile_kl,
    "sample_kl": sample_kl,
    "sample_js": sample_js,
    "sample_hellinger": sample_hellinger,
    "class_hellinger": class_hellinger,
}
PER_SAMPLE = frozenset({"sample_kl", "sample_js", "sample_hellinger", "class_hellinger"})


def pairwise_distance(name: str, p: np.ndarray, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """The (N, N) distance matrix of the measure ``name`` (one of ``DISTANCES``) on soft labels (N, M, C)."""
    try:
        fn = DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown knfu distance {name!r}; known: {', '.join(DISTANCES)}") from None
    return fn(p, block_bytes=block_bytes)


# ---------------------------------------------------------------- informativeness and scale

def informativeness(p: np.ndarray) -> np.ndarray:
    """kappa_m in [0, 1]: the information client m's answers carry about which image was shown.

    kappa_m = (H(e_m) - (1/M) sum_i H(P_m[i])) / log C, with e_m = mean_i P_m[i]: the mutual information
    between the transfer sample (drawn uniformly) and the class m predicts for it, normalised. It is the
    mean KL of each answer from the client's own average answer. Why this and not plain confidence:
    - an exactly flat client (every row uniform) and a "mimic" that sends one fixed row for every image
      both get 0, however peaked that row is; confidence alone (1 - H/log C) would trust a constant
      one-hot answer completely;
    - an undertrained, nearly flat model gets little (its answers hardly depend on the image);
    - a confident model that tells classes apart gets most, a model that knows only 2 classes at most
      log 2 / log C of it: it can tell fewer images apart, which is what it has to teach.
    Values below ``FLAT_FLOOR`` (rounding of an exactly flat or constant client) are returned as 0.
    """
    n, m, c = _check(p)
    profile = sample_mean(p)
    h_profile = -_xlogx(profile).sum(axis=1)
    # blocks of clients through one reused buffer: no (N, M, C) array of logarithms
    rows = max(1, min(n, BLOCK_BYTES // max(1, p.itemsize * m * c)))
    log_p = np.empty((rows, m, c), dtype=p.dtype)
    h_rows = np.empty(n)
    for start in range(0, n, rows):
        block = p[start:start + rows]
        logs = log_p[:block.shape[0]]
        np.maximum(block, np.finfo(p.dtype).tiny, out=logs)
        np.log(logs, out=logs)
        h_rows[start:start + rows] = -np.einsum("nmc,nmc->n", block, logs) / m
    kappa = np.clip((h_profile - h_rows) / np.log(c), 0.0, 1.0)
    return np.where(kappa < FLAT_FLOOR, 0.0, kappa)


def row_scale(distance: np.ndarray, peers: np.ndarray | None = None) -> np.ndarray:
    """(N,) robust scale of each row: the median of d[n, m] over peers m != n (those with ``peers[m]``).

    Dividing a row by it makes softmax(-beta * d / scale) independent of the distance's units: a peer at
    the row's median distance gets e^-beta times the weight of a peer at distance 0, under every measure.
    The median (not the mean, not the minimum) so that a minority of far-off liars or a minority of
    near-identical copies does not move it. ``peers`` (N,) bool leaves out peers that will get no weight
    anyway (flat ones), so that a flood of them cannot shift the scale. A row with no peer gets 1; the
    scale is never below ``SCALE_FLOOR``, so identical clients (d ~ 1e-16) stay at d ~ 0.
    """
    d = np.asarray(distance, dtype=np.float64)
    n = d.shape[0]
    if n < 2:
        return np.ones(n)
    mask = ~np.eye(n, dtype=bool)
    if peers is None or np.all(peers):
        med = np.median(d[mask].reshape(n, n - 1), axis=1)
    else:
        mask &= np.asarray(peers, dtype=bool)[None, :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows without a peer: All-NaN slice
            med = np.nanmedian(np.where(mask, d, np.nan), axis=1)
        med = np.where(mask.any(axis=1), med, 1.0)
    return np.maximum(med, SCALE_FLOOR)


# ``agreement_factor``: full weight from this many standard errors above ``no_agreement_level``.
Z_RAMP = 2.0


def no_agreement_level(n: int) -> float:
    """The z below which a peer shows no agreement beyond chance, in a pool of ``n`` clients.

    sqrt(2 ln(n - 1)), the universal threshold (D. L. Donoho, I. M. Johnstone, "Ideal spatial adaptation
    by wavelet shrinkage", Biometrika 1994): the largest of n - 1 independent standard normals rarely
    exceeds it, so in a row of peers who all agree only by chance (z ~ N(0, 1) each) hardly any passes,
    at 10 clients (2.1) as at 10,000 (4.3). Never below 1.
    """
    return max(1.0, float(np.sqrt(2.0 * np.log(max(n - 1, 1)))))


def agreement_beyond_chance(p: np.ndarray, affinity: np.ndarray, block_bytes: int = BLOCK_BYTES,
                            root: np.ndarray | None = None) -> np.ndarray:
    """z[n, m]: how far n's and m's answers to the same images agree beyond chance, in standard errors.

    ``affinity`` (N, N) is the mean Hellinger affinity (1 / M) sum_i sum_c sqrt(P_n[i,c] P_m[i,c]) (one minus
    ``sample_hellinger``). Chance is the same two sets of answers with m's shuffled over the images. With
    a(i, j) = sqrt(P_n[i]) . sqrt(P_m[j]), the shuffled mean has expectation s_n . s_m, s_n = (1 / M) sum_i
    sqrt(P_n[i]), and variance mean_{i,j} r(i, j)^2 / (M - 1), r the doubly centred a (Hoeffding's
    permutation variance; W. Hoeffding, "A combinatorial central limit theorem", 1951). With
    G_n = (1 / M) sum_i sqrt(P_n[i]) sqrt(P_n[i])^T (C x C):
    mean r^2 = <G_n, G_m> - s_m' G_n s_m - s_n' G_m s_n + (s_n . s_m)^2, so the whole matrix costs small
    products, (N, C) @ (C, N) and (N, C^2) @ (C^2, N), besides the affinity the distance computed.

    This is Cohen's idea of agreement corrected for chance (J. Cohen, "A coefficient of agreement for
    nominal scales", 1960) applied to soft answers: random rows, a constant answer and a copy of the
    client's marginal agree with it only by chance (z ~ 0), a flipped or shifted answer less than chance
    (z < 0), a peer that knows some of the same images clearly more. A pair whose shuffled affinity does not
    vary (constant answers) gets z = 0.
    """
    n, m, c = _check(p)
    mean_root = np.empty((n, c))
    moment = np.empty((n, c, c))
    if root is not None:  # sqrt(P) already computed (any sample order: these are sums over samples)
        mean_root[:] = sample_mean(root)
        np.matmul(root.transpose(0, 2, 1), root, out=moment)
        moment /= m
    else:
        # blocks of clients (not of samples, as the distances): each client's C x C moment is then one
        # product over all M samples instead of many short ones
        rows = max(1, min(n, block_bytes // max(1, 8 * m * c)))
        for start in range(0, n, rows):
            block = np.sqrt(np.maximum(p[start:start + rows], 0.0))
            mean_root[start:start + rows] = block.mean(axis=1)
            moment[start:start + rows] = np.matmul(block.transpose(0, 2, 1), block) / m
    moment = moment.reshape(n, c * c)
    chance = mean_root @ mean_root.T
    outer = np.einsum("nc,nd->ncd", mean_root, mean_root).reshape(n, c * c)
    row_effect = moment @ outer.T  # [n, m] = s_m' G_n s_m
    variance = np.maximum(moment @ moment.T - row_effect - row_effect.T + chance ** 2, 0.0)
    se = np.sqrt(variance / max(m - 1, 1))
    excess = np.asarray(affinity, dtype=np.float64) - chance
    return np.divide(excess, se, out=np.zeros_like(excess), where=se > 1e-12)


# ``agreement_factor``: the relative cut ramps from ``relative - RELATIVE_RAMP`` to ``relative + RELATIVE_RAMP``.
RELATIVE_RAMP = 0.1


def agreement_factor(z: np.ndarray, prior: np.ndarray | None = None,
                     relative: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, N) factor in [0, 1] on each peer's weight from ``agreement_beyond_chance``, and the rows left as 1.

    0 at z <= ``no_agreement_level(N)``, 1 from ``Z_RAMP`` above it, linear between. With ``relative`` > 0 it
    is also 0 where z[n, m] is below ``relative - RELATIVE_RAMP`` of max_k z[n, k] over n's peers (its
    best-agreeing peer) and 1 from ``relative + RELATIVE_RAMP``, linear between: Cohen's kappa normalised by
    the largest agreement available. Why: a group that labels the classes differently (a conflict) still
    agrees beyond chance on what the images have in common, but at a small fraction of what the client's own
    group shows (0.10-0.34 against 0.87-0.99 with 3 label-permuted groups of digits), while peers that differ
    by the classes they hold (label skew) reach 0.6-0.9 of it from round 2 on. The best peer and not z[n, n]:
    a client with little data answers noisily and agrees with itself far more than with anyone, which cut
    it off from every peer. A row whose best peer shows no agreement (z <= 0) is not cut by this.
    A row in which no peer (with a positive ``prior``) passes gets 1 everywhere: when nobody can be told
    from noise the distances alone decide, as without this factor (the second value lists those rows). The
    diagonal is 1.
    """
    n = np.shape(z)[0]
    if not 0 <= relative < 1:
        raise ValueError(f"relative agreement must be within [0, 1), got {relative}")
    z = np.asarray(z, dtype=np.float64)
    f = np.clip((z - no_agreement_level(n)) / Z_RAMP, 0.0, 1.0)
    if relative > 0 and n > 1:
        peers = z.copy()
        np.fill_diagonal(peers, -np.inf)
        best = peers.max(axis=1, keepdims=True)
        ratio = np.divide(z, best, out=np.ones_like(z), where=best > 0)
        f *= np.clip((ratio - (relative - RELATIVE_RAMP)) / (2 * RELATIVE_RAMP), 0.0, 1.0)
    np.fill_diagonal(f, 0.0)
    usable = f > 0 if prior is None else (f > 0) & (np.asarray(prior) > 0)[None, :]
    fallback = ~usable.any(axis=1)
    f[fallback] = 1.0
    np.fill_diagonal(f, 1.0)
    return f, np.flatnonzero(fallback) if n > 1 else np.arange(0)


NEAREST_GUARD = 0.5  # ``nearest_scale``: the scale never drops below this fraction of the row's median


def nearest_scale(distance: np.ndarray, peers: np.ndarray | None = None, guard: float = NEAREST_GUARD) -> np.ndarray:
    """(N,) scale of each row from its *nearest* peer: max(min_m d[n, m], guard * median_m d[n, m]).

    Why not the median alone: with a group of 2-3 clients among 10, a client's median peer is already in
    another group, so dividing by it caps the odds of its closest peer against another group's peer at
    e^beta, and a more confident other group can win its weight. Scaling by the nearest peer lets the
    client's own group stand out however small it is. The guard keeps neighbour sets from collapsing
    under strong label skew, where everyone's nearest peer is much closer than the rest: the odds of the
    closest peer against a median one are at most e^(beta / guard). When all peers are about equally far
    (no conflict) the nearest peer sits near the median and the weights are nearly those of the median
    scale. Same ``peers`` rule and floor as ``row_scale``.
    """
    d = np.asarray(distance, dtype=np.float64)
    n = d.shape[0]
    median = row_scale(d, peers)
    if n < 2:
        return median
    mask = ~np.eye(n, dtype=bool)
    if peers is not None:
        mask &= np.asarray(peers, dtype=bool)[None, :]
    nearest = np.where(mask, d, np.inf).min(axis=1)
    nearest = np.where(np.isfinite(nearest), nearest, median)
    return np.maximum(np.maximum(nearest, guard * median), SCALE_FLOOR)
