"""The run configuration: every key, its default, its check and its help text.

A config is a flat mapping of dotted keys (``knfu.beta``) to plain scalars or
string lists, so the same keys work in a TOML file (nested tables), on the
command line (``--set knfu.beta=5``) and in Flower's ``run_config``. Every
value is checked here, before any data is loaded or any model trained, and a
bad one is refused with a message that names the key.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10")
ALGORITHMS = ("local", "fedmd", "dsfl", "knfu", "fedavg")
PARTITIONS = ("dirichlet", "pathological", "iid")
ORDERS = ("digest-revisit", "revisit-digest", "joint")


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key."""


@dataclass(frozen=True)
class Key:
    default: Any
    kind: type  # int, float, bool, str or list (a list of strings)
    help: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human-readable form of ``check`` for error messages


def _one_of(options: Iterable[str]) -> tuple[Callable[[Any], bool], str]:
    options = tuple(options)
    return (lambda v: v in options), f"one of {', '.join(options)}"


def _model_names() -> tuple[str, ...]:
    from fedkd.models import MODEL_NAMES  # imported lazily: torch is heavy
    return tuple(MODEL_NAMES)


def _models_ok(v: list[str]) -> bool:
    return len(v) > 0 and all(name in _model_names() for name in v)


_POS = (lambda v: v > 0), "> 0"
_NONNEG = (lambda v: v >= 0), ">= 0"
_AT_LEAST_1 = (lambda v: v >= 1), ">= 1"

