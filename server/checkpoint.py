"""Server checkpoint and resume: the run's state after each complete round, written atomically.

Files in the run folder (``out``):

``checkpoint-r<k>.npz``
    the arrays after round k: ``targets/<partition>`` (each client's next
    distillation targets) or ``arrays/<name>`` (FedAvg's global weights).
``checkpoint.json``
    the round k, the resolved config, the name of the ``.npz`` above and how
    many round records it covers: those are the first lines of the run's
    ``metrics.jsonl`` (written before the checkpoint, read back on resume), so a
    checkpoint costs the same in round 1000 as in round 1.

The ``.npz`` is written first under its round's own name, then
``checkpoint.json`` is switched to it with one ``os.replace``; older ``.npz``
files are removed only after that. A crash at any moment therefore leaves a
``checkpoint.json`` that points at a complete arrays file.

Node ids are not saved: they change whenever a process restarts. After a
resume the server asks the nodes it does not know which partition they hold
(:func:`identify_nodes`) before it sends them targets. The clients' models are
not here either: each node keeps its own (``clients/node_checkpoint.py``).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from flwr.app import Array, ArrayRecord

from fedkd import protocol
from fedkd.config import Config, ConfigError, flatten, make_config, parse_assignments
from fedkd.metrics import write_json_atomic
from server.dispatch import send_and_receive

log = logging.getLogger("fedkd.server")

CHECKPOINT_FILE = "checkpoint.json"
METRICS_FILE = "metrics.jsonl"  # RunRecorder's, in the same folder
# Keys that steer only the server process: clients never see them, so a resumed
# run sends byte-identical messages to an uninterrupted one.
SERVER_ONLY_KEYS = ("server.resume", "server.stop_after_round")
# What a resume may change: how long to run, where and on what; never what is learnt.
MAY_CHANGE = ("rounds", "out", "device", "save_models", "data_root")
MAY_CHANGE_PREFIXES = ("server.", "sim.")


class CheckpointError(ConfigError):
    """There is no usable checkpoint, or the config does not match the one it was made with."""


@dataclass
class Checkpoint:
    """The server's state after round ``round``."""

    round: int
    config: dict
    rounds: list[dict]
    targets: dict[int, np.ndarray]          # per-partition targets (distillation algorithms)
    arrays: dict[str, np.ndarray] | None    # global weights, in order (fedavg only)


# ---------------------------------------------------------------- writing

def save_checkpoint(out_dir: str | Path, round_num: int, cfg: Mapping[str, Any], state,
                    num_records: int) -> Path:
    """Checkpoint ``state`` (the loop's fusion or FedAvg state) after ``round_num``; return the JSON path.

    ``num_records``: how many lines of ``<out_dir>/metrics.jsonl`` belong to the run so far (already written).
    """
    out = Path(out_dir)
    arrays_name = f"checkpoint-r{round_num}.npz"
    blobs: dict[str, np.ndarray] = {}
    array_keys: list[str] = []
    for pid, target in getattr(state, "targets", {}).items():
        blobs[f"targets/{int(pid)}"] = np.asarray(target)
    if getattr(state, "arrays", None) is not None:
        for name, array in state.arrays.items():
            blobs[f"arrays/{name}"] = array.numpy()
            array_keys.append(name)
    tmp = out / f"{arrays_name}.tmp.npz"  # np.savez appends .npz to names without it
    np.savez(tmp, **blobs)
    os.replace(tmp, out / arrays_name)
    write_json_atomic(out / CHECKPOINT_FILE, {
        "round": int(round_num),
        "arrays_file": arrays_name,
        "array_keys": array_keys,
        "config": dict(cfg),
        "records": int(num_records),
    })
    for old in out.glob("checkpoint-r*.npz"):
        if old.name != arrays_name:
            old.unlink(missing_ok=True)
    return out / CHECKPOINT_FILE


# ---------------------------------------------------------------- reading

