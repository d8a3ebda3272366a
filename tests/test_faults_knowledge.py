"""Malicious soft-label transforms (fedkd.faults.knowledge): well-formed, deterministic, and what they claim."""
import numpy as np
import pytest

from fedkd.faults.knowledge import LIE_KINDS, flip, lie, mimic, random_rows, shift
from fedkd.fusion.effectiveness import informativeness, knowledge_profiles


def honest(m=40, c=5, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(c, 0.5), size=m).astype(np.float32)


@pytest.mark.parametrize("kind", LIE_KINDS)
def test_every_lie_is_a_well_formed_reply(kind):
    soft = honest()
    before = soft.copy()
    out = lie(kind, soft, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == soft.shape and out.flags.c_contiguous
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(soft, before)  # the honest labels are not written


def test_random_is_seeded_and_draws_dirichlet_one_rows():
    soft = honest()
    a = lie("random", soft, np.random.default_rng(7))
    b = lie("random", soft, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    # the draws the robustness runs recorded so far used: Dirichlet(1) rows, renormalised, float32
    rows = np.random.default_rng(7).dirichlet(np.ones(soft.shape[1]), size=soft.shape[0])
    np.testing.assert_array_equal(a, (rows / rows.sum(axis=1, keepdims=True)).astype(np.float32))
    assert not np.array_equal(a, lie("random", soft, np.random.default_rng(8)))
    np.testing.assert_array_equal(a, random_rows(*soft.shape, np.random.default_rng(7)))


def test_flip_hand_computed():
    soft = np.array([[0.7, 0.2, 0.1], [0.0, 0.25, 0.75]], dtype=np.float32)
    np.testing.assert_array_equal(flip(soft), np.array([[0.1, 0.2, 0.7], [0.75, 0.25, 0.0]], dtype=np.float32))


def test_shift_hand_computed_wraps_the_last_class():
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]], dtype=np.float32)
    np.testing.assert_array_equal(shift(soft), [[0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_mimic_repeats_the_own_marginal_and_carries_no_information():
    soft = honest(m=60, c=4, seed=3)
    out = mimic(soft)
    np.testing.assert_allclose(out, np.broadcast_to(soft.mean(axis=0) / soft.mean(axis=0).sum(), out.shape),
                               rtol=1e-6)
    # the class profile is the honest one (profile KL cannot tell), the per-image information is nil
    np.testing.assert_allclose(knowledge_profiles(out[None].astype(np.float64)),
                               knowledge_profiles(soft[None].astype(np.float64)), atol=1e-6)
    assert informativeness(out[None].astype(np.float64))[0] == 0.0
    assert informativeness(soft[None].astype(np.float64))[0] > 0.1


def test_mimic_with_a_given_marginal():
    out = lie("mimic", honest(m=3, c=4), np.random.default_rng(0), marginal=np.array([2.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(out, [[0.5, 0.25, 0.25, 0.0]] * 3)
    with pytest.raises(ValueError, match="marginal"):
        mimic(honest(c=4), marginal=np.ones(3))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown lie kind"):
        lie("nope", honest(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(M, C\)"):
        lie("flip", np.ones((2, 3, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        lie("shift", np.full((2, 3), np.nan), np.random.default_rng(0))


def test_echo_uploads_the_targets_it_was_sent_and_its_own_answer_without_any():
    from fedkd.faults.knowledge import echo

    soft, sent = honest(seed=1), honest(seed=2)
    np.testing.assert_allclose(lie("echo", soft, np.random.default_rng(0), received=sent), sent, atol=1e-7)
    np.testing.assert_array_equal(lie("echo", soft, np.random.default_rng(0)), soft)  # round 1: honest
    with pytest.raises(ValueError, match="received targets"):
        echo(soft, sent[:5])