SCHEMA: dict[str, Key] = {
    # what federation to simulate
    "dataset": Key("digits", str, "dataset name", *_one_of(DATASETS)),
    "data_root": Key("", str, "folder holding the dataset files ('' = the dataset's default place)"),
    "algorithm": Key("knfu", str, "fusion algorithm", *_one_of(ALGORITHMS)),
    "num_clients": Key(10, int, "number of clients", *_AT_LEAST_1),
    "rounds": Key(5, int, "number of communication rounds", *_AT_LEAST_1),
    "partition": Key("dirichlet", str, "how private data is split", *_one_of(PARTITIONS)),
    "alpha": Key(0.5, float, "Dirichlet concentration (smaller = more label skew)", *_POS),
    "classes_per_client": Key(2, int, "classes per client for the pathological split", *_AT_LEAST_1),
    "min_partition_size": Key(10, int, "smallest private partition allowed", *_AT_LEAST_1),
    "seed": Key(0, int, "seed for data splits, model init and training", *_NONNEG),
    "models": Key(["cnn_small", "mlp"], list, "model names, cycled over clients (comma-separated on the command line)",
                  _models_ok, "a non-empty list of known model names"),
    "transfer_size": Key(300, int, "size M of the public transfer set", *_AT_LEAST_1),
    "private_pool_size": Key(0, int, "subsample the private pool to this many images (0 = all)", *_NONNEG),
    "local_test_size": Key(200, int, "per-client local test set size (for ALMA)", *_AT_LEAST_1),
    "global_test_size": Key(0, int, "global test set size (0 = the whole test split)", *_NONNEG),
    "eval_split": Key("test", str, "'val' evaluates on a validation split (for tuning), 'test' on the test split",
                      *_one_of(("test", "val"))),
    # what each client does in a round
    "order": Key("digest-revisit", str, "step order inside a round ('joint' = CE and distillation in the same "
                 "steps, revisit_epochs passes)", *_one_of(ORDERS)),
    "digest_epochs": Key(2, int, "distillation epochs on the transfer set per round", *_NONNEG),
    "revisit_epochs": Key(10, int, "local training epochs on private data per round", *_NONNEG),
    "distill_weight": Key(1.0, float, "weight of the distillation loss when order=joint", *_NONNEG),
    "temperature": Key(3.0, float, "distillation temperature T (soft labels are sent at T)", *_POS),
    "wire_dtype": Key("float32", str, "how soft labels and targets travel: float32, float16 or uint8 (counts out "
                      "of 255 per row); see docs/performance.md", *_one_of(("float32", "float16", "uint8"))),
    "wire_topk": Key(0, int, "send only each row's k largest soft labels, the rest of the mass spread evenly "
                     "(0 = all classes)", *_NONNEG),
    "batch_size": Key(16, int, "mini-batch size", *_AT_LEAST_1),
    "lr": Key(3e-3, float, "learning rate (Adam)", *_POS),
    "device": Key("auto", str, "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'",
                  lambda v: v in ("auto", "cpu") or v.startswith("cuda"), "auto, cpu or cuda[:N]"),
    # fusion parameters
    "knfu.beta": Key(10.0, float, "KnFu effectiveness sharpness beta", *_NONNEG),
    "knfu.tau": Key(-1.0, float, "KnFu neighbour threshold (-1 = 1/N)",
                    lambda v: v == -1.0 or 0 <= v <= 1, "-1 or within [0, 1]"),
    "knfu.include_self": Key(False, bool, "may a client be its own KnFu neighbour"),
    "dsfl.temperature": Key(0.5, float, "DS-FL entropy-reduction temperature (<1 sharpens)", *_POS),
    "fedmd.weighted": Key(False, bool, "weight FedMD's average by private sample counts"),
    # server behaviour
    "server.reply_timeout": Key(600.0, float, "seconds to wait for clients' replies each round", *_POS),
    "server.node_wait_timeout": Key(300.0, float, "seconds to wait for the expected nodes to connect", *_POS),
    "server.min_replies": Key(1, int, "fewest valid replies a round needs to fuse", *_AT_LEAST_1),
    "server.max_in_flight": Key(-1, int, "most train messages unanswered at once (0 = all at once; -1 = auto: "
                                "all at once in deployment, 16 per client actor in simulation)",
                                lambda v: v >= -1, ">= -1"),
    "server.checkpoint": Key(True, bool, "checkpoint after every round: the server's state in <out>/checkpoint.json "
                             "and each node's state on its own disk under <out>/node_checkpoints/"),
    "server.resume": Key(False, bool, "continue from <out>/checkpoint.json (the last complete round)"),
    "server.stop_after_round": Key(0, int, "stop after this round as if the server crashed (0 = never; "
                                   "for testing resume)", *_NONNEG),
    "out": Key("", str, "output folder ('' = runs/<run-id>)"),
    "save_models": Key(True, bool, "clients save their final model under <out>/models/ (on their own disk) "
                       "for audits"),
    # Prometheus /metrics of the server (fedkd/prometheus.py, docs/deploy.md)
    "metrics.port": Key(0, int, "serve Prometheus /metrics from the server on this port (0 = off)",
                        lambda v: 0 <= v <= 65535, "within [0, 65535]"),
    "metrics.address": Key("127.0.0.1", str, "address /metrics listens on ('0.0.0.0' = every interface)",
                           lambda v: bool(v.strip()), "a host address"),
    "metrics.linger": Key(0.0, float, "seconds /metrics stays up after the last round, so a scraper sees "
                          "the final values", *_NONNEG),
    # swing distillation: protect soft labels before upload (docs/privacy.md)
    "privacy.swing": Key(False, bool, "protect uploaded soft labels with swing distillation"),
    "privacy.t_min": Key(3.0, float, "swing: temperature of public-looking samples", *_POS),
    "privacy.t_max": Key(10.0, float, "swing: temperature of the most private-looking samples", *_POS),
    "privacy.mechanism": Key("gaussian", str, "swing: noise on the tempered probabilities",
                             *_one_of(("gaussian", "laplace"))),
    "privacy.noise_scale": Key(0.05, float, "swing: Gaussian sigma or Laplace b per entry (0 = no guarantee)",
                               *_NONNEG),
    "privacy.delta": Key(1e-5, float, "delta of the reported (epsilon, delta)",
                         lambda v: 0 < v < 1, "within (0, 1)"),
    "privacy.reference": Key("targets", str, "swing's privacy-score reference: 'targets' (the public fused "
                             "targets the client received) or 'none' (top-1 confidence)",
                             *_one_of(("targets", "none"))),
    "privacy.noise_seed": Key("derived", str, "'derived' (reproducible from the run seed, for studies) or "
                              "'os' (fresh OS entropy; use this in deployment)", *_one_of(("derived", "os"))),
    # canaries: planted secrets whose travel to peers is measured (docs/privacy.md)
    "canaries.enabled": Key(False, bool, "plant canaries in one client's data and measure exposure every round"),
    "canaries.client": Key(0, int, "partition id of the client that holds the canaries", *_NONNEG),
    "canaries.count": Key(10, int, "number of canaries k", *_AT_LEAST_1),
    "canaries.repeats": Key(10, int, "copies of each canary in the client's data", *_AT_LEAST_1),
    "canaries.references": Key(1000, int, "never-planted references of the same construction", *_AT_LEAST_1),
    "canaries.in_transfer": Key(True, bool, "also put the canary images (unlabelled) in the public transfer set, "
                                "so the owner's answers on them are shared"),
    # hostile clients for robustness runs (docs/robustness.md; fedkd/adversary.py)
    "attack.kind": Key("none", str, "what malicious clients upload: 'random' (uniform Dirichlet rows), 'flip' "
                       "(class c -> C-1-c of their honest soft labels) or 'none'",
                       *_one_of(("none", "random", "flip"))),
    "attack.num_malicious": Key(0, int, "number of malicious clients: the last k partitions", *_NONNEG),
    "attack.clients": Key([], list, "malicious partition ids (instead of attack.num_malicious)",
                          lambda v: all(x.isdigit() for x in v), "a list of partition ids"),
    "attack.malformed": Key([], list, "fault injection: CLIENT:ROUND:KIND entries (ROUND may be *); KIND from "
                            "fedkd.adversary.CATALOGUE (docs/robustness.md)"),
    # simulation engine
    "sim.client_cpus": Key(1.0, float, "CPUs per simulated client (Ray)", *_POS),
    "sim.client_gpus": Key(0.0, float, "GPU fraction per simulated client (Ray)", *_NONNEG),
    "sim.num_cpus": Key(0, int, "CPUs Ray may use for client actors (0 = all cores); with sim.client_cpus "
                    "it sets how many clients run at once", *_NONNEG),
    "sim.object_store_mb": Key(0, int, "cap on Ray's shared-memory object store in MB (0 = Ray's default, "
                               "about 30% of RAM)", *_NONNEG),
}


