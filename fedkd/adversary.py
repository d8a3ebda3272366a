"""Hostile clients for robustness runs: malicious soft labels and malformed replies.

Two kinds of misbehaviour, both switched on from the run config and applied by
the ClientApp after an honest local round (so a hostile client's own model,
and its accuracy, are those of an honest one):

* **Malicious knowledge** (``attack.kind``, ``attack.num_malicious`` or
  ``attack.clients``): a well-formed reply whose soft labels lie. ``random``
  sends rows drawn uniformly from the probability simplex (Dirichlet(1)),
  ``flip`` sends its honest soft labels with the classes reversed (c -> C-1-c).
  The server cannot tell these from honest replies by form; only fusion can
  limit their influence.
* **Malformed replies** (``attack.malformed``): ``CLIENT:ROUND:KIND`` entries
  (``ROUND`` may be ``*`` for every round) that break the protocol in one of
  the ways of :data:`CATALOGUE`. The server must reject each with the
  protocol reason listed there and carry on with the valid replies. This is
  fault injection for tests and for docs/robustness.md, not a threat model.

Everything here is plain numpy on the reply's fields (the keyword arguments of
``fedkd.protocol.build_reply_content``), so it needs no Flower and no Ray to test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from fedkd.config import ConfigError
from fedkd.seeding import derive_seed

ATTACK_KINDS = ("none", "random", "flip")


class InjectedFault(RuntimeError):
    """Raised inside a ClientApp on purpose: Flower turns it into an error reply."""


# ---------------------------------------------------------------- malicious knowledge

def malicious_clients(cfg: Mapping[str, Any]) -> frozenset[int]:
    """Partition ids that upload malicious soft labels (empty when ``attack.kind`` is none)."""
    if cfg["attack.kind"] == "none":
        return frozenset()
    if cfg["attack.clients"]:
        return frozenset(int(x) for x in cfg["attack.clients"])
    n, k = cfg["num_clients"], cfg["attack.num_malicious"]
    return frozenset(range(n - k, n))


def random_soft_labels(num_rows: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(M, C) float32 rows drawn uniformly from the simplex: knowledge that carries no information."""
    rows = rng.dirichlet(np.ones(num_classes), size=num_rows)
    return (rows / rows.sum(axis=1, keepdims=True)).astype(np.float32)


def flipped_soft_labels(soft_labels: np.ndarray) -> np.ndarray:
    """Class c -> C-1-c: confident, well-formed and wrong (a label-flipping client)."""
    return np.ascontiguousarray(soft_labels[:, ::-1])


def poisoned_soft_labels(cfg: Mapping[str, Any], partition_id: int, round_num: int,
                         soft_labels: np.ndarray) -> np.ndarray:
    """What this client uploads: its honest soft labels unless it is one of the malicious clients."""
    if partition_id not in malicious_clients(cfg):
        return soft_labels
    if cfg["attack.kind"] == "flip":
        return flipped_soft_labels(soft_labels)
    rng = np.random.default_rng(derive_seed(cfg["seed"], "attack", partition_id, round_num))
    return random_soft_labels(*soft_labels.shape, rng)


# ---------------------------------------------------------------- malformed replies

Fields = dict  # keyword arguments of protocol.build_reply_content


@dataclass(frozen=True)
class Malformation:
    """One entry of the catalogue: how the reply is broken and the reason the server must give."""

    reason: str
    description: str
    apply: Callable[[Fields, int], Fields]  # (honest fields, number of partitions) -> broken fields


def _with_soft(fields: Fields, soft: np.ndarray) -> Fields:
    return dict(fields, soft_labels=soft)


def _nan(f: Fields, n: int) -> Fields:
    soft = f["soft_labels"].copy()
    soft[0, 0] = np.nan
    return _with_soft(f, soft)


def _inf(f: Fields, n: int) -> Fields:
    soft = f["soft_labels"].copy()
    soft[-1, :] = np.inf
    return _with_soft(f, soft)


