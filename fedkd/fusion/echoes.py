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

What it does not catch: an echo blurred with enough of its own answer or noise, or echoes that are most of
the round's clients (the median is then an echo's). The Hellinger distance magnifies a small blur on
near-zero entries: 10 % of random rows (``fault.echo_noise``) already put an echo at 0.3-0.7 of the median,
inside the honest clients' range, and it then gets up to 1.3x an honest peer's weight under KnFu
(docs/robustness.md §6c, "Blurred echoes").
"""
from __future__ import annotations

import numpy as np

from .effectiveness import sample_hellinger

MIN_CLIENTS = 3  # fewer clients with targets give no median to compare against
ROUNDING = 1e-9  # a median distance this small is rounding (everyone repeats their targets), not a scale


def distance_to_targets(upload: np.ndarray, sent: np.ndarray) -> float:
    """KnFu's ``sample_hellinger`` between two (M, C) answers (in float64: an exact echo gives 0, not rounding)."""
    return float(sample_hellinger(np.stack([upload, sent]).astype(np.float64))[0, 1])


def find_echoes(uploads: dict[int, np.ndarray], sent: dict[int, np.ndarray],
                tolerance: float) -> dict[int, float]:
    """{client: d_client / median d} for the uploads that repeat the targets they were sent (see the module doc).

    uploads: this round's valid uploads by client; sent: the targets each client was sent this round (a client
    sent none is never an echo); tolerance: 0 turns the check off.
    """
    if tolerance <= 0:
        return {}
    d = {c: distance_to_targets(p, sent[c]) for c, p in uploads.items() if c in sent}
    if len(d) < MIN_CLIENTS:
        return {}
    scale = float(np.median(list(d.values())))
    if scale <= ROUNDING:  # most clients repeat their targets: nothing to compare against
        return {}
    return {c: v / scale for c, v in sorted(d.items()) if v < tolerance * scale}
