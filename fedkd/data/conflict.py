"""The knowledge-conflict benchmark: client groups for whom the same image means different things.

KnFu (Seyedmohammadi, Atapour, Abouei, Mohammadi, "KnFu: Effective Knowledge Fusion", arXiv:2403.11892,
2024) argues that "not all knowledge is universally beneficial" and fuses only semantic neighbours'
knowledge. Dirichlet label skew hardly tests that: every client's knowledge is still *correct*, only
narrower. Here it is made adverse on purpose. The clients are split into contiguous groups
(``conflict.groups``); group 0 is the plain task and every group g >= 1 sees a transformed one:

``label_permutation``  group g uses its own fixed permutation of the class labels, for training and for
                       its local and global test sets: an image of class c is labelled perm_g[c]. Fusing
                       across groups teaches a client the wrong name for every class.
``rotation``           group g's images are rotated by g * 90 degrees (private data and local test set;
                       the labels are unchanged, the global test set too). Knowledge about upright images
                       is of less use to a client that only ever sees rotated ones.
``none``               no conflict (the default).

The public transfer set is never transformed: it is unlabelled, shared, and what lets a server compare
the groups' answers to the same images. ``client_view`` encodes which split each kind touches, so that
the pipeline applies one function to every split and the transfer set is a no-op by construction.
Everything is a pure, deterministic function of (kind, group, seed).
"""
from __future__ import annotations

import numpy as np

CONFLICT_KINDS = ("none", "label_permutation", "rotation")
SPLITS = ("train", "local_test", "global_test", "transfer")
ROTATION_GROUPS_MAX = 4  # 0, 90, 180, 270 degrees; a fifth group would repeat group 0

# Which splits each kind transforms (the transfer set: never).
_TOUCHES = {
    "none": frozenset(),
    "label_permutation": frozenset({"train", "local_test", "global_test"}),
    "rotation": frozenset({"train", "local_test"}),
}
_STREAM_PERMUTATION = 7_001  # SeedSequence stream of the permutation cycle (distinct from federation's)


def check_conflict(kind: str, groups: int, num_clients: int, num_classes: int) -> None:
    """Raise ValueError (naming the setting) when a conflict configuration cannot mean what it says."""
    if kind not in CONFLICT_KINDS:
        raise ValueError(f"conflict.kind={kind!r} is unknown; known: {', '.join(CONFLICT_KINDS)}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conflict.groups must be an int >= 1, got {groups!r}")
    if kind == "none":
        return
    if groups > num_clients:
        raise ValueError(f"conflict.groups={groups} exceeds num_clients={num_clients}: some group would be empty")
    if kind == "label_permutation" and groups > num_classes:
        raise ValueError(f"conflict.groups={groups} exceeds the {num_classes} classes: two groups would share "
                         "a labelling, so they would not conflict")
    if kind == "rotation" and groups > ROTATION_GROUPS_MAX:
        raise ValueError(f"conflict.groups={groups} with rotation: only {ROTATION_GROUPS_MAX} distinct "
                         "rotations (0/90/180/270 degrees) exist")


def conflict_groups(num_clients: int, groups: int) -> np.ndarray:
    """(num_clients,) int64 group of each partition id: contiguous blocks, sizes differing by at most 1.

    The first ``num_clients % groups`` groups get the extra client, as ``np.array_split`` does:
    10 clients in 3 groups -> [0 0 0 0 1 1 1 2 2 2]. Contiguous, so that "the second half of the
    clients" is group 1 and a weight matrix ordered by partition id shows the groups as diagonal blocks.
    """
    if num_clients < 1 or groups < 1:
        raise ValueError(f"need num_clients >= 1 and groups >= 1, got {num_clients}, {groups}")
    if groups > num_clients:
        raise ValueError(f"groups={groups} exceeds num_clients={num_clients}: some group would be empty")
    out = np.empty(num_clients, dtype=np.int64)
    for g, block in enumerate(np.array_split(np.arange(num_clients), groups)):
        out[block] = g
    return out


