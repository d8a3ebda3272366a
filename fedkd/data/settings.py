"""The data keys of a run: which dataset, how it is split, what every party builds from it.

``DataSettings.federation_spec()`` is the :class:`~fedkd.data.federation.FederationSpec` every party
builds (simulation and ``fedkd export``); ``transfer_dir``/``global_test_dir`` are for real nodes.
"""
from __future__ import annotations

from fedkd.data.conflict import CONFLICT_KINDS, ROTATION_GROUPS_MAX
from fedkd.data.datasets import DATASET_NAMES, DATASET_SIZES
from fedkd.data.partition import PARTITION_SCHEMES
from fedkd.keys import AT_LEAST_1, CLIENT, NON_NEGATIVE, POSITIVE, ConfigError, one_of, setting, settings_group, shared

EVAL_SPLITS = ("test", "val")


def _image_size_ok(value: str) -> bool:
    from fedkd.data.transfer import parse_image_size

    try:
        parse_image_size(value)
    except ValueError:
        return False
    return True


_IMAGE_SIZE = (_image_size_ok, "N or HxW pixels, e.g. 32 or 32x32")


@settings_group("", audience=CLIENT)
class DataSettings:
    """What federation to simulate (or, with ``transfer_dir``, which public set real nodes share)."""

    dataset: str = setting("digits", "dataset name", one_of(DATASET_NAMES))
    data_root: str = setting("", "folder holding the dataset files ('' = the dataset's default place)")
    transfer_dir: str = setting("", "the public transfer set on disk: a folder with classes.txt and images or "
                                "transfer.npz ('' = drawn from the dataset, as in simulation); a node may name "
                                "its own copy with --node-config transfer-dir=PATH")
    global_test_dir: str = setting("", "optional public labelled test folder (ImageFolder or .npz) for global "
                                   "accuracy on real nodes ('' = none: the run records ALMA only)")
    data_dir: str = setting("", "a folder of node folders as `fedkd export` writes it (node-<i>/, transfer/, "
                            "global_test/): simulated node i reads only DIR/node-<i> (`fedkd simulate --data DIR`); "
                            "a real node's own --node-config data-dir always wins")
    image_size: str = setting("", "resize every image read from folders (transfer set, node data, global test) to "
                              "N or HxW pixels with torchvision ('' = never resize: a size mismatch is an error)",
                              _IMAGE_SIZE)
    allow_symlinks: bool = setting(False, "nodes follow symbolic links that lead out of their data folder (off: "
                                   "only links inside it); a node's --node-config allow-symlinks wins")
    partition: str = setting("dirichlet", "how private data is split", one_of(PARTITION_SCHEMES))
    alpha: float = setting(0.5, "Dirichlet concentration (smaller = more label skew)", POSITIVE)
    classes_per_client: int = setting(2, "classes per client for the pathological split", AT_LEAST_1)
    min_partition_size: int = setting(10, "smallest private partition allowed", AT_LEAST_1)
    transfer_size: int = setting(300, "size M of the public transfer set", AT_LEAST_1)
    private_pool_size: int = setting(0, "subsample the private pool to this many images (0 = all)", NON_NEGATIVE)
    local_test_size: int = setting(200, "per-client local test set size (for ALMA)", AT_LEAST_1)
    global_test_size: int = setting(0, "global test set size (0 = the whole test split)", NON_NEGATIVE)
    eval_split: str = setting("test", "'val' evaluates on a validation split (for tuning), 'test' on the test "
                              "split", one_of(EVAL_SPLITS))
    num_clients: int = shared("num_clients")
    seed: int = shared("seed")

    def check(self) -> None:
        """Refuse sizes the dataset cannot hold, naming the key and the limit, before anything is loaded."""
        if self.partition == "pathological" and self.classes_per_client > 100:
            raise ConfigError("config key 'classes_per_client' is larger than any dataset's class count")
        train, test = DATASET_SIZES[self.dataset]
        pool = self.private_pool_size or train
        limits = (
            ("private_pool_size", self.private_pool_size, train, "the dataset's training split"),
            ("transfer_size", self.transfer_size, train, "the dataset's training split"),
            ("global_test_size", self.global_test_size, test, "the dataset's test split"),
            ("local_test_size", self.local_test_size, test, "the dataset's test split"),
            ("num_clients", self.num_clients * self.min_partition_size, pool,
             "num_clients * min_partition_size must fit in the private pool"),
        )
        for key, value, limit, what in limits:
            if value > limit:
                raise ConfigError(f"config key {key!r}: {value} exceeds {limit} ({what} of {self.dataset!r})")

    @property
    def on_folders(self) -> bool:
        """Whether the nodes read folders (their own, or ``data_dir``'s) instead of building a federation."""
        return bool(self.data_dir or self.transfer_dir)

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """``image_size`` as (H, W), or None (never resize)."""
        from fedkd.data.transfer import parse_image_size

        return parse_image_size(self.image_size)

    def federation_spec(self):
        """Which federation every party builds from one dataset (simulation and export)."""
        from fedkd.data.federation import FederationSpec

        return FederationSpec(
            dataset=self.dataset, data_root=self.data_root or None, num_clients=self.num_clients,
            partition=self.partition, alpha=self.alpha, classes_per_client=self.classes_per_client,
            min_partition_size=self.min_partition_size, seed=self.seed, transfer_size=self.transfer_size,
            private_pool_size=self.private_pool_size or None, global_test_size=self.global_test_size or None,
            local_test_size=self.local_test_size, eval_split=self.eval_split)


@settings_group("conflict", audience=CLIENT)
class ConflictSettings:
    """The knowledge-conflict benchmark: contiguous client groups that see the task differently."""

    kind: str = setting("none", "client group g >= 1 sees the task differently: 'label_permutation' (its own "
                        "fixed permutation of the labels) or 'rotation' (images rotated by g*90 degrees)",
                        one_of(CONFLICT_KINDS))
    groups: int = setting(2, "number of contiguous client groups for conflict.kind", AT_LEAST_1)
    num_clients: int = shared("num_clients")
    seed: int = shared("seed")

    def check(self) -> None:
        if self.kind != "none" and self.groups > self.num_clients:
            raise ConfigError(f"config key 'conflict.groups': {self.groups} groups need at least as many "
                              f"clients (num_clients={self.num_clients})")
        if self.kind == "rotation" and self.groups > ROTATION_GROUPS_MAX:
            raise ConfigError(f"config key 'conflict.groups': rotation has only {ROTATION_GROUPS_MAX} distinct "
                              f"groups (0, 90, 180, 270 degrees), got {self.groups}")
