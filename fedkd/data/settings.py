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
