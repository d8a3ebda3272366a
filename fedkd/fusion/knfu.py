"""``knfu``: effective knowledge fusion over semantic neighbours (personalised).

Our reconstruction of KnFu (S. J. Seyedmohammadi, S. K. Atapour, J. Abouei, A. Mohammadi, "KnFu:
Effective Knowledge Fusion", arXiv:2403.11892, 2024; the abstract gives the idea, beta = 10 the paper's
setting): each client distils only from the clients whose knowledge is effective for it.

1. distance d_nm between the knowledge of clients n and m (``distance``, see ``effectiveness``):
   ``profile_kl`` KL between mean class profiles (the original rule), or a per-sample measure
   (``sample_kl``, ``sample_js``, ``sample_hellinger``) that compares the answers to the *same* images;
2. (per-sample measures) d_nm / median_m d_nm, so that beta means the same under every measure;
3. (per-sample measures) a prior kappa_m in [0, 1], how much m's answers depend on the image:
   a flat or constant answer is not knowledge and gets kappa = 0; near-duplicate uploads share one vote;
   an upload that mostly repeats the targets m was sent counts for its own part only (``peer_prior``);
   and a factor a_nm in [0, 1], the evidence that m's answers agree with n's beyond chance (random rows,
   flipped or shifted answers show none; ``effectiveness.agreement_beyond_chance``), which is also 0 for a
   peer under ``relative`` of the agreement n's best peer shows (a conflicting labelling);
4. effectiveness w_nm = a_nm kappa_m exp(-beta d_nm) / sum_k a_nk kappa_k exp(-beta d_nk);
5. neighbours: keep m with w_nm >= tau, renormalise the row;
6. targets_n = sum_m w_nm P_m.

All pairs are computed with matrix products (or, for JS, tiles of bounded memory), never a loop over
pairs, so thousands of clients stay cheap.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .base import FusionResult, check_soft_labels
from .effectiveness import (BLOCK_BYTES, DISTANCES, PER_SAMPLE, agreement_beyond_chance, agreement_factor,
                            class_hellinger_parts, class_roots, informativeness, knowledge_profiles, NEAREST_GUARD,
                            near_duplicate_votes, nearest_scale, pairwise_distance, pairwise_kl, row_scale,
                            sample_hellinger)

SCALES = ("median", "nearest")

# A weight within this relative distance of tau counts as at tau: with identical clients every weight is
# 1/N = tau up to rounding, and BLAS kernels round differently (OPENBLAS_CORETYPE), so an exact
# comparison let the machine decide whether a client kept its peers.
TAU_SLACK = 1e-9
# Uploads closer than this fraction of their median peer distance are near-duplicates (one vote).
DUPLICATE_FRACTION = 0.05

__all__ = ["DISTANCES", "effectiveness_weights", "fuse_knfu", "knowledge_profiles", "knfu_weights",
           "mix_soft_labels", "pairwise_kl"]


def effectiveness_weights(distance: np.ndarray, beta: float, tau: float | None,
                          include_self: bool, log_prior: np.ndarray | None = None) -> np.ndarray:
    """Row-wise softmax(-beta * d + log_prior), thresholded at ``tau`` and renormalised.

    ``tau=None`` means 1/N. ``log_prior`` (N,) adds log kappa_m to every row's score for peer m, or (N, N)
    a prior per pair (-inf: the peer gets no weight); None leaves the original rule unchanged, bit for bit.
    A row with no neighbour left is all zeros.
    """
    n = distance.shape[0]
    scores = -beta * distance
    if log_prior is not None:
        scores = scores + (log_prior if np.ndim(log_prior) == 2 else log_prior[None, :])
    if not include_self:
        np.fill_diagonal(scores, -np.inf)
    finite = np.isfinite(scores)
    row_max = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    w = np.where(finite, np.exp(scores - row_max), 0.0)
    totals = w.sum(axis=1, keepdims=True)
    w = np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)
    threshold = 1.0 / n if tau is None else tau
    # The top neighbour always survives, so a large tau cannot silence a client.
    keep = (w >= threshold * (1.0 - TAU_SLACK)) | (w >= w.max(axis=1, keepdims=True) * (1.0 - TAU_SLACK))
    w = np.where(keep & (w > 0), w, 0.0)
    totals = w.sum(axis=1, keepdims=True)
    return np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)


def knfu_weights(distance: np.ndarray, beta: float, tau: float | None, include_self: bool, *,
                 kappa: np.ndarray | None = None, normalise: bool = True,
                 votes: np.ndarray | None = None, scale: str = "median",
                 guard: float = NEAREST_GUARD, agreement: np.ndarray | None = None) -> np.ndarray:
    """(N, N) KnFu weights from a distance matrix, with the scale and flat-answer rules.

    normalise: divide row n by ``row_scale`` (median distance to n's informative peers), so that a peer
               at the row's median distance gets e^-beta of the weight of a peer at distance 0 under every
               measure; without it beta is in the measure's own units (nats of KL, a bounded JS, ...).
    kappa:     (N,) informativeness of each peer (``effectiveness.informativeness``), used as a prior
               weight: w_nm is proportional to kappa_m exp(-beta d_nm). A peer with kappa = 0 (exactly flat
               or constant answers) gets no weight whatever its distance; None = all peers alike.
    scale:     ``median`` (``row_scale``) or ``nearest`` (``nearest_scale``: the nearest peer, guarded by
               half the median; finds a group of 2-3 among 10).
    votes:     (N,) how many uploads share each peer's vote (``effectiveness.near_duplicate_votes``): the
               prior is divided by it, so k copies of one answer weigh what one copy would.
    agreement: (N, N) factor in [0, 1] on the weight row n gives peer m (``effectiveness.agreement_factor``).
    """
    d = np.asarray(distance, dtype=np.float64)
    peers = None if kappa is None else kappa > 0
    if scale not in SCALES:
        raise ValueError(f"unknown knfu scale {scale!r}; known: {', '.join(SCALES)}")
    if normalise:
        d = d / (nearest_scale(d, peers, guard) if scale == "nearest" else row_scale(d, peers))[:, None]
    log_prior = None
    if kappa is not None or votes is not None or agreement is not None:
        prior = np.ones(d.shape[0]) if kappa is None else np.asarray(kappa, dtype=np.float64)
        if votes is not None:
            prior = prior / np.asarray(votes, dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_prior = np.log(prior)
            if agreement is not None:
                log_prior = log_prior[None, :] + np.log(np.asarray(agreement, dtype=np.float64))
    return effectiveness_weights(d, beta, tau, include_self, log_prior)


def mix_soft_labels(weights: np.ndarray, p: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """targets[n] = sum_m weights[n, m] * p[m] for (N, N) weights and (N, M, C) soft labels.

    One BLAS matrix product on the (N, M*C) view: ``np.einsum`` without
    ``optimize`` runs this as a plain C loop, about 10x slower at N=1000.
    In float32, the precision of the uploads and of the targets sent back: a float64 product
    (2.2x the time of float32 at N = 1000 here) would be rounded to float32 at once. The
    accumulation error, about sqrt(N) float32 epsilons of a row's entries (2e-6 at N = 1000),
    is far below the row-sum tolerance (``fedkd.probability.ROW_SUM_TOLERANCE``, 1e-3). ``dtype=np.float64``
    keeps the original ``profile_kl`` rule's targets bit for bit.
    Returns float32 (N, M, C).
    """
    n, m, c = p.shape
    mixed = np.asarray(weights, dtype=dtype) @ np.asarray(p, dtype=dtype).reshape(n, m * c)
    return mixed.reshape(n, m, c).astype(np.float32, copy=False)


def fuse_knfu(soft_labels: np.ndarray, n_samples: np.ndarray | None = None,
              beta: float = 10.0, tau: float | None = None,
              include_self: bool = False, distance: str = "profile_kl",
              normalise: bool | None = None, discount_flat: bool | None = None,
              one_vote: bool | None = None, scale: str = "median", guard: float = NEAREST_GUARD,
              agreement: bool | None = None, relative: float = 0.0, self_share: float = 0.0,
              peer_prior: np.ndarray | None = None, block_bytes: int = BLOCK_BYTES) -> FusionResult:
    """Personalised targets from each client's semantic neighbours.

    soft_labels:   (N, M, C) probabilities on the shared transfer set.
    n_samples:     unused (KnFu weighs knowledge, not data size); accepted like every fusion rule.
    beta:          sharpness of the effectiveness softmax (the paper uses 10). With ``normalise`` it is in
                   units of the row's median distance: a peer at the median gets e^-beta of the weight of
                   a peer at distance 0, and two peers whose distances differ by a fraction f of the
                   median get weights in the ratio e^(beta f) (before kappa).
    tau:           neighbour threshold on the weights (None = 1/N).
    include_self:  whether a client may be its own neighbour. Including it lets a strongly skewed
                   client pick only itself (pure self-distillation).
    distance:      ``profile_kl`` (default: the original rule, unchanged bit for bit), ``sample_kl``,
                   ``sample_js``, ``sample_hellinger`` or ``class_hellinger`` (per-class agreement; see
                   ``fedkd.fusion.effectiveness``).
    normalise:     divide each row by its median peer distance (None: on for per-sample measures, off
                   for ``profile_kl`` so that the original rule keeps its results).
    discount_flat: weight each peer by its informativeness kappa (None: on for per-sample measures, off
                   for ``profile_kl``). A flat answer is close to everything under KL and JS, so without
                   it an undertrained or "knows nothing" client is everyone's favourite neighbour.
    scale:         how a row is normalised (per-sample measures): ``median`` or ``nearest`` (see knfu_weights).
    guard:         ``nearest`` only: the scale is never below this fraction of the row's median.
    one_vote:      near-duplicate uploads share one vote (None: on for per-sample measures): colluders
                   who upload one answer k times weigh what one of them would.
    agreement:     weigh each peer by the evidence that its answers agree with the client's beyond chance
                   (None: on for per-sample measures): an answer unrelated to the image (random rows) or
                   contradicting it (flip, shift) gets no weight even when its distance is middling, as
                   after one round of local training under label skew, where honest clients differ
                   almost as much. A row where no peer shows such agreement keeps the distances alone.
    relative:      with ``agreement``: a peer whose z is under ``relative`` (a ramp of +-0.1) of the z of the
                   client's best-agreeing peer gets no weight (``effectiveness.agreement_factor``); 0 = off.
                   A group that labels classes differently agrees beyond chance only on what the images have
                   in common; peers that hold other classes agree far more (docs/algorithms.md).
    self_share:    a client's targets are (1 - self_share) x its neighbours' mix + self_share x its own answer
                   (0 = off). Only where it has neighbours: its own answer alone is no target. Under strong
                   skew a client is often the only one that knows its classes, and its neighbours' mix gets
                   them wrong in round 1; FedMD's average keeps 1/N of the client's own (docs/algorithms.md).
    peer_prior:    (N,) factors in [0, 1] on every row's weight for peer m (None = all 1): the server's share of
                   each upload that is the client's own rather than a repetition of the targets it was sent
                   (``fedkd.fusion.echoes.own_shares``), so that a blurred echo, close to everyone by
                   construction, gains nothing by it. It multiplies kappa (and never lifts a flat answer).
    block_bytes:   working memory of one block of the per-sample measures.
    Returns targets (N, M, C) float32 and the (N, N) weight matrix (the neighbour graph); a client whose
    peers are all flat (or, with self excluded, who is alone) gets no targets.
    """
    if not 0 < guard <= 1:
        raise ValueError(f"knfu guard must be in (0, 1], got {guard}")
    if not beta >= 0:
        raise ValueError(f"knfu beta must be >= 0, got {beta}")
    if tau is not None and not 0 <= tau <= 1:
        raise ValueError(f"knfu tau must be in [0, 1], got {tau}")
    if not 0 <= self_share < 1:
        raise ValueError(f"knfu self_share must be in [0, 1), got {self_share}")
    if distance not in DISTANCES:
        raise ValueError(f"unknown knfu distance {distance!r}; known: {', '.join(DISTANCES)}")
    p = check_soft_labels(soft_labels)
    own = _checked_prior(peer_prior, p.shape[0])
    per_sample = distance in PER_SAMPLE
    normalise = per_sample if normalise is None else bool(normalise)
    discount_flat = per_sample if discount_flat is None else bool(discount_flat)
    one_vote = per_sample and (one_vote is None or bool(one_vote))
    agreement = per_sample and (agreement is None or bool(agreement))
    info: dict = {}
    kappa = None
    original = distance == "profile_kl" and not normalise and not discount_flat
    if original:
        # The original rule, kept operation for operation so its results stay bit-identical.
        with np.errstate(divide="ignore"):
            w = effectiveness_weights(pairwise_kl(knowledge_profiles(p)), beta, tau, include_self,
                                      None if own is None else np.log(own))
    else:
        mean_hellinger = roots = None
        # kappa's logarithms run on a second core while this one finds the consensus classes and the
        # square roots (numpy lets go of the GIL in both; they take about 0.4 of a product each at N = 1000);
        # the matrix products after them use every core on their own
        with ThreadPoolExecutor(max_workers=1) as helper:
            kappa_job = helper.submit(informativeness, p) if discount_flat else None
            if distance == "class_hellinger":
                roots = class_roots(p)  # sqrt(P) once, for the distances and the agreement test
            kappa = None if kappa_job is None else kappa_job.result()
        prior = kappa if own is None else own if kappa is None else kappa * own
        if roots is not None:  # the per-class products also give the mean over all samples
            d, mean_hellinger = class_hellinger_parts(p, block_bytes, roots)
        else:
            d = pairwise_distance(distance, p, block_bytes)
        votes = near_duplicate_votes(d, DUPLICATE_FRACTION) if one_vote else None
        factor = None
        if agreement:
            if mean_hellinger is None:
                mean_hellinger = d if distance == "sample_hellinger" else sample_hellinger(p, block_bytes)
            z = agreement_beyond_chance(p, 1.0 - mean_hellinger, block_bytes,
                                        None if roots is None else roots.root)
            factor, fallback = agreement_factor(z, prior, relative)
            if fallback.size:
                info["agreement_fallback"] = fallback.tolist()
        w = knfu_weights(d, beta, tau, include_self, kappa=prior, normalise=normalise, votes=votes, scale=scale,
                         guard=guard, agreement=factor)
        if kappa is not None:
            info["informativeness"] = [round(float(k), 4) for k in kappa]
        if own is not None:
            info["own_share"] = {str(i): round(float(own[i]), 4) for i in np.flatnonzero(own < 1)}
        if votes is not None and np.any(votes > 1):
            info["shared_votes"] = votes.astype(int).tolist()
    has = w.sum(axis=1) > 0
    neighbours = (w > 0).sum(axis=1)
    if self_share > 0:  # the weight matrix stays the description of the targets (diagonal = own share)
        w = w * np.where(has, 1.0 - self_share, 1.0)[:, None]
        w[np.diag_indices_from(w)] += np.where(has, self_share, 0.0)
        info["self_share"] = self_share
    # the original rule mixes in float64 as it always did; the others in the uploads' float32 (no copy)
    targets = mix_soft_labels(w, p, np.float64) if original else mix_soft_labels(w, soft_labels)
    info = {"neighbour_counts": neighbours.tolist(), "mean_neighbours": float(neighbours.mean()),
            "distance": distance, **info}
    if not has.all():
        info["without_targets"] = _why_without_targets(has, kappa, include_self)
    return FusionResult(targets=targets, has_targets=has, weights=w, info=info)


def _checked_prior(peer_prior: np.ndarray | None, n: int) -> np.ndarray | None:
    """``peer_prior`` as float64 (N,) in [0, 1], or None where it is absent or all ones (the rule unchanged)."""
    if peer_prior is None:
        return None
    own = np.asarray(peer_prior, dtype=np.float64)
    if own.shape != (n,) or not np.all((own >= 0) & (own <= 1)):
        raise ValueError(f"knfu peer_prior must be {n} factors within [0, 1], got {own}")
    return None if np.all(own == 1) else own


def _why_without_targets(has: np.ndarray, kappa: np.ndarray | None, include_self: bool) -> dict[str, str]:
    """{row: reason} for every row left without targets (the server logs and records it per client)."""
    n = has.shape[0]
    why = {}
    for i in np.flatnonzero(~has):
        peers = np.ones(n, dtype=bool)
        if not include_self:
            peers[i] = False
        if not peers.any():
            why[str(i)] = "no peer to learn from (alone in the pool, self excluded)"
        elif kappa is not None and not np.any(kappa[peers] > 0):
            why[str(i)] = "every peer's answers are flat (informativeness 0)"
        else:
            why[str(i)] = "no peer's weight survived the neighbour threshold"
    return why
