"""One-run auditing (Steinke, Nasr and Jagielski, NeurIPS 2023): the bound on known mechanisms."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fedkd.audit.one_run import epsilon_lower_bound, one_run_audit, p_value


def test_p_value_is_the_binomial_tail_without_delta():
    # 10 guesses all right under eps = 0 (fair coins): 2^-10.
    assert p_value(100, 10, 10, 0.0) == pytest.approx(2 ** -10)
    assert p_value(100, 10, 0, 1.0) == 1.0
    assert p_value(100, 10, 8, 1.0, delta=1e-5) > p_value(100, 10, 8, 1.0)
    with pytest.raises(ValueError):
        p_value(10, 11, 3, 1.0)


def test_bound_is_monotone_and_capped():
    assert epsilon_lower_bound(1000, 100, 50) == 0.0  # a coin's accuracy rejects nothing
    low, high = epsilon_lower_bound(1000, 100, 80), epsilon_lower_bound(1000, 100, 95)
    assert 0 < low < high
    # 100 of 100 right: the largest eps with q^100 < 0.05, q = e^eps / (1 + e^eps).
    q = 0.05 ** (1 / 100)
    assert epsilon_lower_bound(1000, 100, 100) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    assert epsilon_lower_bound(10000, 10000, 10000, eps_max=5.0) == 5.0


@pytest.mark.parametrize("eps", [1.0, 3.0])
def test_randomised_response_bound_is_below_the_true_epsilon(eps):
    """Each candidate's own eps-DP randomised response: accounting covers the canaries exactly."""
    rng = np.random.default_rng(0)
    m = 2000
    included = rng.random(m) < 0.5
    truthful = rng.random(m) < math.exp(eps) / (1 + math.exp(eps))
    scores = np.where(truthful, included, ~included).astype(float) + 1e-3 * rng.random(m)
    res = one_run_audit(scores, included)
    assert 0 < res["lower_bound"] <= eps
    assert res["lower_bound"] > 0.4 * eps  # and it is not vacuous with 2,000 canaries
    assert res["canaries"] == m and res["guesses"] >= res["correct"]


def test_gaussian_mechanism_with_delta():
    """Score = inclusion + N(0, sigma^2): (eps, delta) from the accountant upper-bounds the audit."""
    from fedkd.privacy.accounting import compute_epsilon

    rng = np.random.default_rng(1)
    m, sigma, delta = 1000, 0.5, 1e-5
    included = rng.random(m) < 0.5
    scores = included + rng.normal(0, sigma, m)
    accounted = compute_epsilon("gaussian", sigma, 1, delta, sensitivity=1.0)
    res = one_run_audit(scores, included, delta=delta)
    assert 0 < res["lower_bound"] <= accounted


def test_scores_that_never_saw_the_canaries_give_zero():
    rng = np.random.default_rng(2)
    values = []
    for seed in range(5):
        included = np.random.default_rng(seed).random(500) < 0.5
        values.append(one_run_audit(rng.normal(size=500), included)["lower_bound"])
    assert max(values) < 0.5 and np.mean(values) < 0.2


def test_replayed_client_plain_leaks_and_noise_bounds_it():
    """The replay behind the run audit: a memorising client's plain uploads give eps_lb > 0; uploads
    with heavy noise stay under the training-set accounting of that noise."""
    from fedkd.audit.empirical_epsilon import empirical_epsilon, replay_scores
    from fedkd.data import load_dataset
    from fedkd.models import build_model
    from fedkd.privacy.accounting import compute_epsilon, simplex_sensitivity
    from fedkd.privacy.canaries import make_canaries
    from fedkd.privacy.release import plain_soft_labels
    from fedkd.privacy.swing import swing_protect

    ds = load_dataset("digits")
    x, y = np.array(ds.x_train[:200]), np.array(ds.y_train[:200])
    m, sigma = 100, 2.0
    cand_x, cand_y = make_canaries(m, x.shape[1:], 10, seed=3)
    included = np.random.default_rng(3).random(m) < 0.5
    transfer = np.array(ds.x_train[200:300])

    def noisy(z, r):
        return swing_protect(z, t_min=3.0, t_max=3.0, mechanism="gaussian", noise_scale=sigma, seed=r)[0]

    scores = replay_scores(lambda: build_model("mlp", x.shape[1:], 10, seed=0), x, y, transfer, cand_x, cand_y,
                           included, repeats=5, rounds=2, epochs_per_round=15,
                           releases={"plain": lambda z, r: plain_soft_labels(z, 3.0), "noisy": noisy},
                           batch_size=16, lr=3e-3, seed=0)
    res = empirical_epsilon(scores, included, delta=1e-5)
    assert res["plain"]["lower_bound"] > 1.0
    covering = compute_epsilon("gaussian", sigma, 2, 1e-5,
                               sensitivity=simplex_sensitivity("gaussian", rows=len(transfer) + m))
    assert res["noisy"]["lower_bound"] <= covering
