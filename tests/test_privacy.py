"""Tests for fedkd.privacy: swing distillation, accounting and canary exposure."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.datasets import load_digits

import dp_accounting
from fedkd.privacy import (
    SoftLabelAccountant,
    adaptive_temperatures,
    add_noise,
    canary_exposure,
    clip_and_renormalise,
    compute_epsilon,
    exposure,
    make_canaries,
    make_canary_set,
    make_references,
    per_sample_losses,
    plant,
    privacy_scores,
    project_to_simplex,
    renormalise,
    simplex_sensitivity,
    swing_protect,
    tempered_softmax,
)


def _confident_logits(m=64, c=10, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, (m, c))
    z[np.arange(m), rng.integers(0, c, m)] += rng.uniform(0.0, 8.0, m)
    return z.astype(np.float32)


def _assert_distributions(p, atol=1e-5):
    assert p.dtype == np.float32
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=atol)


# ----------------------------------------------------------------------------
# privacy scores
# ----------------------------------------------------------------------------
def test_fallback_score_is_normalised_top1_confidence():
    c = 4
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    s = privacy_scores(logits)
    top1 = np.exp(1.0) / (np.exp(1.0) + 3)
    np.testing.assert_allclose(s, [0.0, 1.0, (top1 - 1 / c) / (1 - 1 / c)], atol=1e-9)


def test_fallback_score_grows_with_the_margin():
    margins = np.linspace(0.0, 10.0, 21)
    logits = np.zeros((21, 5))
    logits[:, 2] = margins
    s = privacy_scores(logits)
    assert np.all(np.diff(s) > 0)
    assert s.min() >= 0 and s.max() <= 1


def test_reference_score_measures_excess_confidence_at_the_clients_class():
    client = np.array([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    reference = np.array([[4.0, 0.0, 0.0],    # same model: nothing private
                          [0.0, 0.0, 0.0],    # public model knows nothing
                          [0.0, 9.0, 0.0],    # public model sure of another class
                          [6.0, 0.0, 0.0]])   # client less sure than public model
    s = privacy_scores(client, reference)
    p = np.exp(4.0) / (np.exp(4.0) + 2)
    r_other = 1.0 / (np.exp(9.0) + 2)
    np.testing.assert_allclose(s[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(s[1], (p - 1 / 3) / (1 - 1 / 3), rtol=1e-9)
    np.testing.assert_allclose(s[2], (p - r_other) / (1 - r_other), rtol=1e-9)
    assert s[3] == 0.0
    assert s[2] > s[1]  # disagreeing with public knowledge looks more private


def test_reference_score_is_zero_where_reference_is_certain():
    client = np.array([[800.0, 0.0]])
    reference = np.array([[900.0, 0.0]])
    assert privacy_scores(client, reference)[0] == 0.0


def test_privacy_scores_reject_bad_input():
    with pytest.raises(ValueError, match="client_logits"):
        privacy_scores(np.zeros(5))
    with pytest.raises(ValueError, match="reference_logits"):
        privacy_scores(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        privacy_scores(np.array([[np.nan, 0.0]]))


# ----------------------------------------------------------------------------
# temperatures and tempered softmax
# ----------------------------------------------------------------------------
def test_temperatures_are_monotone_and_bounded():
    s = np.sort(np.random.default_rng(0).uniform(0, 1, 500))
    s = np.concatenate([[0.0], s, [1.0]])
    t = adaptive_temperatures(s, 1.5, 6.0)
    assert np.all(np.diff(t) >= 0)
    assert t.min() >= 1.5 and t.max() <= 6.0
    assert t[0] == 1.5 and t[-1] == 6.0
    np.testing.assert_allclose(adaptive_temperatures(s, 2.0, 2.0), 2.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scores=[0.5], t_min=0.0, t_max=1.0), "t_min"),
    (dict(scores=[0.5], t_min=2.0, t_max=1.0), "t_max"),
    (dict(scores=[1.5], t_min=1.0, t_max=2.0), "scores"),
    (dict(scores=[[0.5]], t_min=1.0, t_max=2.0), "scores"),
])
def test_temperatures_reject_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adaptive_temperatures(**kwargs)


def test_tempered_softmax_matches_per_row_softmax():
    z = _confident_logits(32, 7)
    t = np.random.default_rng(1).uniform(0.5, 5.0, 32)
    p = tempered_softmax(z, t)
    expected = torch.softmax(torch.from_numpy(z).double() / torch.from_numpy(t)[:, None], dim=1).numpy()
    np.testing.assert_allclose(p, expected, atol=1e-6)
    _assert_distributions(p)


def test_tempered_softmax_is_stable_and_flattens_with_temperature():
    z = np.array([[1e4, 0.0, -1e4]] * 3)
    p = tempered_softmax(z, np.array([1.0, 1e3, 1e5]))
    assert np.all(np.isfinite(p))
    _assert_distributions(p)
    entropy = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)
    assert entropy[0] < entropy[1] < entropy[2]
    with pytest.raises(ValueError, match="temperatures"):
        tempered_softmax(z, np.array([1.0, 0.0, 1.0]))


# ----------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------
def test_gaussian_noise_matches_configured_scale():
    probs = np.full((400, 500), 0.1)
    sigma = 0.3
    noise = add_noise(probs, "gaussian", sigma, rng=0) - probs
    assert abs(noise.mean()) < 0.01 * sigma
    assert noise.std() == pytest.approx(sigma, rel=0.01)
    # the whole distribution, not only its second moment
    assert stats.kstest(noise.ravel()[:20000], "norm", args=(0.0, sigma)).pvalue > 1e-3
    assert stats.kstest(noise.ravel()[:20000], "norm", args=(0.0, 1.2 * sigma)).pvalue < 1e-6


def test_laplace_noise_matches_configured_scale():
    probs = np.full((400, 500), 0.1)
    b = 0.2
    noise = add_noise(probs, "laplace", b, rng=np.random.default_rng(3)) - probs
    assert np.abs(noise).mean() == pytest.approx(b, rel=0.01)  # E|X| = b
    assert noise.std() == pytest.approx(math.sqrt(2) * b, rel=0.01)
    assert stats.kstest(noise.ravel()[:20000], "laplace", args=(0.0, b)).pvalue > 1e-3
    assert stats.kstest(noise.ravel()[:20000], "norm", args=(0.0, math.sqrt(2) * b)).pvalue < 1e-6


def test_noise_is_seeded_and_zero_scale_is_identity():
    probs = tempered_softmax(_confident_logits(), 1.0)
    a = add_noise(probs, "gaussian", 0.1, rng=7)
    b = add_noise(probs, "gaussian", 0.1, rng=7)
    c = add_noise(probs, "gaussian", 0.1, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(add_noise(probs, "laplace", 0.0, rng=7), probs)
    with pytest.raises(ValueError, match="mechanism"):
        add_noise(probs, "uniform", 0.1, rng=0)
    with pytest.raises(ValueError, match="scale"):
        add_noise(probs, "gaussian", -1.0, rng=0)
    with pytest.raises(ValueError, match="rng"):
        add_noise(probs, "gaussian", 0.1, rng="seed")


# ----------------------------------------------------------------------------
# back onto the simplex
# ----------------------------------------------------------------------------
def test_clip_and_renormalise_rows_are_distributions():
    v = np.array([[0.5, -0.2, 0.7], [-1.0, -0.1, -3.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]])
    p = clip_and_renormalise(v)
    _assert_distributions(p)
    np.testing.assert_allclose(p[0], [0.5 / 1.2, 0.0, 0.7 / 1.2], atol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, atol=1e-7)  # nothing positive left: uniform
    np.testing.assert_allclose(p[2], 1 / 3, atol=1e-7)
    np.testing.assert_allclose(p[3], [0.5, 0.5, 0.0], atol=1e-7)


def test_projection_known_cases_and_fixed_points():
    v = np.array([[0.5, 0.5, 0.5], [2.0, 0.0, 0.0], [0.6, 0.6, -1.0], [0.2, 0.3, 0.5]])
    p = project_to_simplex(v)
    np.testing.assert_allclose(p, [[1 / 3] * 3, [1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]], atol=1e-6)


def test_projection_is_the_nearest_distribution():
    rng = np.random.default_rng(5)
    v = rng.normal(0.1, 0.6, (50, 6))
    q = project_to_simplex(v).astype(np.float64)
    _assert_distributions(q.astype(np.float32))
    candidates = rng.dirichlet(np.full(6, 0.5), size=(2000,))
    best_other = np.linalg.norm(v[:, None, :] - candidates[None], axis=2).min(axis=1)
    assert np.all(np.linalg.norm(v - q, axis=1) <= best_other + 1e-6)


def test_renormalise_dispatches_and_rejects_unknown_method():
    v = np.array([[0.9, -0.1, 0.3]])
    np.testing.assert_array_equal(renormalise(v, "clip"), clip_and_renormalise(v))
    np.testing.assert_array_equal(renormalise(v, "project"), project_to_simplex(v))
    with pytest.raises(ValueError, match="method"):
        renormalise(v, "softmax")


# ----------------------------------------------------------------------------
# the whole pipeline
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
@pytest.mark.parametrize("postprocess", ["clip", "project"])
@pytest.mark.parametrize("with_reference", [False, True])
def test_swing_outputs_are_distributions(mechanism, postprocess, with_reference):
    z = _confident_logits(128, 10)
    ref = _confident_logits(128, 10, seed=1) if with_reference else None
    q, info = swing_protect(z, reference_logits=ref, t_min=1.0, t_max=4.0, mechanism=mechanism,
                            noise_scale=0.5, seed=11, postprocess=postprocess)
    assert q.shape == (128, 10)
    _assert_distributions(q)
    again, _ = swing_protect(z, reference_logits=ref, t_min=1.0, t_max=4.0, mechanism=mechanism,
                             noise_scale=0.5, seed=11, postprocess=postprocess)
    np.testing.assert_array_equal(q, again)
    other, _ = swing_protect(z, reference_logits=ref, t_min=1.0, t_max=4.0, mechanism=mechanism,
                             noise_scale=0.5, seed=12, postprocess=postprocess)
    assert not np.array_equal(q, other)
    assert 0.0 <= info["mean_score"] <= 1.0
    assert 1.0 <= info["min_temperature"] <= info["mean_temperature"] <= info["max_temperature"] <= 4.0
    assert 0.0 <= info["top1_agreement"] <= 1.0


def test_swing_without_noise_is_plain_tempered_softmax():
    z = _confident_logits()
    q, info = swing_protect(z, t_min=2.0, t_max=2.0, mechanism="gaussian", noise_scale=0.0, seed=0)
    np.testing.assert_allclose(q, torch.softmax(torch.from_numpy(z).double() / 2.0, 1).numpy(), atol=1e-6)
    assert info["mean_temperature"] == 2.0 and info["top1_agreement"] == 1.0


def test_swing_flattens_private_looking_samples_harder():
    client = np.array([[6.0, 0.0, 0.0, 0.0]] * 2)
    reference = np.array([[6.0, 0.0, 0.0, 0.0],    # public knowledge explains it
                          [0.0, 0.0, 0.0, 0.0]])   # only private data explains it
    q, _ = swing_protect(client, reference_logits=reference, t_min=1.0, t_max=5.0,
                         mechanism="laplace", noise_scale=0.0, seed=0)
    assert q[1, 0] < q[0, 0]
    assert q[1].argmax() == q[0].argmax() == 0


def test_more_noise_destroys_more_top1_answers():
    z = _confident_logits(2000, 10)
    agreement = [swing_protect(z, t_min=1.0, t_max=1.0, mechanism="gaussian", noise_scale=s,
                               seed=0)[1]["top1_agreement"] for s in (0.01, 0.1, 1.0)]
    assert agreement[0] > agreement[1] > agreement[2]


def test_swing_rejects_bad_configuration():
    z = _confident_logits()
    with pytest.raises(ValueError, match="mechanism"):
        swing_protect(z, t_min=1, t_max=2, mechanism="exponential", noise_scale=0.1, seed=0)
    with pytest.raises(ValueError, match="noise_scale"):
        swing_protect(z, t_min=1, t_max=2, mechanism="gaussian", noise_scale=-0.1, seed=0)
    with pytest.raises(ValueError, match="postprocess"):
        swing_protect(z, t_min=1, t_max=2, mechanism="gaussian", noise_scale=0.1, seed=0,
                      postprocess="round")
    with pytest.raises(ValueError, match="t_max"):
        swing_protect(z, t_min=3, t_max=2, mechanism="gaussian", noise_scale=0.1, seed=0)


# ----------------------------------------------------------------------------
# accounting
# ----------------------------------------------------------------------------
def test_simplex_sensitivity_is_the_widest_gap_between_distributions():
    assert simplex_sensitivity("gaussian") == pytest.approx(math.sqrt(2))
    assert simplex_sensitivity("laplace") == 2.0
    assert simplex_sensitivity("gaussian", rows=8) == pytest.approx(4.0)
    # no two random distributions are further apart than the bound, one-hot pairs reach it
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.full(10, 0.1), size=(2, 5000))
    assert np.linalg.norm(p - q, axis=1).max() <= math.sqrt(2)
    assert np.abs(p - q).sum(axis=1).max() <= 2.0
    with pytest.raises(ValueError, match="rows"):
        simplex_sensitivity("gaussian", rows=0)


@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
def test_epsilon_falls_with_noise_and_rises_with_rounds(mechanism):
    by_noise = [compute_epsilon(mechanism, s, rounds=5, delta=1e-5) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(by_noise, by_noise[1:]))
    by_rounds = [compute_epsilon(mechanism, 2.0, rounds=r, delta=1e-5) for r in (1, 2, 5, 20)]
    assert all(a < b for a, b in zip(by_rounds, by_rounds[1:]))


def test_smaller_delta_costs_more_epsilon():
    acc = SoftLabelAccountant("gaussian", noise_scale=2.0)
    for _ in range(5):
        acc.step()
    eps = [acc.get_epsilon(d) for d in (1e-3, 1e-5, 1e-7)]
    assert eps[0] < eps[1] < eps[2]
    for bad in (0.0, 1.0, -1e-5):
        with pytest.raises(ValueError, match="delta"):
            acc.get_epsilon(bad)


def test_laplace_single_round_is_pure_l1_over_b():
    # One Laplace release with L1 sensitivity 2 and scale b is (2/b, 0)-DP.
    for b in (1.0, 4.0):
        eps = compute_epsilon("laplace", b, rounds=1, delta=1e-9)
        assert eps == pytest.approx(2.0 / b, rel=1e-3)


def test_gaussian_accounting_uses_the_l2_sensitivity():
    sigma, delta = 3.0, 1e-5
    eps = compute_epsilon("gaussian", sigma, rounds=1, delta=delta)
    same = compute_epsilon("gaussian", sigma / math.sqrt(2), rounds=1, delta=delta, sensitivity=1.0)
    assert eps == pytest.approx(same)
    # RDP is an upper bound on the exact (analytic) Gaussian epsilon, and not a loose one
    exact = dp_accounting.get_epsilon_gaussian(sigma / math.sqrt(2), delta)
    assert exact <= eps <= 1.5 * exact
    pld = compute_epsilon("gaussian", sigma, rounds=1, delta=delta, backend="pld")
    assert pld == pytest.approx(exact, rel=0.02)


def test_accountant_history_and_no_noise_means_no_guarantee():
    acc = SoftLabelAccountant("laplace", noise_scale=8.0)
    assert acc.get_epsilon(1e-5) == 0.0
    for _ in range(3):
        acc.step()
    assert [h["round"] for h in acc.history] == [1, 2, 3]
    assert acc.history[0]["noise_multiplier"] == pytest.approx(4.0)
    curve = acc.epsilon_history(1e-5)
    assert curve == sorted(curve) and curve[-1] == pytest.approx(acc.get_epsilon(1e-5))
    acc.step(noise_scale=0.0)
    assert acc.get_epsilon(1e-5) == math.inf
    assert acc.epsilon_history(1e-5)[-1] == math.inf
    assert compute_epsilon("gaussian", 0.0, rounds=1, delta=1e-5) == math.inf
    with pytest.raises(ValueError, match="backend"):
        SoftLabelAccountant("gaussian", 1.0, backend="moments")
    with pytest.raises(ValueError, match="noise_scale"):
        SoftLabelAccountant("gaussian", -1.0)


# ----------------------------------------------------------------------------
# canaries
# ----------------------------------------------------------------------------
def test_canaries_are_seeded_random_patterns():
    x, y = make_canaries(5, (1, 8, 8), 10, seed=3)
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() < 1 and y.min() >= 0 and y.max() < 10
    x2, y2 = make_canaries(5, (1, 8, 8), 10, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    rx, _ = make_references(5, (1, 8, 8), 10, seed=3)
    assert not np.allclose(rx, x)  # same seed, different stream
    with pytest.raises(ValueError, match="input_shape"):
        make_canaries(5, (8, 8), 10, seed=3)
    with pytest.raises(ValueError, match="k must"):
        make_canaries(0, (1, 8, 8), 10, seed=3)


def test_plant_appends_repeated_canaries():
    x = np.zeros((7, 1, 4, 4), np.float32)
    y = np.arange(7, dtype=np.int64) % 3
    cx, cy = make_canaries(2, (1, 4, 4), 3, seed=0)
    xp, yp = plant(x, y, cx, cy, repeats=4)
    assert xp.shape == (15, 1, 4, 4) and yp.shape == (15,)
    np.testing.assert_array_equal(xp[:7], x)
    for i in range(2):
        hits = np.all(xp == cx[i], axis=(1, 2, 3))
        assert hits.sum() == 4 and np.all(yp[hits] == cy[i])
    with pytest.raises(ValueError, match="canary_x"):
        plant(x, y, np.zeros((2, 1, 5, 5), np.float32), cy, repeats=1)


def test_exposure_ranks_and_ties():
    refs = np.arange(1.0, 256.0 + 1)  # R = 256 references, losses 1..256
    e = exposure([0.5, 1.0, 300.0, 128.5], refs)
    np.testing.assert_allclose(e, [8.0,                       # below every reference: max
                                   8.0 - 1.0,                 # tie counts against the canary
                                   8.0 - math.log2(257),      # above every reference: minimum
                                   8.0 - math.log2(129)])
    rng = np.random.default_rng(0)
    c, r = rng.normal(size=50), rng.normal(size=300)
    looped = [math.log2(300) - math.log2(1 + np.sum(r <= ci)) for ci in c]
    np.testing.assert_allclose(exposure(c, r), looped)


def test_per_sample_losses_match_cross_entropy_and_keep_the_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    model.train()
    x = np.random.default_rng(0).random((9, 1, 4, 4), dtype=np.float32)
    y = np.arange(9, dtype=np.int64) % 5
    losses = per_sample_losses(model, x, y, batch_size=4)
    with torch.no_grad():
        expected = F.cross_entropy(model(torch.from_numpy(x)).double(), torch.from_numpy(y), reduction="none")
    # float32 logits may differ in the last bit between batch sizes
    np.testing.assert_allclose(losses, expected.numpy(), rtol=1e-6)
    assert model.training
    with pytest.raises(ValueError, match="classes"):
        per_sample_losses(model, x, np.full(9, 7, np.int64))


def _train_mlp(x, y, epochs, seed):
    """A plain full-capacity MLP fit, enough to memorise repeated canaries."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            idx = order[start:start + 64]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model


