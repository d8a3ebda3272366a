"""Server checkpoint and resume: the run's state after each complete round, written atomically and checked whole.

Files in the run folder (``out``):

``checkpoint-r<k>.npz``
    the strategy's ``state_dict()`` after round k (each client's next targets,
    or FedAvg's global weights, and the strategy's counters), uncompressed.
``checkpoint.json``
    the round k, the resolved config, the name of the ``.npz`` above, how many
    round records it covers (the first k lines of the run's ``metrics.jsonl``,
    written before it, read back on resume: a checkpoint costs the same in round
    1000 as in round 1), and digests: SHA-256 of every array (name, dtype, shape,
    bytes), a chained digest of those record lines, and one of the file itself.

Writing: the ``.npz`` under a temporary name, renamed to its round's own name;
then ``checkpoint.json`` through a temporary file and one ``os.replace``; older
``.npz`` files are removed only after that. A crash at any moment therefore leaves
a ``checkpoint.json`` that points at a complete arrays file.

Resuming reads and checks *everything* before any file is touched
(:func:`load_for_resume`, then :func:`restore` once the strategy accepted the
state): a torn or edited file fails its digest and is refused naming the entry;
every restored value is bounded (round = records, counts <= server.max_num_examples,
rounds within the run, probabilities exact, names canonical), the config must equal
the run's except what a resume may change, and each strategy's ``load_state_dict``
validates its arrays like replies. Paths must be regular files (no FIFO or device),
and the archive is read only after its declared sizes were checked. A refused resume
therefore leaves every file byte-identical, and putting the good checkpoint back works.

A digest is not a signature: someone who can write the run folder can also
recompute it. It catches torn writes, bit rot and edits made without fedkd.
Node ids are not saved (they change when processes restart); nodes are identified
again (``server/identity.py``). The clients' models are not here either: each node
keeps its own state.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from fedkd.config import Config, ConfigError, make_config, parse_assignments, read_toml
from fedkd.files import UnsafeInput, clip, npz_members, read_bytes, regular_file
from fedkd.run_records import write_json_atomic

log = logging.getLogger("fedkd.server")

CHECKPOINT_FILE = "checkpoint.json"
METRICS_FILE = "metrics.jsonl"  # RunRecorder's, in the same folder
RUN_CONFIG_FILE = "config.json"   # RunRecorder's too
FORMAT = 2  # checkpoint.json with digests
MAX_CHECKPOINT_JSON_BYTES = 4 * 2**20  # the config and a few numbers
# What a resume may change: how long to run, where and on what; never what is learnt.
MAY_CHANGE = ("rounds", "out", "device", "save_models", "data_root", "fault.stop_after_round")
MAY_CHANGE_PREFIXES = ("server.", "sim.", "metrics.")
# Every entry a strategy's state_dict writes: <kind>/<client id> (canonical decimal), arrays/<name>, counters.
_CLIENT_ENTRY = re.compile(r"(targets|latest|latest_meta|latest_share)/(0|[1-9][0-9]{0,8})")


class CheckpointError(ConfigError):
    """There is no usable checkpoint, or the config does not match the one it was made with."""


@dataclass
class Checkpoint:
    """The server's state after round ``round``, read and digest-checked."""

    round: int
    config: dict
    rounds: list[dict]
    state: dict[str, np.ndarray]
    path: Path
    records_text: bytes = b""  # the first ``len(rounds)`` lines of metrics.jsonl, exactly as written


# ---------------------------------------------------------------- digests

def array_digest(name: str, value: np.ndarray) -> str:
    value = np.ascontiguousarray(value)
    h = hashlib.sha256(f"{name}|{value.dtype.str}|{value.shape}|".encode())
    h.update(value.tobytes())
    return h.hexdigest()


def _chain(previous: str, line: bytes) -> str:
    """Records digest after one more metrics.jsonl line: extendable each round, checkable line by line."""
    return hashlib.sha256(previous.encode() + b"\n" + line).hexdigest()


