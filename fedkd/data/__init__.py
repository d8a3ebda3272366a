"""Datasets from local files, client partitioners, and federation splits (transfer set, test sets).

Typical use::

    from fedkd.data import FederationSpec, build_federation

    fed = build_federation(FederationSpec(dataset="digits", num_clients=10, alpha=0.1, seed=0))
    client = fed.clients[3]            # client.train_x, client.train_y, client.test_x, ...
    fed.transfer_x, fed.transfer_fingerprint

A node's own data (a deployment: each node reads only its own folder) and the public transfer set::

    from fedkd.data import FolderSource, load_transfer_set

    transfer = load_transfer_set("transfer/")          # classes.txt + images or transfer.npz
    node = FolderSource.for_transfer("node-0/", transfer).load()   # train/, test/ (ImageFolder or .npz)

``SimulatedSource(federation, client_id)`` gives a simulated client through the same
``NodeDataSource`` interface, and ``export_federation`` writes a simulated federation to folders.

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
from fedkd.data.export import ExportError, ExportManifest, NodeExport, export_federation, to_uint8_exact
from fedkd.data.idx import IdxFormatError, parse_idx, read_idx
from fedkd.data.node_data import (
    FolderSource,
    NodeData,
    NodeDataError,
    NodeDataSource,
    SimulatedSource,
    load_node_data,
    load_split,
)
from fedkd.data.partition import PARTITION_SCHEMES, PartitionError, label_histogram, partition_labels
from fedkd.data.transfer import (
    DataFolderError,
    TransferSet,
    TransferSetError,
    load_transfer_set,
    read_classes,
    safe_class_name,
)

__all__ = [
    "DATASET_NAMES",
    "EVAL_SPLITS",
    "PARTITION_SCHEMES",
    "ClientData",
    "DataFolderError",
    "Dataset",
    "DatasetNotFoundError",
    "ExportError",
    "ExportManifest",
    "Federation",
    "FederationSpec",
    "FolderSource",
    "IdxFormatError",
    "NodeData",
    "NodeDataError",
    "NodeDataSource",
    "NodeExport",
    "PartitionError",
    "SimulatedSource",
    "TransferSet",
    "TransferSetError",
    "build_federation",
    "default_data_root",
    "export_federation",
    "fingerprint",
    "label_histogram",
    "load_dataset",
    "load_node_data",
    "load_split",
    "load_transfer_set",
    "parse_idx",
    "partition_labels",
    "read_classes",
    "read_idx",
    "safe_class_name",
    "to_uint8_exact",
]
