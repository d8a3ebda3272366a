"""KnFu's effectiveness measures: hand-computed cases, blocked == loop, and the properties the rule needs.

The properties come from issue 13: identical clients are weighted equally, a client whose answers to the
same images disagree with everyone's gets ~0 weight, permuted-label groups give a block-diagonal graph,
and a flat answer (exactly uniform rows, or one fixed row) is never rewarded.
"""
import numpy as np
import pytest

from fedkd.data.conflict import conflict_groups, group_permutation
from fedkd.faults.knowledge import UNTARGETED_KINDS as LIE_KINDS, lie
from fedkd.fusion.effectiveness import (DISTANCES, PER_SAMPLE, SCALE_FLOOR, informativeness, pairwise_distance,
                                        profile_kl, row_scale, sample_hellinger, sample_js, sample_kl)
from fedkd.fusion.knfu import fuse_knfu, knfu_weights

SAMPLE_MEASURES = sorted(PER_SAMPLE)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def answers(n, m=200, c=10, seed=0, perms=None, sharp=3.0, noise=1.0, err=0.15):
    """Honest-looking soft labels: each client answers the true class (through its group's label map) of the
    same M images, with logit noise and a fraction ``err`` of its own mistakes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(c, size=m)
    out = []
    for k in range(n):
        perm = np.arange(c) if perms is None else perms[k]
        labels = perm[y].copy()
        wrong = rng.random(m) < err
        labels[wrong] = rng.integers(c, size=int(wrong.sum()))
        logits = noise * rng.standard_normal((m, c))
        logits[np.arange(m), labels] += sharp
        out.append(softmax(logits))
    return np.stack(out).astype(np.float32)


def kl(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.sum(a * np.log(a / b)))


def entropy(a):
    a = np.asarray(a, dtype=np.float64)
    a = a[a > 0]
    return float(-np.sum(a * np.log(a)))


def js(a, b):
    return entropy((np.asarray(a) + np.asarray(b)) / 2) - (entropy(a) + entropy(b)) / 2


# ---------------------------------------------------------------- hand-computed cases

def test_sample_kl_hand_computed():
    p = np.array([[[0.5, 0.5], [0.8, 0.2]],
                  [[0.9, 0.1], [0.2, 0.8]]])
    d01 = (kl([0.5, 0.5], [0.9, 0.1]) + kl([0.8, 0.2], [0.2, 0.8])) / 2
    d10 = (kl([0.9, 0.1], [0.5, 0.5]) + kl([0.2, 0.8], [0.8, 0.2])) / 2
    # rows are smoothed by 1e-6 before the logarithms: invisible at this precision
    np.testing.assert_allclose(sample_kl(p), [[0, d01], [d10, 0]], rtol=1e-5, atol=1e-12)
    assert d01 != pytest.approx(d10)  # KL is asymmetric: row n is "how well m explains n's answers"


def test_sample_kl_of_a_one_hot_peer_is_large_but_finite():
    p = np.array([[[0.9, 0.1]], [[0.0, 1.0]]])
    d = sample_kl(p)
    assert np.isfinite(d).all()
    assert d[0, 1] == pytest.approx(0.9 * np.log(0.9 / 1e-6) + 0.1 * np.log(0.1), rel=1e-3)


def test_sample_js_hand_computed():
    # opposite one-hot answers on image 0 (JS = log 2), the same answer on image 1 (JS = 0)
    p = np.array([[[1.0, 0.0], [0.3, 0.7]],
                  [[0.0, 1.0], [0.3, 0.7]]])
    np.testing.assert_allclose(sample_js(p), [[0, np.log(2) / 2], [np.log(2) / 2, 0]], atol=1e-7)
    q = np.array([[[0.5, 0.5], [0.8, 0.2]],
                  [[0.9, 0.1], [0.2, 0.8]]])
    ref = (js([0.5, 0.5], [0.9, 0.1]) + js([0.8, 0.2], [0.2, 0.8])) / 2
    np.testing.assert_allclose(sample_js(q), [[0, ref], [ref, 0]], atol=1e-7)


def test_sample_hellinger_hand_computed():
    p = np.array([[[1.0, 0.0], [0.5, 0.5]],
                  [[0.5, 0.5], [0.5, 0.5]]])
    ref = ((1 - np.sqrt(0.5)) + 0.0) / 2
    np.testing.assert_allclose(sample_hellinger(p), [[0, ref], [ref, 0]], atol=1e-12)


def test_profile_kl_hand_computed():
    p = np.array([[[0.5, 0.5]], [[0.9, 0.1]]])
    np.testing.assert_allclose(profile_kl(p)[0, 1], kl([0.5, 0.5], [0.9, 0.1]), rtol=1e-9)


def test_informativeness_hand_computed():
    one_hot_half = np.array([[[1.0, 0, 0, 0]] * 2 + [[0, 1.0, 0, 0]] * 2])      # 2 of 4 classes, certain
    flat = np.full((1, 4, 4), 0.25)
    constant = np.array([[[0.0, 1.0, 0, 0]] * 4])                               # one confident answer for all
    half = np.array([[[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]] * 2])                 # H(profile)=log4, H(rows)=log2
    kappa = informativeness(np.concatenate([one_hot_half, flat, constant, half]))
    np.testing.assert_allclose(kappa, [np.log(2) / np.log(4), 0.0, 0.0, 0.5], atol=1e-12)
    both = np.array([[[1.0, 0], [0, 1.0]]])
    assert informativeness(both)[0] == pytest.approx(1.0)


def test_row_scale_is_the_median_over_informative_peers():
    d = np.array([[0.0, 1.0, 2.0, 9.0],
                  [1.0, 0.0, 3.0, 5.0],
                  [2.0, 4.0, 0.0, 6.0],
                  [1e-20, 1e-20, 1e-20, 0.0]])
    np.testing.assert_allclose(row_scale(d), [2.0, 3.0, 4.0, SCALE_FLOOR])
    np.testing.assert_allclose(row_scale(d, np.array([True, True, True, False])), [1.5, 2.0, 3.0, SCALE_FLOOR])
    only_flat_peers = np.array([True, False, False, False])
    np.testing.assert_allclose(row_scale(d, only_flat_peers)[0], 1.0)  # no informative peer: no scaling


# ---------------------------------------------------------------- blocked == a plain loop over pairs

LOOP_REFERENCE = {
    "profile_kl": lambda a, b: kl(*[(x.mean(0) + 1e-12) / (x.mean(0) + 1e-12).sum() for x in (a, b)]),
    "sample_kl": lambda a, b: np.mean([kl((x + 1e-6) / (1 + x.size * 1e-6), (y + 1e-6) / (1 + y.size * 1e-6))
                                       for x, y in zip(a, b)]),
    "sample_js": lambda a, b: np.mean([js(x, y) for x, y in zip(a, b)]),
    "sample_hellinger": lambda a, b: np.mean([1 - np.sum(np.sqrt(x * y)) for x, y in zip(a, b)]),
}


@pytest.mark.parametrize("name", sorted(LOOP_REFERENCE))  # class_hellinger: tests/test_knfu_edges.py
@pytest.mark.parametrize("block_bytes", [1, 3000, 2**22])  # 1 sample or pair per block, a few, one
def test_blocked_computation_equals_a_loop_over_pairs(name, block_bytes):
    p = np.random.default_rng(5).dirichlet(np.full(6, 0.4), size=(7, 15))
    p[2, 3] = [1, 0, 0, 0, 0, 0]  # an exact zero: 0 log 0 must be 0
    ref = np.array([[LOOP_REFERENCE[name](a, b) for b in p] for a in p])
    atol = 1e-6 if name == "sample_js" else 1e-9  # JS runs in float32, as the soft labels travel
    np.testing.assert_allclose(pairwise_distance(name, p, block_bytes), ref, atol=atol, rtol=1e-6)


def test_unknown_distance_is_refused():
    with pytest.raises(ValueError, match="unknown knfu distance"):
        fuse_knfu(answers(3, m=5), distance="cosine")


# ---------------------------------------------------------------- beta means the same under every measure

def test_normalised_weights_do_not_depend_on_the_distance_units():
    d = pairwise_distance("sample_kl", answers(6, m=50, seed=1).astype(np.float64))
    for include_self in (False, True):
        a = knfu_weights(d, 10.0, None, include_self)
        np.testing.assert_allclose(knfu_weights(7.3 * d, 10.0, None, include_self), a, atol=1e-12)
    # in the measure's own units, the same beta means something else for every scale
    assert not np.allclose(knfu_weights(7.3 * d, 1.0, None, False, normalise=False),
                           knfu_weights(d, 1.0, None, False, normalise=False))


def test_a_peer_at_the_median_gets_e_to_the_minus_beta():
    d = np.array([[0.0, 0.0, 2.0, 2.0, 2.0],
                  [0.0, 0.0, 2.0, 2.0, 2.0],
                  [2.0, 2.0, 0.0, 0.0, 0.0],
                  [2.0, 2.0, 0.0, 0.0, 0.0],
                  [2.0, 2.0, 0.0, 0.0, 0.0]]) + 1.0
    w = knfu_weights(d, 1.0, 0.0, include_self=False)
    # row 0: peers at d = 1 (client 1) and 3 (clients 2-4); median 3 -> scaled 1/3 and 1
    raw = np.array([0.0, np.exp(-1 / 3), np.exp(-1), np.exp(-1), np.exp(-1)])
    np.testing.assert_allclose(w[0], raw / raw.sum(), rtol=1e-12)


# ---------------------------------------------------------------- properties of the fused weights

@pytest.mark.parametrize("distance", sorted(DISTANCES))
@pytest.mark.parametrize("include_self", [False, True])
def test_identical_clients_get_equal_weights(distance, include_self):
    p = np.repeat(answers(1, m=40, seed=2), 5, axis=0)
    w = fuse_knfu(p, distance=distance, include_self=include_self).weights
    k = 5 if include_self else 4
    expected = np.full((5, 5), 1 / k)
    if not include_self:
        np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(w, expected, atol=1e-9)


@pytest.mark.parametrize("distance", SAMPLE_MEASURES)
def test_exactly_uniform_rows_get_no_weight(distance):
    p = answers(6, m=100, seed=3)
    p[4:] = 1.0 / p.shape[2]  # two clients that answer "I don't know" to everything
    r = fuse_knfu(p, distance=distance)
    assert r.weights[:, 4:].max() == 0.0
    assert r.info["informativeness"][4:] == [0.0, 0.0]
    np.testing.assert_allclose(r.weights.sum(axis=1), 1.0)
    # without the flat-answer rule a uniform row is a popular neighbour under KL: the reason for the rule
    plain = fuse_knfu(p, distance=distance, discount_flat=False, one_vote=False, agreement=False)
    if distance == "sample_kl":
        assert plain.weights[:4, 4:].sum(axis=1).mean() > 0.1


@pytest.mark.parametrize("distance", SAMPLE_MEASURES)
def test_nearly_flat_undertrained_clients_get_little_weight(distance):
    p = answers(8, m=200, seed=4)
    p[6:] = answers(2, m=200, seed=4, sharp=0.3, noise=0.1)  # the same images, barely-trained models
    w = fuse_knfu(p, distance=distance).weights
    assert w[:6, 6:].sum(axis=1).max() < 0.05


def test_when_every_peer_is_flat_nobody_gets_targets():
    p = np.full((3, 5, 4), 0.25)
    r = fuse_knfu(p, distance="sample_kl")
    assert not r.has_targets.any() and np.all(r.weights == 0)


@pytest.mark.parametrize("distance", SAMPLE_MEASURES)
def test_a_client_that_disagrees_on_the_same_images_gets_no_weight(distance):
    p = answers(6, m=300, seed=6)
    # client 5 keeps its class marginal but answers each image with another image's answer
    p[5] = p[5][np.random.default_rng(0).permutation(p.shape[1])]
    w = fuse_knfu(p, distance=distance).weights
    assert w[:5, 5].max() < 1e-3
    # the class-profile rule cannot see it: same marginal, so it is as good a neighbour as any
    assert fuse_knfu(p, distance="profile_kl").weights[:5, 5].min() > 0.1


@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("distance", SAMPLE_MEASURES)
def test_permuted_label_groups_give_a_block_diagonal_graph(distance, groups):
    n, c = 10, 10
    g = conflict_groups(n, groups)
    perms = [group_permutation(int(k), c, seed=1) for k in g]
    p = answers(n, m=300, c=c, seed=7, perms=perms)
    w = fuse_knfu(p, distance=distance).weights
    across = np.where(g[:, None] != g[None, :], w, 0.0).sum(axis=1)
    assert across.max() < 1e-3, across
    # today's rule puts much of its weight across the groups (the marginals are alike)
    w_profile = fuse_knfu(p).weights
    assert np.where(g[:, None] != g[None, :], w_profile, 0.0).sum(axis=1).mean() > 0.2


@pytest.mark.parametrize("kind", LIE_KINDS)
@pytest.mark.parametrize("distance", SAMPLE_MEASURES)
def test_three_liars_of_ten_get_under_5_percent_of_an_honest_peers_weight(distance, kind):
    p = answers(10, m=300, seed=8)
    rng = np.random.default_rng(9)
    for k in (7, 8, 9):
        p[k] = lie(kind, p[k], rng)
    w = fuse_knfu(p, distance=distance).weights
    honest = w[:7, :7].sum() / (7 * 6)
    liar = w[:7, 7:].sum() / (7 * 3)
    assert liar <= 0.05 * honest, (liar, honest)


def test_default_is_the_original_rule_bit_for_bit():
    """profile_kl with its defaults runs the original code path (frozen here) and gives identical arrays."""
    def original(p, beta, tau, include_self):
        p = p.astype(np.float64)
        e = p.mean(axis=1) + 1e-12
        e = e / e.sum(axis=1, keepdims=True)
        log_e = np.log(e)
        d = np.maximum(np.sum(e * log_e, axis=1)[:, None] - e @ log_e.T, 0.0)
        n = d.shape[0]
        scores = -beta * d
        if not include_self:
            np.fill_diagonal(scores, -np.inf)
        finite = np.isfinite(scores)
        row_max = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
        row_max = np.where(np.isfinite(row_max), row_max, 0.0)
        w = np.where(finite, np.exp(scores - row_max), 0.0)
        totals = w.sum(axis=1, keepdims=True)
        w = np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)
        threshold = 1.0 / n if tau is None else tau
        w = np.where((w >= threshold) | (w == w.max(axis=1, keepdims=True)), w, 0.0)
        totals = w.sum(axis=1, keepdims=True)
        w = np.divide(w, totals, out=np.zeros_like(w), where=totals > 0)
        return w, (w @ p.reshape(n, -1)).reshape(p.shape).astype(np.float32)

    for seed, (n, m, c, conc) in enumerate([(6, 20, 10, 1.0), (10, 50, 10, 0.3), (1, 7, 3, 1.0), (30, 40, 5, 0.1)]):
        p = np.random.default_rng(seed).dirichlet(np.full(c, conc), size=(n, m)).astype(np.float32)
        for include_self in (False, True):
            for beta, tau in ((10.0, None), (1.0, 0.0), (3.0, 0.2)):
                r = fuse_knfu(p, beta=beta, tau=tau, include_self=include_self)
                w, t = original(p, beta, tau, include_self)
                np.testing.assert_array_equal(r.weights, w)
                np.testing.assert_array_equal(r.targets, t)
    assert "informativeness" not in r.info and r.info["distance"] == "profile_kl"


@pytest.mark.parametrize("distance", sorted(DISTANCES))
def test_targets_are_distributions_for_every_measure(distance):
    p = answers(7, m=30, seed=10)
    r = fuse_knfu(p, distance=distance)
    np.testing.assert_allclose(r.targets.sum(axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.weights.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(np.diag(r.weights) == 0)


def _peaked_rows(n, m=60, c=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n, m, c)) + 2 * rng.standard_normal((n, 1, c))
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    return p / p.sum(axis=2, keepdims=True)


def test_the_fast_paths_compute_what_the_definitions_say():
    """class_hellinger / sample_hellinger from one sorted sqrt(P), kappa in blocks, the agreement test with
    that sqrt(P): equal (to rounding) to the formulas written out directly."""
    from fedkd.fusion.effectiveness import (MIN_CLASS_SAMPLES, agreement_beyond_chance, class_hellinger_parts,
                                            class_roots, consensus_classes, informativeness)

    p = _peaked_rows(7, m=200)
    labels = consensus_classes(p)
    counts = np.bincount(labels, minlength=p.shape[2])
    labels = np.where(counts[labels] < MIN_CLASS_SAMPLES, p.shape[2], labels)
    hell = lambda a, b: 1 - np.sqrt(a * b).sum(axis=-1)  # noqa: E731 -- per-sample squared Hellinger
    n = p.shape[0]
    worst = np.array([[max(hell(p[i, labels == k], p[j, labels == k]).mean() for k in np.unique(labels))
                       for j in range(n)] for i in range(n)])
    mean = np.array([[hell(p[i], p[j]).mean() for j in range(n)] for i in range(n)])
    roots = class_roots(p)
    got_worst, got_mean = class_hellinger_parts(p, roots=roots)
    np.testing.assert_allclose(got_worst, worst, atol=1e-12)
    np.testing.assert_allclose(got_mean, mean, atol=1e-12)
    np.testing.assert_allclose(agreement_beyond_chance(p, 1 - mean, root=roots.root),
                               agreement_beyond_chance(p, 1 - mean), rtol=1e-9, atol=1e-9)
    e = p.mean(axis=1)
    mutual_information = (-(e * np.log(e)).sum(1) + (p * np.log(p)).sum(2).mean(1)) / np.log(p.shape[2])
    np.testing.assert_allclose(informativeness(p), mutual_information, atol=1e-12)
    np.testing.assert_allclose(informativeness(p), informativeness(p[::-1])[::-1], atol=1e-15)


def test_a_large_pool_takes_its_consensus_from_a_sample_a_minority_cannot_capture():
    """Above CONSENSUS_CLIENTS the consensus classes come from a fixed sample of clients; 30 % colluders
    who answer every image with one class still do not decide any sample's consensus class."""
    from fedkd.fusion import effectiveness

    n, m, c = 1000, 40, 4
    truth = np.arange(m) % c
    rng = np.random.default_rng(1)
    p = np.full((n, m, c), 0.1 / (c - 1))
    p[:, np.arange(m), truth] = 0.9
    p += 0.02 * rng.random((n, m, c))
    p /= p.sum(axis=2, keepdims=True)
    colluders = rng.choice(n, 300, replace=False)
    p[colluders] = 0.0
    p[colluders, :, c - 1] = 1.0
    assert n > effectiveness.CONSENSUS_CLIENTS
    np.testing.assert_array_equal(effectiveness.consensus_classes(p), truth)
    # and up to CONSENSUS_CLIENTS clients it is the median of all of them
    small = p[:effectiveness.CONSENSUS_CLIENTS]
    np.testing.assert_array_equal(effectiveness.consensus_classes(small), np.median(small, axis=0).argmax(axis=1))