def group_permutation(group: int, num_classes: int, seed: int) -> np.ndarray:
    """(num_classes,) int64 label map of ``group``: class c is labelled ``perm[c]``.

    perm_g = pi^g, the g-th power of one random cyclic permutation pi (a single C-cycle drawn from
    ``seed``). So group 0 is the identity, and for 0 <= g < g' < C the maps perm_g and perm_g' differ on
    *every* class (perm_g'[c] = pi^(g'-g)(perm_g[c]) and a C-cycle's powers below C have no fixed point):
    every group g >= 1 is a derangement of group 0 and of every other group, so no class keeps its meaning
    across any two groups. Deterministic in (group, num_classes, seed).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if group < 0:
        raise ValueError(f"group must be >= 0, got {group}")
    if group >= num_classes:
        raise ValueError(f"group={group} >= num_classes={num_classes}: its permutation would repeat group "
                         f"{group % num_classes}'s")
    order = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_PERMUTATION])).permutation(num_classes)
    cycle = np.empty(num_classes, dtype=np.int64)  # pi: order[k] -> order[k + 1]
    cycle[order] = np.roll(order, -1)
    perm = np.arange(num_classes, dtype=np.int64)
    for _ in range(group):
        perm = cycle[perm]
    return perm


def rotate_images(x: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Images (n, C, H, W) rotated by ``quarter_turns`` * 90 degrees counter-clockwise on (H, W), a copy."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"images must be (n, C, H, W), got shape {x.shape}")
    if quarter_turns % 2 and x.shape[2] != x.shape[3]:
        raise ValueError(f"rotating non-square images {x.shape[2:]} by 90 degrees would change their shape")
    return np.ascontiguousarray(np.rot90(x, k=quarter_turns, axes=(2, 3)))


def apply_conflict(kind: str, group: int, x: np.ndarray, y: np.ndarray | None, *, seed: int,
                   num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) as a client of ``group`` sees them: labels mapped, or images rotated by group * 90 degrees.

    ``none`` and group 0 return the inputs themselves. Otherwise new arrays are returned and the inputs
    (read-only in a cached federation) are never written. ``y`` may be None (unlabelled data).
    """
    if kind not in CONFLICT_KINDS:
        raise ValueError(f"conflict.kind={kind!r} is unknown; known: {', '.join(CONFLICT_KINDS)}")
    if kind == "none" or group == 0:
        return x, y
    if kind == "label_permutation":
        if y is None:
            return x, None
        perm = group_permutation(group, num_classes, seed)
        return x, perm[np.asarray(y, dtype=np.int64)]
    if group >= ROTATION_GROUPS_MAX:
        raise ValueError(f"group={group}: only {ROTATION_GROUPS_MAX} distinct rotations exist")
    return rotate_images(x, group), y


def client_view(kind: str, group: int, split: str, x: np.ndarray, y: np.ndarray | None, *, seed: int,
                num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) of ``split`` as seen by a client of ``group``; the one call the data pipeline needs.

    split: ``train`` (private data), ``local_test``, ``global_test`` (evaluated with the client's own
    labelling under ``label_permutation``; untouched under ``rotation``) or ``transfer`` (always returned
    as the very same objects: the transfer set is public, unlabelled and shared, and its fingerprint
    must not change).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; known: {', '.join(SPLITS)}")
    if kind not in CONFLICT_KINDS:
        raise ValueError(f"conflict.kind={kind!r} is unknown; known: {', '.join(CONFLICT_KINDS)}")
    if split not in _TOUCHES[kind]:
        return x, y
    return apply_conflict(kind, group, x, y, seed=seed, num_classes=num_classes)


def touched_splits(kind: str) -> frozenset[str]:
    """The splits ``kind`` transforms (for run records and docs)."""
    return _TOUCHES[kind]