def _negative(f: Fields, n: int) -> Fields:
    soft = f["soft_labels"].copy()
    soft[0, :] = 0.0
    soft[0, 0], soft[0, 1] = 1.5, -0.5  # the row still sums to 1: only the sign gives it away
    return _with_soft(f, soft)


def _oversized(f: Fields, n: int) -> Fields:
    from fedkd.protocol import SIZE_SLACK_BYTES  # the server's limit is M*C*4 bytes + this slack

    soft = f["soft_labels"]
    copies = 2 + SIZE_SLACK_BYTES // max(1, soft.nbytes)
    return _with_soft(f, np.tile(soft, (copies, 1)))


def _duplicate(f: Fields, n: int) -> Fields:
    return dict(f, partition_id=(f["partition_id"] + 1) % n)


CATALOGUE: dict[str, Malformation] = {
    "nan": Malformation("non_finite", "one soft-label entry is NaN", _nan),
    "inf": Malformation("non_finite", "one row of soft labels is +Inf", _inf),
    "bad_shape": Malformation("bad_shape", "the last transfer sample's row is missing (M-1 x C)",
                              lambda f, n: _with_soft(f, np.ascontiguousarray(f["soft_labels"][:-1]))),
    "bad_dtype": Malformation("bad_dtype", "soft labels sent as float64 instead of float32",
                              lambda f, n: _with_soft(f, f["soft_labels"].astype(np.float64))),
    "negative": Malformation("negative", "a row with a negative entry that still sums to 1", _negative),
    "not_normalised": Malformation("not_normalised", "every row scaled by 0.5 (sums to 0.5)",
                                   lambda f, n: _with_soft(f, f["soft_labels"] * np.float32(0.5))),
    "wrong_fingerprint": Malformation("wrong_fingerprint", "soft labels computed on another transfer set",
                                      lambda f, n: dict(f, fingerprint="0" * len(f["fingerprint"]))),
    "oversized": Malformation("oversized", "the soft labels repeated until the reply exceeds the size limit",
                              _oversized),
    "missing_key": Malformation("missing_key", "the knowledge record (soft labels) is left out",
                                lambda f, n: dict(f, soft_labels=None)),
    "wrong_round": Malformation("wrong_round", "a stale reply: it names the previous round",
                                lambda f, n: dict(f, round_num=f["round_num"] - 1)),
    "bad_partition": Malformation("bad_partition", "claims a partition id outside [0, N)",
                                  lambda f, n: dict(f, partition_id=n)),
    "bad_metrics": Malformation("bad_metrics", "a NaN accuracy in the metrics",
                                lambda f, n: dict(f, metrics=dict(f["metrics"], acc_local=float("nan")))),
    "duplicate_partition": Malformation("duplicate_partition",
                                        "claims the next partition's id, (id + 1) mod N; whichever of the two "
                                        "replies arrives second is rejected", _duplicate),
    "error_reply": Malformation("error_reply", "the ClientApp raises; Flower sends an error reply instead",
                                lambda f, n: _raise()),
}


def _raise() -> Fields:
    raise InjectedFault("injected fault (attack.malformed): this client fails its round on purpose")


def parse_malformed(entries: list[str]) -> dict[tuple[int, int | None], str]:
    """``["1:2:nan", "3:*:bad_dtype"]`` -> ``{(1, 2): "nan", (3, None): "bad_dtype"}`` (None = every round).

    Raises ValueError naming the first bad entry.
    """
    plan: dict[tuple[int, int | None], str] = {}
    for entry in entries:
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) != 3:
            raise ValueError(f"{entry!r} is not CLIENT:ROUND:KIND")
        client, rnd, kind = parts
        if not client.isdigit():
            raise ValueError(f"{entry!r}: client {client!r} is not a partition id")
        if not (rnd == "*" or (rnd.isdigit() and int(rnd) >= 1)):
            raise ValueError(f"{entry!r}: round {rnd!r} is not a round number >= 1 or *")
        if kind not in CATALOGUE:
            raise ValueError(f"{entry!r}: unknown kind {kind!r}; known: {', '.join(CATALOGUE)}")
        key = (int(client), None if rnd == "*" else int(rnd))
        if key in plan:
            raise ValueError(f"{entry!r}: client {client} already has a fault for round {rnd}")
        plan[key] = kind
    return plan


