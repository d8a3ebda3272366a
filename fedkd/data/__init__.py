"""Datasets from local files, client partitioners, and federation splits (transfer set, test sets).

Typical use::

    from fedkd.data import FederationSpec, build_federation

    fed = build_federation(FederationSpec(dataset="digits", num_clients=10, alpha=0.1, seed=0))
    client = fed.clients[3]            # client.train_x, client.train_y, client.test_x, ...
    fed.transfer_x, fed.transfer_fingerprint

Arrays handed out here are cached per process and read-only; copy before changing them.
"""

from fedkd.data.datasets import (
    DATASET_NAMES,
    Dataset,
    DatasetNotFoundError,
    default_data_root,
    load_dataset,
)
from fedkd.data.federation import (
    EVAL_SPLITS,
    ClientData,
    Federation,
    FederationSpec,
    build_federation,
    fingerprint,
)
from fedkd.data.idx import IdxFormatError, parse_idx, read_idx
from fedkd.data.partition import PARTITION_SCHEMES, PartitionError, label_histogram, partition_labels

__all__ = [
    "DATASET_NAMES",
    "EVAL_SPLITS",
    "PARTITION_SCHEMES",
    "ClientData",
    "Dataset",
    "DatasetNotFoundError",
    "Federation",
    "FederationSpec",
    "IdxFormatError",
    "PartitionError",
    "build_federation",
    "default_data_root",
    "fingerprint",
    "label_histogram",
    "load_dataset",
    "parse_idx",
    "partition_labels",
    "read_idx",
]
