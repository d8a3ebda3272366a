"""An empirical lower bound on ε from one training run (one-run privacy auditing).

After Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023).
m canaries are candidates; each is included in the training data independently with
probability 1/2. After the one run, the auditor scores every candidate (higher = "included"),
guesses "included" for its k₊ highest scores and "excluded" for its k₋ lowest, and abstains on
the rest. If the algorithm is (ε, δ)-DP, the number W of correct guesses among the r = k₊ + k₋
made is (up to a δ term) stochastically dominated by Binomial(r, e^ε / (1 + e^ε)) — the accuracy
of ε-randomised response (their Theorem 3.1 for δ = 0, Theorem 3.3 with the δ term). So seeing
W = v correct guesses rejects ε at confidence 1 − β when

    P[Binomial(r, q_ε) ≥ v] + 2 m δ · α_v(ε) < β,   q_ε = e^ε / (1 + e^ε),
    α_v(ε) = max_{1≤i≤v} P[v − i ≤ Binomial(r, q_ε) < v] / i,

and the lower bound is the largest ε rejected. Abstaining is what makes the bound tight: only
the most confident guesses are counted, so a few canaries that clearly stand out suffice.

The number of guesses must not be tuned on the outcome; :func:`one_run_audit` tries a few
fixed guess counts and pays for the choice with a Bonferroni correction (β divided by their
number), which keeps the 95 % statement honest.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["p_value", "epsilon_lower_bound", "one_run_audit", "DEFAULT_GUESS_FRACTIONS"]

# Fractions of the m candidates guessed (half "included", half "excluded"), fixed in advance.
DEFAULT_GUESS_FRACTIONS = (0.1, 0.2, 0.5, 1.0)


def p_value(m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    """Probability of ≥ v correct guesses out of r under (ε, δ)-DP (Steinke et al., Theorem 3.3).

    Parameters
    ----------
    m : candidates, each included with probability 1/2.
    r : guesses made (abstentions excluded), r ≤ m.
    v : correct guesses, v ≤ r.
    eps, delta : the DP guarantee of the null hypothesis.
    """
    if not (0 <= v <= r <= m):
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need eps >= 0 and delta in [0, 1], got {eps!r}, {delta!r}")
    q = 1.0 / (1.0 + math.exp(-eps))
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Bin(r, q) >= v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v-1], P[Bin = v-2], ...
    alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(tail + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95,
                        eps_max: float = 100.0) -> float:
    """The largest ε that v correct guesses out of r reject at ``confidence`` (0 if none).

    Bisection on :func:`p_value`, which decreases as ε falls. ``eps_max`` caps the search: a
    bound at the cap means "at least that" (every guess right on many candidates).
    """
    beta = 1.0 - confidence
    if not 0 < beta < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if r == 0 or p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    if p_value(m, r, v, eps_max, delta) < beta:
        return float(eps_max)
    lo, hi = 0.0, float(eps_max)  # p(lo) < beta <= p(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


def one_run_audit(scores, included, *, delta: float = 0.0, confidence: float = 0.95,
                  guess_fractions: Sequence[float] = DEFAULT_GUESS_FRACTIONS) -> dict:
    """Turn per-canary scores from one run into an empirical ε lower bound.

    Parameters
    ----------
    scores : (m,) array, higher = the auditor believes the canary was included.
    included : (m,) bool array, the coin flips (each True with probability 1/2).
    delta : δ of the DP hypothesis being tested (the accounted δ).
    confidence : of the lower bound (0.95 = 95 %).
    guess_fractions : guess counts to try, as fractions of m, fixed in advance; the bound is
        the best over them at confidence 1 − β / len(guess_fractions) each (Bonferroni).

    Returns
    -------
    dict with ``lower_bound``, ``canaries`` (m), ``included`` (how many were),
    ``guesses`` and ``correct`` of the best guess count, ``confidence``, ``delta`` and
    ``by_guesses`` (every guess count tried with its correct guesses and bound).
    """
    scores = np.asarray(scores, np.float64).ravel()
    included = np.asarray(included, bool).ravel()
    m = scores.size
    if included.shape != (m,) or m == 0:
        raise ValueError(f"scores and included must be equally long and non-empty, got {m} and {included.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    fractions = [float(f) for f in guess_fractions]
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"guess_fractions must lie in (0, 1], got {guess_fractions!r}")
    per_test = 1.0 - (1.0 - confidence) / len(fractions)
    # Ties are broken at random (a fixed seed), so equal scores never favour the truth.
    order = np.lexsort((np.random.default_rng(0).random(m), scores))  # ascending
    rows, best = [], None
    for f in fractions:
        k = max(1, int(round(f * m / 2)))  # k "excluded" guesses at the bottom, k "included" at the top
        k = min(k, m // 2) or 1
        low, high = order[:k], order[m - k:]
        correct = int((~included[low]).sum() + included[high].sum())
        r = int(len(set(low.tolist()) | set(high.tolist())))
        correct = min(correct, r)
        eps = epsilon_lower_bound(m, r, correct, delta=delta, confidence=per_test)
        row = {"guesses": r, "correct": correct, "lower_bound": eps}
        rows.append(row)
        if best is None or eps > best["lower_bound"]:
            best = row
    return {"lower_bound": best["lower_bound"], "canaries": int(m), "included": int(included.sum()),
            "guesses": best["guesses"], "correct": best["correct"], "confidence": float(confidence),
            "delta": float(delta), "by_guesses": rows}
