"""Fusion rules on small hand-computed cases."""
import numpy as np
import pytest

from fedkd.fusion import fuse, fuse_dsfl, fuse_fedmd, fuse_knfu, fuse_local
from fedkd.fusion.knfu import knowledge_profiles, pairwise_kl


def random_soft_labels(n, m, c, seed=0, concentration=1.0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, concentration), size=(n, m)).astype(np.float32)


def test_local_sends_nothing():
    r = fuse_local(random_soft_labels(3, 4, 5))
    assert r.targets is None and not r.has_targets.any()


def test_fedmd_is_the_mean_hand_computed():
    p = np.array([[[1.0, 0.0], [0.5, 0.5]],
                  [[0.0, 1.0], [0.5, 0.5]]], dtype=np.float32)
    r = fuse_fedmd(p)
    expected = np.array([[0.5, 0.5], [0.5, 0.5]])
    for n in range(2):
        np.testing.assert_allclose(r.targets[n], expected)
    weighted = fuse_fedmd(p, n_samples=np.array([3, 1]), weighted=True)
    np.testing.assert_allclose(weighted.targets[0, 0], [0.75, 0.25])


def test_dsfl_sharpens_the_mean_hand_computed():
    p = np.array([[[0.6, 0.4]], [[0.8, 0.2]]], dtype=np.float32)  # mean (0.7, 0.3)
    r = fuse_dsfl(p, temperature=0.5)
    expected = np.array([0.49, 0.09]) / 0.58  # mean squared, renormalised
    np.testing.assert_allclose(r.targets[0, 0], expected, rtol=1e-5)
    assert r.targets[0, 0, 0] > 0.7  # sharper than the plain mean
    np.testing.assert_allclose(fuse_dsfl(p, temperature=1.0).targets[0, 0], [0.7, 0.3], rtol=1e-5)


def test_knfu_hand_computed_two_clients_with_self():
    # profiles e_0 = (0.5, 0.5), e_1 = (0.9, 0.1); KL(e0||e1) computed by hand
    p = np.array([[[0.5, 0.5]], [[0.9, 0.1]]], dtype=np.float32)
    d01 = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    d10 = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    beta = 1.0
    r = fuse_knfu(p, beta=beta, tau=0.0, include_self=True)
    w0 = np.array([1.0, np.exp(-beta * d01)]); w0 /= w0.sum()
    w1 = np.array([np.exp(-beta * d10), 1.0]); w1 /= w1.sum()
    np.testing.assert_allclose(r.weights, np.stack([w0, w1]), rtol=1e-5)
    np.testing.assert_allclose(r.targets[0, 0], w0 @ p[:, 0], rtol=1e-5)


@pytest.mark.parametrize("algorithm", ["fedmd", "dsfl", "knfu"])
def test_targets_rows_are_distributions(algorithm):
    r = fuse(algorithm, random_soft_labels(6, 20, 10, seed=1))
    np.testing.assert_allclose(r.targets.sum(axis=2), 1.0, atol=1e-5)
    assert (r.targets >= 0).all()
    np.testing.assert_allclose(r.weights.sum(axis=1), 1.0, atol=1e-9)


def test_identical_clients_make_knfu_equal_fedmd():
    one = random_soft_labels(1, 30, 10, seed=2)
    p = np.repeat(one, 5, axis=0)
    for include_self in (True, False):
        k = fuse_knfu(p, include_self=include_self)
        np.testing.assert_allclose(k.targets, fuse_fedmd(p).targets, atol=1e-6)


def test_outlier_client_gets_almost_no_weight():
    rng = np.random.default_rng(3)
    m, c = 50, 10
    # four clients that mostly predict classes 0-4, one that only predicts class 9
    base = rng.dirichlet(np.r_[np.full(5, 5.0), np.full(5, 0.1)], size=(4, m))
    outlier = np.zeros((1, m, c)); outlier[..., 9] = 0.97; outlier[..., :9] = 0.03 / 9
    p = np.concatenate([base, outlier]).astype(np.float32)
    r = fuse_knfu(p, beta=10.0)
    assert r.weights[:4, 4].max() < 1e-3
    assert r.info["neighbour_counts"][:4] == [3, 3, 3, 3]


