"""Swing distillation for classification: protect a client's soft labels before upload.

The pipeline for one round, all vectorised over the M transfer samples:

1. ``privacy_scores``: s_i in [0, 1], how much more confident the client's model
   is on transfer sample i than a model that saw no private data would be.
2. ``adaptive_temperatures``: T_i = T_min + (T_max - T_min) * s_i, so samples on
   which the client looks "too sure" are flattened harder.
3. ``tempered_softmax``: p_i = softmax(z_i / T_i); every row lies on the simplex,
   which is what bounds the sensitivity used by ``fedkd.privacy.accounting``.
4. ``add_noise``: Gaussian or Laplace noise on the probabilities (never on the
   logits: logits have no bounded sensitivity, so noise there would buy no
   guarantee).
5. ``renormalise``: clip-and-renormalise or Euclidean projection back onto the
   simplex, so that what leaves the client is again a valid distribution. This
   step only post-processes the noisy release, so it costs no privacy.

``swing_protect`` chains the five steps. Steps 1-3 are a deterministic function
of the client's model; the formal guarantee comes from step 4 alone (see
``docs/privacy.md`` for what it does and does not cover).
"""
from __future__ import annotations

import numpy as np

from fedkd.probability import softmax

__all__ = [
    "MECHANISMS",
    "POSTPROCESSING",
    "privacy_scores",
    "adaptive_temperatures",
    "tempered_softmax",
    "add_noise",
    "clip_and_renormalise",
    "project_to_simplex",
    "renormalise",
    "swing_protect",
]

MECHANISMS = ("gaussian", "laplace")
POSTPROCESSING = ("clip", "project")


# ----------------------------------------------------------------------------
# input checks (the boundary; everything below them is plain array code)
# ----------------------------------------------------------------------------
def _check_matrix(arr, name: str) -> np.ndarray:
    """Return ``arr`` as a finite float64 (M, C) array with M >= 1 and C >= 2."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"{name} must be shaped (M, C), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 2:
        raise ValueError(f"{name} needs M >= 1 rows and C >= 2 classes, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _check_scale(value, name: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _check_mechanism(mechanism: str) -> str:
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    return mechanism


def _as_generator(rng) -> np.random.Generator:
    """Accept an int seed or a ``numpy.random.Generator``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}")


# ----------------------------------------------------------------------------
# 1. privacy score
# ----------------------------------------------------------------------------
def privacy_scores(client_logits, reference_logits=None) -> np.ndarray:
    """Per-sample privacy score s_i in [0, 1] on the transfer set.

    With a reference model (one that saw no private data, e.g. the client's model
    before any private training, or a model distilled only on public targets) the
    score is the *normalised excess confidence* of the client on its own top-1
    class k_i = argmax_c client_logits[i, c]::

        s_i = clip((p_i[k_i] - r_i[k_i]) / (1 - r_i[k_i]), 0, 1)

    where p = softmax(client_logits) and r = softmax(reference_logits). The
    numerator is how much probability the private data added to the client's
    answer; the denominator is the most it could have added, so s_i = 1 means
    "certain where public knowledge alone was not" and s_i = 0 means "no more
    confident than public knowledge". The reference is read at the *client's*
    class, not at its own top-1: a client that is sure of class 3 where the
    public model is sure of class 5 is revealing something private, and comparing
    two top-1 confidences would miss it. Where the reference is already certain
    (r_i[k_i] = 1) nothing can be added and s_i = 0.

    Without a reference the fallback is the normalised top-1 confidence::

        s_i = (max_c p_i[c] - 1/C) / (1 - 1/C)

    i.e. 0 for a uniform row and 1 for a one-hot row. This treats every confident
    answer as private-looking; it over-protects samples that are easy for any
    model, which costs accuracy but never privacy.

    Parameters
    ----------
    client_logits : array-like of shape (M, C)
        Raw logits of the client's model on the M transfer samples.
    reference_logits : array-like of shape (M, C) or None, default=None
        Logits of the reference model on the same samples, or None for the
        fallback score.

    Returns
    -------
    scores : ndarray of shape (M,), float64
        Values in [0, 1].
    """
    z = _check_matrix(client_logits, "client_logits")
    p = softmax(z)
    top = p.argmax(axis=1)
    rows = np.arange(p.shape[0])
    conf = p[rows, top]
    if reference_logits is None:
        c = p.shape[1]
        s = (conf - 1.0 / c) / (1.0 - 1.0 / c)
        return np.clip(s, 0.0, 1.0)

    zr = _check_matrix(reference_logits, "reference_logits")
    if zr.shape != z.shape:
        raise ValueError(
            f"reference_logits must have the same shape as client_logits {z.shape}, got {zr.shape}"
        )
    ref_conf = softmax(zr)[rows, top]
    headroom = 1.0 - ref_conf
    excess = conf - ref_conf
    # Where the reference is already (numerically) certain there is no headroom: score 0.
    safe = headroom > 1e-12
    s = np.zeros_like(conf)
    s[safe] = excess[safe] / headroom[safe]
    return np.clip(s, 0.0, 1.0)