@pytest.fixture(scope="module")
def digits_300():
    d = load_digits()
    x = (d.images[:300] / 16.0).astype(np.float32)[:, None]
    return x, d.target[:300].astype(np.int64)


def test_memorised_canary_is_exposed_and_unplanted_one_is_not(digits_300):
    x, y = digits_300
    cs = make_canary_set(k=4, n_references=256, repeats=20, input_shape=(1, 8, 8), num_classes=10, seed=0)
    control_x, control_y = make_canaries(8, (1, 8, 8), 10, seed=1)  # same construction, never planted
    xp, yp = plant(x, y, cs.canary_x, cs.canary_y, cs.repeats)

    planted_model = _train_mlp(xp, yp, epochs=40, seed=0)
    planted = canary_exposure(planted_model, cs.canary_x, cs.canary_y, cs.reference_x, cs.reference_y)
    control = canary_exposure(planted_model, control_x, control_y, cs.reference_x, cs.reference_y)
    assert planted["max_possible"] == cs.max_exposure == 8.0
    assert planted["mean"] >= 5.0            # near the top of the 8-bit scale
    assert control["mean"] < 2.5             # a random draw averages ~1.44 bits

    # the same canaries in a model that never saw them sit among the references
    clean_model = _train_mlp(x, y, epochs=40, seed=0)
    clean = canary_exposure(clean_model, cs.canary_x, cs.canary_y, cs.reference_x, cs.reference_y)
    assert clean["mean"] < 3.0
    assert planted["mean"] - clean["mean"] > 3.0