def test_knfu_excluding_self_never_picks_self():
    r = fuse_knfu(random_soft_labels(5, 10, 4, seed=4, concentration=0.2), include_self=False)
    assert np.all(np.diag(r.weights) == 0)


def test_single_client():
    p = random_soft_labels(1, 7, 3)
    np.testing.assert_allclose(fuse_fedmd(p).targets[0], p[0], rtol=1e-6)
    with_self = fuse_knfu(p, include_self=True)
    np.testing.assert_allclose(with_self.targets[0], p[0], rtol=1e-6)
    alone = fuse_knfu(p, include_self=False)
    assert not alone.has_targets[0]


def test_pairwise_kl_matches_a_double_loop():
    p = random_soft_labels(7, 15, 6, seed=5)
    e = knowledge_profiles(p.astype(np.float64))
    ref = np.array([[np.sum(a * np.log(a / b)) for b in e] for a in e])
    np.testing.assert_allclose(pairwise_kl(e), ref, atol=1e-10)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("nope", random_soft_labels(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(N, M, C\)"):
        fuse("fedmd", np.ones((3, 4)))
    with pytest.raises(ValueError, match="temperature"):
        fuse_dsfl(random_soft_labels(2, 3, 4), temperature=0)


# ---------------------------------------------------------------- oracle (FedMD inside the true groups)

def test_oracle_hand_computed_groups_exclude_self():
    from fedkd.fusion.oracle import fuse_oracle

    p = np.array([[[1.0, 0.0]], [[0.5, 0.5]], [[0.0, 1.0]], [[0.2, 0.8]], [[0.6, 0.4]]], dtype=np.float32)
    groups = np.array([0, 0, 1, 1, 1])
    r = fuse_oracle(p, groups=groups)
    expected = np.array([[0, 1, 0, 0, 0],
                         [1, 0, 0, 0, 0],
                         [0, 0, 0, 0.5, 0.5],
                         [0, 0, 0.5, 0, 0.5],
                         [0, 0, 0.5, 0.5, 0]])
    np.testing.assert_allclose(r.weights, expected)
    np.testing.assert_allclose(r.targets[2, 0], [0.4, 0.6], rtol=1e-6)
    np.testing.assert_allclose(r.targets[0, 0], [0.5, 0.5], rtol=1e-6)
    assert r.has_targets.all() and r.info["neighbour_counts"] == [1, 1, 2, 2, 2]


def test_oracle_alone_in_a_group_keeps_itself_and_weighting_and_self_are_options():
    from fedkd.fusion.oracle import fuse_oracle

    p = random_soft_labels(4, 6, 3, seed=9)
    r = fuse_oracle(p, groups=np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(r.weights[3], [0, 0, 0, 1])
    np.testing.assert_allclose(r.targets[3], p[3], rtol=1e-6)
    w = fuse_oracle(p, np.array([1, 1, 2, 100]), groups=np.array([0, 0, 0, 1]), weighted=True).weights
    np.testing.assert_allclose(w[0], [0, 1 / 3, 2 / 3, 0])
    with_self = fuse_oracle(p, groups=np.array([0, 0, 0, 1]), include_self=True).weights
    np.testing.assert_allclose(with_self[0], [1 / 3, 1 / 3, 1 / 3, 0])
    # one group and self included: FedMD exactly
    np.testing.assert_allclose(fuse_oracle(p, groups=np.zeros(4, dtype=int), include_self=True).targets,
                               fuse_fedmd(p).targets, atol=1e-7)


def test_oracle_refuses_bad_groups():
    from fedkd.fusion.oracle import fuse_oracle

    with pytest.raises(ValueError, match="one entry per client"):
        fuse_oracle(random_soft_labels(3, 2, 2), groups=np.array([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        fuse_oracle(random_soft_labels(2, 2, 2), groups=np.array([0.0, 1.0]))


@pytest.mark.parametrize("distance", ["profile_kl", "sample_kl", "sample_js", "sample_hellinger"])
def test_knfu_rows_are_distributions_for_every_distance(distance):
    r = fuse_knfu(random_soft_labels(6, 20, 10, seed=1), distance=distance)
    np.testing.assert_allclose(r.targets.sum(axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.weights.sum(axis=1), 1.0, atol=1e-9)
    assert r.info["distance"] == distance
