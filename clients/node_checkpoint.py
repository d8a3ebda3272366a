"""The node-side checkpoint: each node keeps its own state on its own disk after every round.

A client's model lives in ``context.state``, which dies with the process that
holds it (the SuperNode in deployment, the Ray actors in simulation). For a
resumed run to end exactly where an uninterrupted one would, a node writes its
whole ``context.state`` (model weights, privacy accountant counters, anything
else kept there) after every round, and a node that starts with an empty state
reads back the file of the round before the one it is asked to train.

Files: ``<folder>/client_<partition>_round_<r>.state``, written through a
temporary file and ``os.replace``. The two latest rounds are kept: if the
server dies after the nodes finished round r but before its own checkpoint of
round r, it resumes at round r again and the nodes need their round r-1 state.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from flwr.app import Context

from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as RecordDictProto

log = logging.getLogger("fedkd.client")
KEEP_ROUNDS = 2


def state_path(folder: Path, partition_id: int, round_num: int) -> Path:
    return Path(folder) / f"client_{partition_id}_round_{round_num}.state"


def save_node_state(folder: Path, partition_id: int, round_num: int, context: Context) -> Path:
    """Write this node's state after ``round_num`` atomically; drop files older than the kept rounds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = state_path(folder, partition_id, round_num)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(state_to_bytes(context.state))
    os.replace(tmp, path)
    pattern = re.compile(rf"client_{partition_id}_round_(\d+)\.state$")
    for old in folder.iterdir():
        match = pattern.match(old.name)
        if match and int(match.group(1)) <= round_num - KEEP_ROUNDS:
            old.unlink(missing_ok=True)
    return path


def restore_node_state(folder: Path, partition_id: int, round_num: int, context: Context) -> bool:
    """Fill an empty ``context.state`` from the state saved after ``round_num``; False if there is none."""
    path = state_path(folder, partition_id, round_num)
    if not path.is_file():
        log.warning("partition %d: no node checkpoint %s; this node starts from a fresh model", partition_id, path)
        return False
    saved = state_from_bytes(path.read_bytes())
    for key in saved.keys():
        context.state[key] = saved[key]
    log.info("partition %d: restored its state after round %d from %s", partition_id, round_num, path)
    return True


def state_to_bytes(state: RecordDict) -> bytes:
    """A node's whole ``context.state`` as bytes (the node-side checkpoint)."""
    return recorddict_to_proto(state).SerializeToString()


def state_from_bytes(blob: bytes) -> RecordDict:
    proto = RecordDictProto()
    proto.ParseFromString(blob)
    return recorddict_from_proto(proto)
