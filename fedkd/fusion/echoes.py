"""An upload that repeats the targets the server sent is not knowledge: find such echoes before fusing.

A client's targets are a mix of its neighbours' answers. A client that uploads them back (``fault.kind=echo``)
sits close to exactly the clients it was fused from, so a rule that weighs peers by closeness gives it more
weight than any honest peer (1.4-1.9x under KnFu's default in the round it first echoes; docs/robustness.md
§6c), for knowledge it does not have: its neighbours' answers would be counted twice. The server knows what it
sent each client, so it can see the repetition directly: the mean squared Hellinger distance between a
client's upload and the targets it was sent (KnFu's ``sample_hellinger``),
d_m = (1/M) sum_i (1 - sum_c sqrt(P_m[i, c] t_m[i, c])).
Honest clients distil towards their targets but also learn from their own data, and their d_m are of one
order; an echo's is about 0. A client is an echo when d_m < ``tolerance`` x the median d over the round's
clients that were sent targets (at least ``MIN_CLIENTS`` of them; relative, like the near-duplicate vote of
``fedkd.fusion.effectiveness``, so no scale of the distances is assumed). Its upload is left out of the fusion
that round; the round record lists it (``echoes``) and the server log says so per client.

Between an echo and an honest client: ``own_shares``. The Hellinger distance magnifies a small blur on
near-zero entries, so an echo blurred with 5-10 % of random rows (``fault.echo_noise``) sits at 0.08-0.4 of
the median, where honest clients under strong skew sit too (down to 0.2), and KnFu's closeness gave it up to
1.64x an honest peer's weight (docs/robustness.md §6c). So below ``ramp`` x the median an upload weighs as a peer only in
proportion, d / (ramp x median): its distance from what it was sent is the part of it that is its own, and a
peer is credited for its own part only. Rules that weigh peers by closeness take this as a prior on each
peer's weight (``FusionRule.peer_prior``; KnFu); FedMD's and DS-FL's averages give every upload one share
anyway, so an echo cannot gain there. On the validation split 5 % of honest client-rounds sat below 0.5 of
the median (the lowest at 0.2), and no ramp from 0.25 to 1 cost accuracy; 0.5 is the smallest that covers a
10 % blur (docs/robustness.md §6c, "The echo ramp").

What none of this catches: echoes that are most of the round's clients (the median is then an echo's), and an
answer that stays far from its own targets but is built some other way to sit close to everyone.
"""
from __future__ import annotations

import numpy as np

from .effectiveness import sample_hellinger

MIN_CLIENTS = 3  # fewer clients with targets give no median to compare against
ROUNDING = 1e-9  # a median distance this small is rounding (everyone repeats their targets), not a scale


def distance_to_targets(upload: np.ndarray, sent: np.ndarray) -> float:
    """KnFu's ``sample_hellinger`` between two (M, C) answers (in float64: an exact echo gives 0, not rounding)."""
    return float(sample_hellinger(np.stack([upload, sent]).astype(np.float64))[0, 1])


def repetition(uploads: dict[int, np.ndarray], sent: dict[int, np.ndarray]) -> dict[int, float]:
    """{client: d_client / median d} for every upload whose client was sent targets (see the module doc).

    Empty when fewer than ``MIN_CLIENTS`` clients were sent targets, or when the median is rounding (most
    clients repeat their targets: nothing to compare against).
    """
    d = {c: distance_to_targets(p, sent[c]) for c, p in uploads.items() if c in sent}
    if len(d) < MIN_CLIENTS:
        return {}
    scale = float(np.median(list(d.values())))
    if scale <= ROUNDING:
        return {}
    return {c: v / scale for c, v in sorted(d.items())}


def find_echoes(uploads: dict[int, np.ndarray], sent: dict[int, np.ndarray],
                tolerance: float) -> dict[int, float]:
    """{client: d_client / median d} for the uploads that repeat the targets they were sent (see the module doc).

    uploads: this round's valid uploads by client; sent: the targets each client was sent this round (a client
    sent none is never an echo); tolerance: 0 turns the check off.
    """
    return echoes_among(repetition(uploads, sent), tolerance) if tolerance > 0 else {}


def echoes_among(ratios: dict[int, float], tolerance: float) -> dict[int, float]:
    """The entries of ``repetition``'s ratios under ``tolerance`` (0 = none): the echoes."""
    return {c: r for c, r in ratios.items() if r < tolerance} if tolerance > 0 else {}


def own_shares(ratios: dict[int, float], tolerance: float, ramp: float) -> dict[int, float]:
    """{client: share in [0, 1)} for the uploads between ``tolerance`` and ``ramp`` x the median: r / ramp.

    ``ratios`` are ``repetition``'s; an upload below ``tolerance`` is an echo (left out, not shared) and one at
    ``ramp`` or beyond is wholly its own (not listed). ``ramp`` 0 turns the shares off.
    """
    if ramp <= 0:
        return {}
    return {c: r / ramp for c, r in ratios.items() if (tolerance <= 0 or r >= tolerance) and r < ramp}