# ----------------------------------------------------------------------------
# 2. temperatures
# ----------------------------------------------------------------------------
def adaptive_temperatures(scores, t_min: float, t_max: float) -> np.ndarray:
    """Map privacy scores to per-sample temperatures, T_i = t_min + (t_max - t_min) * s_i.

    Linear, hence monotone non-decreasing in s_i and inside [t_min, t_max].

    Parameters
    ----------
    scores : array-like of shape (M,)
        Privacy scores in [0, 1] (see ``privacy_scores``).
    t_min : float
        Temperature for samples that look public (s = 0); must be > 0.
    t_max : float
        Temperature for the most private-looking samples (s = 1); must be >= t_min.

    Returns
    -------
    temperatures : ndarray of shape (M,), float64
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] < 1:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("scores must be finite and lie in [0, 1]")
    t_min = float(t_min)
    t_max = float(t_max)
    if not np.isfinite(t_min) or t_min <= 0:
        raise ValueError(f"t_min must be a finite number > 0, got {t_min!r}")
    if not np.isfinite(t_max) or t_max < t_min:
        raise ValueError(f"t_max must be finite and >= t_min={t_min}, got {t_max!r}")
    return t_min + (t_max - t_min) * s


# ----------------------------------------------------------------------------
# 3. tempered softmax
# ----------------------------------------------------------------------------
def tempered_softmax(logits, temperatures) -> np.ndarray:
    """Row-wise softmax(z_i / T_i) with one temperature per row.

    Parameters
    ----------
    logits : array-like of shape (M, C)
        Raw logits.
    temperatures : float or array-like of shape (M,)
        Positive temperatures; a scalar applies to every row.

    Returns
    -------
    probs : ndarray of shape (M, C), float32
        Rows are probability distributions.
    """
    z = _check_matrix(logits, "logits")
    t = np.asarray(temperatures, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(z.shape[0], float(t))
    if t.shape != (z.shape[0],):
        raise ValueError(
            f"temperatures must be a scalar or shaped ({z.shape[0]},), got shape {t.shape}"
        )
    if not np.all(np.isfinite(t)) or t.min() <= 0:
        raise ValueError("temperatures must be finite and > 0")
    p = softmax(z / t[:, None])
    return _renormalise_float32(p)


# ----------------------------------------------------------------------------
# 4. noise
# ----------------------------------------------------------------------------
def add_noise(probs, mechanism: str, scale: float, rng) -> np.ndarray:
    """Add i.i.d. zero-mean noise to every entry of ``probs``.

    ``"gaussian"``: N(0, scale^2), so ``scale`` is the standard deviation sigma.
    ``"laplace"``: Laplace(0, scale), density exp(-|x|/b) / (2b) with b = scale;
    its standard deviation is sqrt(2) * b.

    The result is *not* a distribution any more; pass it through ``renormalise``.
    It is kept separate so that the noise itself can be checked.

    Parameters
    ----------
    probs : array-like of shape (M, C)
        Tempered probabilities (any finite matrix is accepted).
    mechanism : {"gaussian", "laplace"}
    scale : float
        Gaussian sigma or Laplace b, >= 0. 0 returns an unchanged copy.
    rng : int or numpy.random.Generator
        Seed or generator; the same seed gives the same noise.

    Returns
    -------
    noisy : ndarray of shape (M, C)
        Same floating dtype as ``probs`` (float32 stays float32, float64 stays float64).
    """
    _check_mechanism(mechanism)
    scale = _check_scale(scale, "scale")
    arr = np.asarray(probs)
    out_dtype = np.result_type(arr.dtype, np.float32)
    p = _check_matrix(arr, "probs")
    gen = _as_generator(rng)
    if scale == 0.0:
        return p.astype(out_dtype)
    if mechanism == "gaussian":
        noise = gen.normal(0.0, scale, size=p.shape)
    else:
        noise = gen.laplace(0.0, scale, size=p.shape)
    return (p + noise).astype(out_dtype)


# ----------------------------------------------------------------------------
# 5. back onto the simplex
# ----------------------------------------------------------------------------
def _renormalise_float32(p: np.ndarray) -> np.ndarray:
    """Cast to float32 and divide once more, so rows sum to 1 in float32 too."""
    p32 = p.astype(np.float32)
    return p32 / p32.sum(axis=1, keepdims=True)


def clip_and_renormalise(values) -> np.ndarray:
    """Clip negatives to 0 and divide each row by its sum.

    A row with no positive entry left (all mass clipped away) carries no usable
    information, so it becomes the uniform distribution 1/C.

    Parameters
    ----------
    values : array-like of shape (M, C)

    Returns
    -------
    probs : ndarray of shape (M, C), float32
    """
    v = np.clip(_check_matrix(values, "values"), 0.0, None)
    sums = v.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0.0
    v[empty] = 1.0
    sums[empty] = v.shape[1]
    return _renormalise_float32(v / sums)


def project_to_simplex(values) -> np.ndarray:
    """Euclidean projection of every row onto the probability simplex.

    Returns argmin_q ||q - v_i||_2 over {q >= 0, sum q = 1}, computed for all rows
    at once with the sort-based algorithm (Held et al. 1974; Duchi et al. 2008):
    the projection is max(v - theta, 0) for the unique theta that makes the row sum
    to 1. Unlike clip-and-renormalise it shifts every entry by the same amount, so
    positive noise on the wrong classes is removed rather than kept; the result is
    usually sparser and keeps more of the signal. A row that is already a
    distribution is returned unchanged.

    Parameters
    ----------
    values : array-like of shape (M, C)

    Returns
    -------
    probs : ndarray of shape (M, C), float32
    """
    v = _check_matrix(values, "values")
    c = v.shape[1]
    u = -np.sort(-v, axis=1)  # descending
    cumulative = np.cumsum(u, axis=1) - 1.0
    ks = np.arange(1, c + 1, dtype=np.float64)
    # Entries that stay positive form a prefix of the sorted row; rho = its length (>= 1).
    support = u - cumulative / ks > 0
    rho = support.sum(axis=1)
    theta = cumulative[np.arange(v.shape[0]), rho - 1] / rho
    q = np.maximum(v - theta[:, None], 0.0)
    return _renormalise_float32(q)


def renormalise(values, method: str = "clip") -> np.ndarray:
    """Map noisy rows back to distributions with ``method`` in {"clip", "project"}.

    See ``clip_and_renormalise`` and ``project_to_simplex``.
    """
    if method == "clip":
        return clip_and_renormalise(values)
    if method == "project":
        return project_to_simplex(values)
    raise ValueError(f"method must be one of {POSTPROCESSING}, got {method!r}")


# ----------------------------------------------------------------------------
# the whole pipeline
# ----------------------------------------------------------------------------
def swing_protect(
    logits,
    *,
    reference_logits=None,
    t_min: float,
    t_max: float,
    mechanism: str,
    noise_scale: float,
    seed,
    postprocess: str = "clip",
):
    """Turn a client's logits on the transfer set into protected soft labels.

    Parameters
    ----------
    logits : array-like of shape (M, C)
        The client's logits on the M transfer samples.
    reference_logits : array-like of shape (M, C) or None, default=None
        Logits of a model that saw no private data; None selects the fallback
        score (normalised top-1 confidence). See ``privacy_scores``.
    t_min, t_max : float
        Temperature range, 0 < t_min <= t_max. t_min = t_max gives plain
        distillation at one temperature.
    mechanism : {"gaussian", "laplace"}
        Noise added to the tempered probabilities.
    noise_scale : float
        Gaussian sigma or Laplace b (per entry). 0 adds no noise and therefore
        gives no formal guarantee (the accountant reports epsilon = inf).
    seed : int or numpy.random.Generator
        Source of the noise; the same seed gives the same output.
    postprocess : {"clip", "project"}, default="clip"
        How noisy rows are mapped back to distributions (see ``renormalise``).

    Returns
    -------
    protected : ndarray of shape (M, C), float32
        Rows are distributions (non-negative, summing to 1).
    info : dict
        ``mean_score``, ``mean_temperature``, ``min_temperature``,
        ``max_temperature``, ``top1_agreement`` (fraction of rows whose argmax
        survived the noise), ``mechanism``, ``noise_scale``: plain floats/strings
        for the run record.
    """
    _check_mechanism(mechanism)
    noise_scale = _check_scale(noise_scale, "noise_scale")
    if postprocess not in POSTPROCESSING:
        raise ValueError(f"postprocess must be one of {POSTPROCESSING}, got {postprocess!r}")
    gen = _as_generator(seed)

    scores = privacy_scores(logits, reference_logits)
    temperatures = adaptive_temperatures(scores, t_min, t_max)
    tempered = tempered_softmax(logits, temperatures)
    # The accountant's sensitivity (sqrt(2) in L2, 2 in L1 per row) holds only for
    # rows on the simplex; a softmax always is, but check rather than assume.
    if tempered.min() < 0 or np.abs(tempered.sum(axis=1, dtype=np.float64) - 1.0).max() > 1e-5:
        raise RuntimeError("tempered probabilities left the simplex; the sensitivity bound would not hold")
    noisy = add_noise(tempered.astype(np.float64), mechanism, noise_scale, gen)
    protected = renormalise(noisy, postprocess)

    info = {
        "mean_score": float(scores.mean()),
        "mean_temperature": float(temperatures.mean()),
        "min_temperature": float(temperatures.min()),
        "max_temperature": float(temperatures.max()),
        "top1_agreement": float(np.mean(protected.argmax(axis=1) == tempered.argmax(axis=1))),
        "mechanism": mechanism,
        "noise_scale": noise_scale,
    }
    return protected, info