def _coerce(key: str, value: Any, spec: Key) -> Any:
    """Turn a TOML/CLI/Flower value into the key's type, or raise ConfigError."""
    kind = spec.kind
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind is list:
            if isinstance(value, str):
                return [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            raise ValueError
    except (TypeError, ValueError):
        pass
    name = "list of strings" if kind is list else kind.__name__
    raise ConfigError(f"config key {key!r}: expected {name}, got {value!r}")


def _normalise_key(key: str) -> str:
    return key.strip().replace("-", "_")


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables -> dotted keys."""
    flat: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(flatten(v, prefix=f"{name}."))
        else:
            flat[name] = v
    return flat


class Config(Mapping[str, Any]):
    """A complete, validated run configuration (read-only mapping of dotted keys)."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def to_json(self) -> str:
        return json.dumps(self._values, sort_keys=True)

    def to_flower(self) -> dict[str, Any]:
        """Flower records hold scalars only: lists travel as comma-joined strings."""
        return {k: ",".join(v) if isinstance(v, list) else v for k, v in self._values.items()}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some keys changed (dotted keys use ``__`` for ``.``)."""
        updates = {k.replace("__", "."): v for k, v in changes.items()}
        return make_config(updates, base=self)

    @property
    def knfu_tau(self) -> float | None:
        return None if self["knfu.tau"] == -1.0 else self["knfu.tau"]


def make_config(overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then ``base``, then ``overrides``; every key and value checked."""
    values = {k: spec.default for k, spec in SCHEMA.items()}
    for source in (base or {}, overrides or {}):
        for raw_key, raw_value in source.items():
            key = _normalise_key(raw_key)
            if key not in SCHEMA:
                close = [k for k in SCHEMA if k.split(".")[-1] == key.split(".")[-1]]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown config key {raw_key!r}{hint}; run `fedkd keys` to list them")
            values[key] = _coerce(key, raw_value, SCHEMA[key])
    for key, spec in SCHEMA.items():
        if spec.check is not None and not spec.check(values[key]):
            raise ConfigError(f"config key {key!r}: {values[key]!r} is not allowed; expected {spec.rule}")
    _check_combinations(values)
    return Config(values)


def _check_combinations(v: dict[str, Any]) -> None:
    if v["algorithm"] == "fedavg" and len(set(v["models"])) > 1:
        raise ConfigError("config key 'models': fedavg averages weights, so every client needs the same "
                          f"architecture; got {v['models']}")
    if v["privacy.t_min"] > v["privacy.t_max"]:
        raise ConfigError(f"config key 'privacy.t_min': {v['privacy.t_min']} exceeds privacy.t_max "
                          f"{v['privacy.t_max']}")
    if v["canaries.enabled"] and v["canaries.client"] >= v["num_clients"]:
        raise ConfigError(f"config key 'canaries.client': {v['canaries.client']} is not a client id "
                          f"(num_clients={v['num_clients']})")
    from fedkd.adversary import check_attack_config  # imported lazily: the adversary module imports this one

    check_attack_config(v)
    if v["partition"] == "pathological" and v["classes_per_client"] > 100:
        raise ConfigError("config key 'classes_per_client' is larger than any dataset's class count")


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """``["rounds=3", "knfu.beta=5"]`` -> dict; a malformed item names itself."""
    out: dict[str, str] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_config(path: str | Path | None = None, assignments: Iterable[str] = ()) -> Config:
    """Read an optional TOML file, apply ``KEY=VALUE`` overrides, validate."""
    base: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            base = flatten(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return make_config(parse_assignments(assignments), base=base)


def describe_keys() -> str:
    """A table of every key, its default and its help (for ``fedkd keys``)."""
    lines = []
    for key, spec in SCHEMA.items():
        default = ",".join(spec.default) if isinstance(spec.default, list) else spec.default
        lines.append(f"{key:28s} {str(default):16s} {spec.help}")
    return "\n".join(lines)


def federation_spec(cfg: Mapping[str, Any]):
    """The data-side view of a config: which federation every party builds."""
    from fedkd.data import FederationSpec

    return FederationSpec(
        dataset=cfg["dataset"],
        data_root=cfg["data_root"] or None,
        num_clients=cfg["num_clients"],
        partition=cfg["partition"],
        alpha=cfg["alpha"],
        classes_per_client=cfg["classes_per_client"],
        min_partition_size=cfg["min_partition_size"],
        seed=cfg["seed"],
        transfer_size=cfg["transfer_size"],
        private_pool_size=cfg["private_pool_size"] or None,
        global_test_size=cfg["global_test_size"] or None,
        local_test_size=cfg["local_test_size"],
        eval_split=cfg["eval_split"],
    )
