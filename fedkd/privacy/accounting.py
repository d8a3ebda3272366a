"""Privacy accounting for released soft-label matrices.

What is protected
-----------------
The object a client releases in one round is its (M, C) matrix of tempered
probabilities on the public transfer set, with noise added entry-wise by
``fedkd.privacy.swing.add_noise``. We call two such matrices *neighbours* when
they differ in the row of **one transfer sample** (any change to that row, the
other M - 1 rows equal). The guarantee is (epsilon, delta)-DP of the sequence of
released matrices with respect to that relation, i.e. per-sample *output*
privacy: an observer of all the releases cannot tell well whether the client's
answer on any single transfer sample was p or p'.

Sensitivity, enforced by construction: every row fed to the noise is a
probability vector (a softmax, checked by ``swing_protect``), so one row can move
by at most sqrt(2) in L2 (two different one-hot rows) and 2 in L1. These are the
defaults below; ``rows`` widens the relation to k changed rows (sqrt(2k) and 2k).

It is **not** DP of the client's private training set: one private example can
change the model, and with it every row of every release. Nothing here bounds
that; see ``docs/privacy.md``.

Composition
-----------
Each round is one Gaussian (noise multiplier sigma / Delta_2) or Laplace (b /
Delta_1) mechanism without subsampling; rounds compose adaptively. The
composition is done by Google's ``dp_accounting`` (RDP or PLD accountant), never
by a formula of ours. For an un-subsampled additive mechanism the privacy loss
depends only on noise / sensitivity, so our replace-one-row relation is fully
encoded in the noise multiplier and the accountant's default relation label does
not change the numbers.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dp_accounting

# dp_accounting (and the scipy.signal/stats it pulls in) is imported where it is used: it costs ~1.6 s at
# start-up, which every deployed ClientApp process pays each round, and only swing runs account.

__all__ = [
    "ACCOUNTING_BACKENDS",
    "simplex_sensitivity",
    "SoftLabelAccountant",
    "compute_epsilon",
]

from fedkd.privacy.swing import MECHANISMS  # noqa: E402  (the owner of the names)

ACCOUNTING_BACKENDS = ("rdp", "pld")
# Default backend per mechanism: RDP is the usual one for Gaussian noise; for
# Laplace noise RDP is loose, PLD is near-exact.
_DEFAULT_BACKEND = {"gaussian": "rdp", "laplace": "pld"}


def _check_mechanism(mechanism: str) -> str:
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    return mechanism


def _check_nonnegative(value, name: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _check_delta(delta) -> float:
    d = float(delta)
    if not (0.0 < d < 1.0):
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    return d


def simplex_sensitivity(mechanism: str, rows: int = 1) -> float:
    """Sensitivity of a matrix of probability rows when ``rows`` rows may change.

    Any two distributions differ by at most sqrt(2) in L2 and 2 in L1 (two
    distinct one-hot vectors), and rows are independent coordinates, so ``rows``
    changed rows move the matrix by at most sqrt(2 * rows) in L2 and 2 * rows in L1.

    Parameters
    ----------
    mechanism : {"gaussian", "laplace"}
        Gaussian noise is calibrated to the L2 sensitivity, Laplace to the L1 one.
    rows : int, default=1
        How many rows of the released matrix neighbours may differ in.

    Returns
    -------
    sensitivity : float
    """
    _check_mechanism(mechanism)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be an int >= 1, got {rows!r}")
    return math.sqrt(2.0 * rows) if mechanism == "gaussian" else 2.0 * rows


class SoftLabelAccountant:
    """Tracks the privacy spent by one client's soft-label releases, round by round.

    Modelled on Opacus' accountants: tell it what was released with ``step()``
    and ask ``get_epsilon(delta)``.

    Parameters
    ----------
    mechanism : {"gaussian", "laplace"}
        Noise used by ``swing_protect``.
    noise_scale : float
        Gaussian sigma or Laplace b per entry, >= 0. 0 means no noise: epsilon is
        infinite (no guarantee).
    sensitivity : float or None, default=None
        L2 (Gaussian) or L1 (Laplace) sensitivity of one release; None uses
        ``simplex_sensitivity(mechanism)``, i.e. one transfer sample's row.
    backend : {"rdp", "pld"} or None, default=None
        ``dp_accounting`` accountant; None picks RDP for Gaussian and PLD for Laplace.

    Attributes
    ----------
    history : list of dict
        One entry per ``step()``: ``round`` (1-based), ``mechanism``,
        ``noise_scale``, ``sensitivity``, ``noise_multiplier``.

    Examples
    --------
    >>> acc = SoftLabelAccountant("gaussian", noise_scale=2.0)
    >>> for _ in range(10):
    ...     acc.step()
    >>> eps = acc.get_epsilon(delta=1e-5)
    """

    def __init__(self, mechanism: str, noise_scale: float, sensitivity: float | None = None,
                 *, backend: str | None = None):
        self.mechanism = _check_mechanism(mechanism)
        self.noise_scale = _check_nonnegative(noise_scale, "noise_scale")
        if sensitivity is None:
            sensitivity = simplex_sensitivity(mechanism)
        self.sensitivity = _check_nonnegative(sensitivity, "sensitivity")
        if self.sensitivity == 0:
            raise ValueError("sensitivity must be > 0")
        if backend is None:
            backend = _DEFAULT_BACKEND[mechanism]
        if backend not in ACCOUNTING_BACKENDS:
            raise ValueError(f"backend must be one of {ACCOUNTING_BACKENDS}, got {backend!r}")
        self.backend = backend
        self.history: list[dict] = []

    @property
    def noise_multiplier(self) -> float:
        """Configured noise divided by sensitivity (the accountant's parameter)."""
        return self.noise_scale / self.sensitivity

    def step(self, noise_scale: float | None = None) -> None:
        """Record one released soft-label matrix.

        Parameters
        ----------
        noise_scale : float or None, default=None
            Noise actually used in this round, if it differs from the configured one.
        """
        scale = self.noise_scale if noise_scale is None else _check_nonnegative(noise_scale, "noise_scale")
        self.history.append({
            "round": len(self.history) + 1,
            "mechanism": self.mechanism,
            "noise_scale": scale,
            "sensitivity": self.sensitivity,
            "noise_multiplier": scale / self.sensitivity,
        })

    def get_epsilon(self, delta: float) -> float:
        """Epsilon of all rounds so far, composed, at the given ``delta``.

        Returns 0.0 before the first step and ``math.inf`` if any round had no noise.
        """
        delta = _check_delta(delta)
        multipliers = [s["noise_multiplier"] for s in self.history]
        if not multipliers:
            return 0.0
        if min(multipliers) == 0.0:
            return math.inf
        accountant = self._new_accountant()
        accountant.compose(_compose_events(self.mechanism, multipliers))
        return float(accountant.get_epsilon(delta))

    def epsilon_history(self, delta: float) -> list[float]:
        """Cumulative epsilon after each recorded round (for per-round reporting).

        Entry r is what ``get_epsilon(delta)`` returned right after round r + 1.
        """
        delta = _check_delta(delta)
        accountant = self._new_accountant()
        out: list[float] = []
        saw_no_noise = False
        for s in self.history:
            m = s["noise_multiplier"]
            if m == 0.0:
                saw_no_noise = True
            if saw_no_noise:
                out.append(math.inf)
                continue
            accountant.compose(_compose_events(self.mechanism, [m]))
            out.append(float(accountant.get_epsilon(delta)))
        return out

    def _new_accountant(self) -> "dp_accounting.PrivacyAccountant":
        from dp_accounting import pld, rdp

        return rdp.RdpAccountant() if self.backend == "rdp" else pld.PLDAccountant()

    def __repr__(self) -> str:
        return (f"SoftLabelAccountant(mechanism={self.mechanism!r}, noise_scale={self.noise_scale}, "
                f"sensitivity={self.sensitivity:.4g}, backend={self.backend!r}, "
                f"rounds={len(self.history)})")


def _compose_events(mechanism: str, multipliers: list[float]) -> "dp_accounting.DpEvent":
    """One DpEvent for the whole sequence; runs of equal noise become SelfComposed."""
    import dp_accounting

    event_cls = dp_accounting.GaussianDpEvent if mechanism == "gaussian" else dp_accounting.LaplaceDpEvent
    runs: list[list] = []
    for m in multipliers:
        if runs and runs[-1][0] == m:
            runs[-1][1] += 1
        else:
            runs.append([m, 1])
    events = [dp_accounting.SelfComposedDpEvent(event_cls(m), count) for m, count in runs]
    return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)


def compute_epsilon(mechanism: str, noise_scale: float, rounds: int, delta: float,
                    sensitivity: float | None = None, *, backend: str | None = None) -> float:
    """Epsilon after ``rounds`` releases at a fixed noise scale (for tables and planning).

    Same parameters as ``SoftLabelAccountant``; ``rounds`` >= 0.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")
    acc = SoftLabelAccountant(mechanism, noise_scale, sensitivity, backend=backend)
    for _ in range(rounds):
        acc.step()
    return acc.get_epsilon(delta)