def _json_digest(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


# ---------------------------------------------------------------- writing

def save_checkpoint(out_dir: str | Path, round_num: int, cfg: Mapping[str, Any], state: dict[str, np.ndarray],
                    num_records: int) -> Path:
    """Checkpoint a strategy's ``state_dict()`` after ``round_num``; return the JSON path.

    ``num_records``: how many lines of ``<out_dir>/metrics.jsonl`` belong to the run so far (already written).
    """
    out = Path(out_dir)
    arrays_name = f"checkpoint-r{round_num}.npz"
    arrays = {name: np.asarray(value) for name, value in state.items()}
    tmp = out / f"{arrays_name}.tmp.npz"  # np.savez appends .npz to names without it
    np.savez(tmp, **arrays)
    os.replace(tmp, out / arrays_name)
    records_bytes, records_digest = _records_digest(out, num_records)
    meta = {
        "format": FORMAT,
        "round": int(round_num),
        "arrays_file": arrays_name,
        "arrays": {name: array_digest(name, value) for name, value in arrays.items()},
        "config": dict(cfg),
        "records": int(num_records),
        "records_bytes": records_bytes,
        "records_digest": records_digest,
    }
    meta["digest"] = _json_digest(meta)
    write_json_atomic(out / CHECKPOINT_FILE, meta)
    for old in out.glob("checkpoint-r*.npz"):
        if old.name != arrays_name:
            old.unlink(missing_ok=True)
    return out / CHECKPOINT_FILE


def _records_digest(out: Path, count: int) -> tuple[int, str]:
    """(bytes, chained digest) of the first ``count`` lines of metrics.jsonl.

    Only the lines written since the previous checkpoint are read: that checkpoint's own numbers are the
    starting point (this process wrote it, or checked it when resuming).
    """
    done, offset, digest = 0, 0, ""
    try:
        previous = json.loads((out / CHECKPOINT_FILE).read_text())
        if previous.get("format") == FORMAT and int(previous["records"]) <= count:
            done, offset, digest = int(previous["records"]), int(previous["records_bytes"]), previous["records_digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if done == count:
        return offset, digest
    with open(out / METRICS_FILE, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            digest = _chain(digest, line)
            offset += len(line)
            done += 1
            if done == count:
                break
    if done < count:
        raise RuntimeError(f"{out / METRICS_FILE} holds {done} round records, the checkpoint needs {count}")
    return offset, digest


# ---------------------------------------------------------------- reading

def load_checkpoint(out_dir: str | Path) -> Checkpoint:
    """Read and digest-check the last checkpoint in ``out_dir`` or raise :class:`CheckpointError` naming what is
    wrong; nothing is written."""
    out = Path(out_dir)
    path = out / CHECKPOINT_FILE
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist (was the run started with "
                              "server.checkpoint=true and this --out folder?)")
    try:
        meta = json.loads(read_bytes(path, MAX_CHECKPOINT_JSON_BYTES, "checkpoint"))
        if not isinstance(meta, dict):
            raise TypeError(f"a JSON {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {clip(meta.get('format'))!r}, expected {FORMAT} (written by another fedkd "
                             "version, or edited)")
        round_num, arrays_name, records = _int(meta["round"]), str(meta["arrays_file"]), _int(meta["records"])
        records_bytes, config = _int(meta["records_bytes"]), dict(meta["config"])
        digests, records_digest = dict(meta["arrays"]), str(meta["records_digest"])
    except UnsafeInput as exc:
        raise CheckpointError(str(exc)) from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not a fedkd checkpoint: {type(exc).__name__}: {clip(exc)}") from None
    if meta.get("digest") != _json_digest(meta):
        raise CheckpointError(f"{path} was edited or torn: its content does not match its digest")
    if Path(arrays_name).name != arrays_name or arrays_name != f"checkpoint-r{round_num}.npz" or round_num < 1:
        raise CheckpointError(f"{path} names an arrays file {clip(arrays_name)!r} or round {round_num} it may not")
    if records != round_num:
        raise CheckpointError(f"{path}: round {round_num} but {records} round records; every round writes one")
    arrays_path = out / arrays_name
    state = _read_arrays(arrays_path, digests)
    text, rounds = _round_records(out, records, records_bytes, records_digest)
    return Checkpoint(round=round_num, config=config, rounds=rounds, state=state, path=arrays_path,
                      records_text=text)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ValueError(f"{clip(value)!r} is not a count")
    return value


def _read_arrays(path: Path, digests: dict) -> dict[str, np.ndarray]:
    """The arrays of ``path``: its members declared and stored uncompressed (bounded by the file's size),
    exactly the entries ``checkpoint.json`` lists, each matching its digest."""
    try:
        members = npz_members(path, max_bytes=_file_size(path), what="checkpoint arrays", stored_only=True)
    except UnsafeInput as exc:
        raise CheckpointError(f"the checkpoint's {exc}") from None
    names = sorted(m[:-len(".npy")] for m in members if m.endswith(".npy"))
    if len(names) != len(members) or names != sorted(digests):
        raise CheckpointError(f"{path} holds entries {clip(names)} but the checkpoint lists {clip(sorted(digests))}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            state = {name: npz[name] for name in names}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({type(exc).__name__}: {clip(exc)})") from None
    for name, value in state.items():
        if array_digest(name, value) != digests[name]:
            raise CheckpointError(f"{path}: entry {name!r} was changed after it was written (digest mismatch)")
    return state


def _file_size(path: Path) -> int:
    try:
        return regular_file(path, "checkpoint arrays").stat().st_size
    except UnsafeInput as exc:
        raise CheckpointError(f"the checkpoint points at {exc}") from None


def _round_records(out: Path, count: int, nbytes: int, digest: str) -> tuple[bytes, list[dict]]:
    """The first ``count`` lines of ``metrics.jsonl`` (``nbytes`` bytes), checked against ``digest``; later lines
    (a round after the checkpoint) are ignored."""
    path = out / METRICS_FILE
    try:
        size = regular_file(path, "the run's round records").stat().st_size
        if size < nbytes:
            raise ValueError(f"it has {size} bytes, the checkpoint's {count} round records need {nbytes}")
        with open(path, "rb") as fh:
            text = fh.read(nbytes)
    except (UnsafeInput, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} does not hold the round records the checkpoint needs: {exc}") from None
    lines = text.splitlines(keepends=True)
    if len(lines) != count or (lines and not lines[-1].endswith(b"\n")):
        raise CheckpointError(f"{path} does not hold the {count} round records the checkpoint needs "
                              f"({len(lines)} lines in its first {nbytes} bytes)")
    chained = ""
    for line in lines:
        chained = _chain(chained, line)
    if chained != digest:
        raise CheckpointError(f"{path}: the first {count} round records were changed after the checkpoint "
                              "(digest mismatch)")
    records = []
    for i, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{path} line {i} is not a round record: {type(exc).__name__}") from None
        if not isinstance(record, dict) or record.get("round") != i:
            raise CheckpointError(f"{path} line {i} is not the record of round {i}")
        records.append(record)
    return text, records


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


def check_state(ckpt: Checkpoint, settings, weights: bool) -> None:
    """Bounds on every restored value that a strategy's ``load_state_dict`` does not know (it checks arrays like
    replies): canonical entry names, rounds within the run, counts within ``server.max_num_examples``, no
    negative probability at all (fusion never makes one). ``weights``: a FedAvg checkpoint (``arrays/*``)."""
    where = ckpt.path
    for name, value in ckpt.state.items():
        if name == "failed_rounds":
            if value.shape != (1,) or value.dtype.kind not in "iu" or not 0 <= int(value[0]) <= ckpt.round:
                raise CheckpointError(f"{where}: entry 'failed_rounds' {clip(value)} is not a count within the "
                                      f"{ckpt.round} rounds run")
            continue
        if weights:
            if not name.startswith("arrays/"):
                raise CheckpointError(f"{where}: unexpected entry {clip(name)!r} in a FedAvg checkpoint")
            continue
        match = _CLIENT_ENTRY.fullmatch(name)
        if match is None:
            raise CheckpointError(f"{where}: unexpected entry {clip(name)!r}")
        kind, client = match.groups()
        if kind == "latest_meta":
            if value.shape != (2,) or value.dtype.kind not in "iu" or f"latest/{client}" not in ckpt.state:
                raise CheckpointError(f"{where}: entry {name!r} is malformed or has no latest/{client}")
            rnd, count = int(value[0]), int(value[1])
            if not 1 <= rnd <= ckpt.round:
                raise CheckpointError(f"{where}: entry {name!r} says round {rnd}, outside rounds 1..{ckpt.round}")
            if not 1 <= count <= settings.max_num_examples:
                raise CheckpointError(f"{where}: entry {name!r} says {count} examples, outside [1, "
                                      f"{settings.max_num_examples}] (server.max_num_examples)")
        elif kind == "latest_share":  # the share of a latest upload that is the client's own (server.echo_ramp)
            if (value.shape != (1,) or value.dtype.kind != "f" or not 0 <= float(value[0]) <= 1
                    or f"latest/{client}" not in ckpt.state):
                raise CheckpointError(f"{where}: entry {name!r} {clip(value)} is not a share within [0, 1] of a "
                                      f"latest/{client}")
        elif value.dtype.kind == "f" and bool(np.any(value < 0)):
            raise CheckpointError(f"{where}: entry {name!r} holds negative probabilities ({float(value.min()):.4g})")


def load_for_resume(out_dir: str | Path, cfg: Config) -> Checkpoint:
    """The checkpoint to continue from, read whole and checked against ``cfg``; nothing is written."""
    ckpt = load_checkpoint(out_dir)
    check_compatible(ckpt.config, cfg)
    _check_same_run(Path(out_dir), ckpt)
    check_state(ckpt, cfg.server, weights=cfg.run.exchanges_weights)
    return ckpt


def _check_same_run(out: Path, ckpt: Checkpoint) -> None:
    """The run's ``config.json`` (written when it started) is a second witness of what it learns."""
    path = out / RUN_CONFIG_FILE
    try:
        started = json.loads(read_bytes(path, MAX_CHECKPOINT_JSON_BYTES, "the run's config"))
        differ = [k for k in set(started) | set(ckpt.config) if k not in MAY_CHANGE
                  and not k.startswith(MAY_CHANGE_PREFIXES) and started.get(k) != ckpt.config.get(k)]
    except (UnsafeInput, ValueError, RecursionError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path} is not the run's config: {clip(exc)}") from None
    if differ:
        raise CheckpointError(f"{out / CHECKPOINT_FILE} and {path} disagree on {clip(', '.join(sorted(differ)))}: "
                              "one of them was edited")


def restore_state(ckpt: Checkpoint, strategy) -> int:
    """Put the checkpoint into the strategy (which validates each array); return the last complete round.
    Touches no file, so a refusal here leaves the run folder as it was."""
    try:
        strategy.load_state_dict(ckpt.state)
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.path} cannot be restored: {clip(exc, 500)}") from None
    return ckpt.round


def restore_records(ckpt: Checkpoint, recorder) -> None:
    """Put the round records back exactly as they were written (dropping any line of a round after the
    checkpoint), so the next checkpoint's records digest extends this one's."""
    (recorder.out_dir / METRICS_FILE).write_bytes(ckpt.records_text)
    recorder.rounds = list(ckpt.rounds)
    log.warning("resuming after round %d from %s", ckpt.round, recorder.out_dir / CHECKPOINT_FILE)


def restore(ckpt: Checkpoint, strategy, recorder) -> int:
    """Put the checkpoint back into the strategy and run record; return the last complete round."""
    round_num = restore_state(ckpt, strategy)
    restore_records(ckpt, recorder)
    return round_num


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