def malformation_for(cfg: Mapping[str, Any], partition_id: int, round_num: int) -> str | None:
    """The catalogue kind this client injects in this round, or None (a round-specific entry wins over *)."""
    if not cfg["attack.malformed"]:
        return None
    plan = parse_malformed(cfg["attack.malformed"])
    return plan.get((partition_id, round_num), plan.get((partition_id, None)))


def malformed_reply(cfg: Mapping[str, Any], partition_id: int, round_num: int, fields: Fields) -> Fields:
    """The reply fields as this client sends them: unchanged unless ``attack.malformed`` names it."""
    kind = malformation_for(cfg, partition_id, round_num)
    if kind is None:
        return fields
    return CATALOGUE[kind].apply(dict(fields), cfg["num_clients"])


# ---------------------------------------------------------------- config and records

def check_attack_config(v: Mapping[str, Any]) -> None:
    """Refuse attack settings that cannot mean what the user wants, naming the key (ConfigError)."""
    n = v["num_clients"]
    if v["attack.num_malicious"] > n:
        raise ConfigError(f"config key 'attack.num_malicious': {v['attack.num_malicious']} exceeds "
                          f"num_clients={n}")
    bad = [x for x in v["attack.clients"] if int(x) >= n]
    if bad:
        raise ConfigError(f"config key 'attack.clients': {bad} are not partition ids (num_clients={n})")
    if v["attack.clients"] and v["attack.num_malicious"]:
        raise ConfigError("config keys 'attack.clients' and 'attack.num_malicious' both choose the malicious "
                          "clients; set one of them")
    if v["attack.kind"] == "none" and (v["attack.clients"] or v["attack.num_malicious"]):
        raise ConfigError("config key 'attack.kind' is 'none', so the malicious clients chosen by "
                          "attack.clients/attack.num_malicious would behave honestly; set attack.kind")
    try:
        plan = parse_malformed(v["attack.malformed"])
    except ValueError as exc:
        raise ConfigError(f"config key 'attack.malformed': {exc}") from None
    outside = sorted({c for c, _ in plan if c >= n})
    if outside:
        raise ConfigError(f"config key 'attack.malformed': clients {outside} are not partition ids "
                          f"(num_clients={n})")
    if plan and (v.get("wire_dtype", "float32") != "float32" or v.get("wire_topk", 0) != 0):
        # the encoder would convert or trim some faults away (a float64 upload becomes float16, say)
        raise ConfigError("config key 'attack.malformed': the catalogue is defined for the default wire format; "
                          "set wire_dtype=float32 and wire_topk=0")
    attacking = v["attack.kind"] != "none" or plan
    if attacking and v["algorithm"] == "fedavg":
        raise ConfigError("config keys 'attack.*' corrupt soft labels, but algorithm 'fedavg' exchanges weights")


def honest_accuracy_record(cfg: Mapping[str, Any], record: Mapping[str, Any]) -> dict:
    """ALMA and global accuracy over honest clients only (present only when some clients are malicious)."""
    bad = malicious_clients(cfg)
    if not bad:
        return {}
    local = [v for k, v in record["per_client_local_acc"].items() if int(k) not in bad]
    glob = [v for k, v in record["per_client_global_acc"].items() if int(k) not in bad]
    return {"malicious_clients": sorted(bad),
            "alma_honest": float(np.mean(local)) if local else float("nan"),
            "global_acc_honest": float(np.mean(glob)) if glob else float("nan")}
