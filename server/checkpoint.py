"""Server checkpoint and resume: the run's state after each complete round, written atomically.

Files in the run folder (``out``):

``checkpoint-r<k>.npz``
    the strategy's ``state_dict()`` after round k (each client's next targets,
    or FedAvg's global weights, and the strategy's counters).
``checkpoint.json``
    the round k, the resolved config, the name of the ``.npz`` above and how
    many round records it covers: those are the first lines of the run's
    ``metrics.jsonl`` (written before the checkpoint, read back on resume), so a
    checkpoint costs the same in round 1000 as in round 1.

The ``.npz`` is written first under its round's own name, then
``checkpoint.json`` is switched to it with one ``os.replace``; older ``.npz``
files are removed only after that. A crash at any moment therefore leaves a
``checkpoint.json`` that points at a complete arrays file.

On resume nothing in these files is trusted blindly: a file that cannot be read,
a config that changes what is learnt, and any restored array that a reply could
not have carried (``load_state_dict`` validates each) are refused with the file
and the problem named. Node ids are not saved (they change when processes
restart); nodes are identified again (``server/identity.py``). The clients'
models are not here either: each node keeps its own state.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from fedkd.config import Config, ConfigError, make_config, parse_assignments, read_toml
from fedkd.run_records import write_json_atomic

log = logging.getLogger("fedkd.server")

CHECKPOINT_FILE = "checkpoint.json"
METRICS_FILE = "metrics.jsonl"  # RunRecorder's, in the same folder
# What a resume may change: how long to run, where and on what; never what is learnt.
MAY_CHANGE = ("rounds", "out", "device", "save_models", "data_root", "fault.stop_after_round")
MAY_CHANGE_PREFIXES = ("server.", "sim.", "metrics.")


class CheckpointError(ConfigError):
    """There is no usable checkpoint, or the config does not match the one it was made with."""


@dataclass
class Checkpoint:
    """The server's state after round ``round``."""

    round: int
    config: dict
    rounds: list[dict]
    state: dict[str, np.ndarray]
    path: Path


# ---------------------------------------------------------------- writing

def save_checkpoint(out_dir: str | Path, round_num: int, cfg: Mapping[str, Any], state: dict[str, np.ndarray],
                    num_records: int) -> Path:
    """Checkpoint a strategy's ``state_dict()`` after ``round_num``; return the JSON path.

    ``num_records``: how many lines of ``<out_dir>/metrics.jsonl`` belong to the run so far (already written).
    """
    out = Path(out_dir)
    arrays_name = f"checkpoint-r{round_num}.npz"
    tmp = out / f"{arrays_name}.tmp.npz"  # np.savez appends .npz to names without it
    np.savez(tmp, **{name: np.asarray(value) for name, value in state.items()})
    os.replace(tmp, out / arrays_name)
    write_json_atomic(out / CHECKPOINT_FILE, {
        "round": int(round_num),
        "arrays_file": arrays_name,
        "config": dict(cfg),
        "records": int(num_records),
    })
    for old in out.glob("checkpoint-r*.npz"):
        if old.name != arrays_name:
            old.unlink(missing_ok=True)
    return out / CHECKPOINT_FILE


# ---------------------------------------------------------------- reading

def load_checkpoint(out_dir: str | Path) -> Checkpoint:
    """Read the last complete checkpoint in ``out_dir`` or raise :class:`CheckpointError` naming the file."""
    out = Path(out_dir)
    path = out / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist (was the run started with "
                              "server.checkpoint=true and this --out folder?)")
    try:
        meta = json.loads(path.read_text())
        round_num, arrays_name, records = int(meta["round"]), str(meta["arrays_file"]), int(meta["records"])
        config = dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a fedkd checkpoint: {type(exc).__name__}: {exc}") from None
    if Path(arrays_name).name != arrays_name or round_num < 1:
        raise CheckpointError(f"{path} names an arrays file {arrays_name!r} or round {round_num} it may not")
    arrays_path = out / arrays_name
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            state = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path} points at {arrays_path}, which does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{arrays_path} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    try:
        rounds = _round_records(out, records)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{out / METRICS_FILE} does not hold the {records} round records the checkpoint "
                              f"needs: {exc}") from None
    return Checkpoint(round=round_num, config=config, rounds=rounds, state=state, path=arrays_path)


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
    try:
        saved_cfg = make_config(saved)  # fills keys added since the checkpoint with their defaults
    except ConfigError as exc:
        raise CheckpointError(f"the checkpoint's config is not valid here: {exc}") from None
    differ = [k for k in cfg if k not in MAY_CHANGE and not k.startswith(MAY_CHANGE_PREFIXES)
              and saved_cfg[k] != cfg[k]]
    if differ:
        changes = ", ".join(f"{k}: {saved_cfg[k]!r} -> {cfg[k]!r}" for k in differ)
        raise CheckpointError(f"cannot resume: the checkpoint was made with other settings ({changes}); "
                              f"only {', '.join(MAY_CHANGE)} and server.*/sim.*/metrics.* may change")


def load_for_resume(out_dir: str | Path, cfg: Config) -> Checkpoint:
    """The checkpoint to continue from, checked against ``cfg``."""
    ckpt = load_checkpoint(out_dir)
    check_compatible(ckpt.config, cfg)
    return ckpt


def restore(ckpt: Checkpoint, strategy, recorder) -> int:
    """Put the checkpoint back into the strategy and run record; return the last complete round."""
    try:
        strategy.load_state_dict(ckpt.state)
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.path} cannot be restored: {exc}") from None
    for record in ckpt.rounds:  # rewrites metrics.jsonl up to the checkpoint, dropping any later lines
        recorder.log_round(record)
    log.warning("resuming after round %d from %s", ckpt.round, recorder.out_dir / CHECKPOINT_FILE)
    return ckpt.round


def resume_config(out_dir: str | Path, config_file: str | Path | None = None,
                  assignments: Iterable[str] = ()) -> Config:
    """For ``fedkd simulate --resume``: the checkpoint's config, then a config file and ``--set`` on top.

    The result has ``server.resume=true`` and, unless set again, ``fault.stop_after_round=0``;
    it is checked against the checkpoint before anything starts.
    """
    ckpt = load_checkpoint(out_dir)
    overrides: dict[str, Any] = {"server.resume": True, "fault.stop_after_round": 0}
    if config_file is not None:
        overrides.update(read_toml(config_file))
    overrides.update(parse_assignments(assignments))
    try:
        cfg = make_config(overrides, base=ckpt.config)
    except ConfigError as exc:
        raise CheckpointError(f"cannot resume from {out_dir}: {exc}") from None
    check_compatible(ckpt.config, cfg)
    return cfg