def load_checkpoint(out_dir: str | Path) -> Checkpoint:
    """Read the last complete checkpoint in ``out_dir`` or raise :class:`CheckpointError`."""
    out = Path(out_dir)
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist (was the run started with "
                              "server.checkpoint=true and this --out folder?)")
    try:
        meta = json.loads(path.read_text())
        with np.load(out / meta["arrays_file"]) as npz:
            blobs = {name: npz[name] for name in npz.files}
        rounds = meta["rounds"] if "rounds" in meta else _round_records(out, int(meta["records"]))
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint in {out} cannot be read: {exc}") from None
    targets = {int(name.split("/", 1)[1]): value for name, value in blobs.items() if name.startswith("targets/")}
    arrays = None
    if meta["array_keys"]:
        arrays = {name: blobs[f"arrays/{name}"] for name in meta["array_keys"]}
    return Checkpoint(round=int(meta["round"]), config=meta["config"], rounds=rounds,
                      targets=targets, arrays=arrays)


def _round_records(out: Path, count: int) -> list[dict]:
    """The first ``count`` lines of ``metrics.jsonl``; later ones (a round after the checkpoint) are ignored."""
    records = []
    if count:
        with open(out / METRICS_FILE) as fh:
            for line in fh:
                records.append(json.loads(line))
                if len(records) == count:
                    break
    if len(records) < count:
        raise ValueError(f"{METRICS_FILE} holds {len(records)} round records, the checkpoint needs {count}")
    return records


def check_compatible(saved: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
    """Refuse to resume with a config that changes what is learnt; name the keys that differ."""
    saved_cfg = make_config(saved)  # fills keys added since the checkpoint with their defaults
    differ = [k for k in cfg if k not in MAY_CHANGE and not k.startswith(MAY_CHANGE_PREFIXES)
              and saved_cfg[k] != cfg[k]]
    if differ:
        changes = ", ".join(f"{k}: {saved_cfg[k]!r} -> {cfg[k]!r}" for k in differ)
        raise CheckpointError(f"cannot resume: the checkpoint was made with other settings ({changes}); "
                              f"only {', '.join(MAY_CHANGE)} and server.*/sim.* may change")


def load_for_resume(out_dir: str | Path, cfg: Config) -> Checkpoint:
    """The checkpoint to continue from, checked against ``cfg``."""
    ckpt = load_checkpoint(out_dir)
    check_compatible(ckpt.config, cfg)
    return ckpt


def restore(ckpt: Checkpoint, state, recorder) -> int:
    """Put the checkpoint back into the loop's state and run record; return the last complete round."""
    if hasattr(state, "targets"):
        state.targets = dict(ckpt.targets)
    if ckpt.arrays is not None and hasattr(state, "arrays"):
        state.arrays = ArrayRecord({name: Array(value) for name, value in ckpt.arrays.items()})
    for record in ckpt.rounds:  # rewrites metrics.jsonl up to the checkpoint, dropping any later lines
        recorder.log_round(record)
    log.warning("resuming after round %d from %s", ckpt.round, recorder.out_dir / CHECKPOINT_FILE)
    return ckpt.round


# ---------------------------------------------------------------- around the loop

def client_run_config(cfg: Config) -> dict:
    """The run config sent to clients: everything but the server-only keys."""
    return {k: v for k, v in cfg.to_flower().items() if k not in SERVER_ONLY_KEYS}


def identify_nodes(grid, node_ids: Iterable[int], num_partitions: int, timeout: float) -> dict[int, int]:
    """Ask nodes which partition they hold (node ids change across restarts); {node id: partition}."""
    messages = [protocol.build_identify_message(nid) for nid in node_ids]
    found: dict[int, int] = {}
    for reply in send_and_receive(grid, messages, timeout=timeout):
        try:
            found[reply.metadata.src_node_id] = protocol.parse_identify_reply(reply, num_partitions)
        except protocol.InvalidReply as exc:
            log.warning("node %s did not say which partition it holds: %s", reply.metadata.src_node_id, exc)
    log.info("identified %d of %d nodes", len(found), len(messages))
    return found


def resume_config(out_dir: str | Path, config_file: str | Path | None = None,
                  assignments: Iterable[str] = ()) -> Config:
    """For ``fedkd simulate --resume``: the checkpoint's config, then a config file and ``--set`` on top.

    The result has ``server.resume=true`` and, unless set again, ``server.stop_after_round=0``;
    it is checked against the checkpoint before anything starts.
    """
    import tomllib

    ckpt = load_checkpoint(out_dir)
    overrides: dict[str, Any] = {"server.resume": True, "server.stop_after_round": 0}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            overrides.update(flatten(tomllib.loads(path.read_text())))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    overrides.update(parse_assignments(assignments))
    cfg = make_config(overrides, base=ckpt.config)
    check_compatible(ckpt.config, cfg)
    return cfg
