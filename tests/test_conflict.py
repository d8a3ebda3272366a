"""The knowledge-conflict benchmark's pure pieces (fedkd.data.conflict)."""
import numpy as np
import pytest

from fedkd.data.conflict import (CONFLICT_KINDS, apply_conflict, check_conflict, client_view, conflict_groups,
                                 group_permutation, rotate_images, touched_splits)


def images(n=3, h=4, seed=0):
    x = np.random.default_rng(seed).random((n, 1, h, h)).astype(np.float32)
    x.setflags(write=False)  # the federation's arrays are read-only
    return x


def test_groups_are_contiguous_and_balanced():
    np.testing.assert_array_equal(conflict_groups(10, 2), [0] * 5 + [1] * 5)
    np.testing.assert_array_equal(conflict_groups(10, 3), [0] * 4 + [1] * 3 + [2] * 3)
    np.testing.assert_array_equal(conflict_groups(3, 1), [0, 0, 0])
    assert conflict_groups(7, 7).tolist() == list(range(7))
    with pytest.raises(ValueError, match="empty"):
        conflict_groups(2, 3)


def test_group_zero_is_the_identity_and_permutations_are_deterministic():
    np.testing.assert_array_equal(group_permutation(0, 10, seed=5), np.arange(10))
    for g in (1, 2, 3):
        a = group_permutation(g, 10, seed=5)
        np.testing.assert_array_equal(a, group_permutation(g, 10, seed=5))
        assert sorted(a.tolist()) == list(range(10))
    assert any(not np.array_equal(group_permutation(1, 10, seed=s), group_permutation(1, 10, seed=5))
               for s in range(6, 10))


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_every_two_groups_disagree_on_every_class(num_classes):
    perms = [group_permutation(g, num_classes, seed=11) for g in range(num_classes)]
    for g in range(num_classes):
        for h in range(g + 1, num_classes):
            assert np.all(perms[g] != perms[h]), (g, h)
    with pytest.raises(ValueError, match="repeat"):
        group_permutation(num_classes, num_classes, seed=11)


def test_label_permutation_maps_labels_and_leaves_images():
    x, y = images(), np.array([0, 3, 9])
    perm = group_permutation(1, 10, seed=2)
    x1, y1 = apply_conflict("label_permutation", 1, x, y, seed=2, num_classes=10)
    assert x1 is x
    np.testing.assert_array_equal(y1, perm[y])
    assert np.all(y1 != y)
    x0, y0 = apply_conflict("label_permutation", 0, x, y, seed=2, num_classes=10)
    assert x0 is x and y0 is y


def test_rotation_turns_images_by_group_quarters():
    x, y = images(), np.array([1, 2, 3])
    for g in range(4):
        xg, yg = apply_conflict("rotation", g, x, y, seed=0, num_classes=10)
        np.testing.assert_array_equal(xg, np.rot90(x, k=g, axes=(2, 3)))
        assert yg is y
    # hand check of one 90-degree turn (counter-clockwise): the top row becomes the left column, reversed
    one = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    np.testing.assert_array_equal(rotate_images(one, 1)[0, 0], [[1, 3], [0, 2]])
    with pytest.raises(ValueError, match="non-square"):
        rotate_images(np.zeros((1, 1, 2, 3)), 1)
    with pytest.raises(ValueError, match="rotations"):
        apply_conflict("rotation", 4, x, y, seed=0, num_classes=10)


def test_none_changes_nothing():
    x, y = images(), np.array([1, 2, 3])
    for split in ("train", "local_test", "global_test", "transfer"):
        xs, ys = client_view("none", 1, split, x, y, seed=0, num_classes=10)
        assert xs is x and ys is y


@pytest.mark.parametrize("kind", CONFLICT_KINDS)
def test_the_transfer_set_is_never_touched(kind):
    x = images(n=5)
    for g in range(3):
        xs, ys = client_view(kind, g, "transfer", x, None, seed=3, num_classes=10)
        assert xs is x and ys is None


def test_which_splits_each_kind_touches():
    x, y = images(), np.array([0, 1, 2])
    perm = group_permutation(1, 10, seed=4)
    for split in ("train", "local_test", "global_test"):
        _, ys = client_view("label_permutation", 1, split, x, y, seed=4, num_classes=10)
        np.testing.assert_array_equal(ys, perm[y])
    for split in ("train", "local_test"):
        xs, ys = client_view("rotation", 2, split, x, y, seed=4, num_classes=10)
        np.testing.assert_array_equal(xs, np.rot90(x, 2, axes=(2, 3)))
        assert ys is y
    xs, ys = client_view("rotation", 2, "global_test", x, y, seed=4, num_classes=10)
    assert xs is x and ys is y
    assert touched_splits("label_permutation") == {"train", "local_test", "global_test"}
    with pytest.raises(ValueError, match="split"):
        client_view("rotation", 1, "validation", x, y, seed=0, num_classes=10)


def test_check_conflict_names_the_setting():
    check_conflict("none", 2, 1, 2)  # groups are irrelevant without a conflict
    check_conflict("label_permutation", 3, 10, 10)
    check_conflict("rotation", 4, 10, 10)
    for args, match in [(("swap", 2, 10, 10), "conflict.kind"), (("rotation", 0, 10, 10), "conflict.groups"),
                        (("label_permutation", 11, 20, 10), "classes"), (("rotation", 5, 10, 10), "rotations"),
                        (("label_permutation", 4, 3, 10), "num_clients")]:
        with pytest.raises(ValueError, match=match):
            check_conflict(*args)


def test_on_a_real_federation_the_right_clients_change_and_the_transfer_set_does_not():
    from fedkd.data.federation import FederationSpec, build_federation, fingerprint

    fed = build_federation(FederationSpec(dataset="digits", num_clients=4, partition="iid", transfer_size=100,
                                          local_test_size=20, global_test_size=50, seed=3))
    groups = conflict_groups(fed.num_clients, 2)
    seed, c = fed.spec.seed, fed.num_classes
    for kind in ("label_permutation", "rotation"):
        for client in fed.clients:
            g = int(groups[client.client_id])
            tx, ty = client_view(kind, g, "train", client.train_x, client.train_y, seed=seed, num_classes=c)
            lx, ly = client_view(kind, g, "local_test", client.test_x, client.test_y, seed=seed, num_classes=c)
            changed = not (np.array_equal(tx, client.train_x) and np.array_equal(ty, client.train_y))
            assert changed == (g == 1), (kind, client.client_id)
            assert (not np.array_equal(ly, client.test_y) or not np.array_equal(lx, client.test_x)) == (g == 1)
            xs, _ = client_view(kind, g, "transfer", fed.transfer_x, None, seed=seed, num_classes=c)
            assert fingerprint(xs) == fed.transfer_fingerprint
    # applied twice from scratch: the same arrays (deterministic)
    a = client_view("label_permutation", 1, "train", fed.clients[3].train_x, fed.clients[3].train_y,
                    seed=seed, num_classes=c)[1]
    b = client_view("label_permutation", 1, "train", fed.clients[3].train_x, fed.clients[3].train_y,
                    seed=seed, num_classes=c)[1]
    np.testing.assert_array_equal(a, b)
