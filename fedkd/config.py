"""The run configuration: every key, its default, its check and its help text.

A config is a flat mapping of dotted keys (``knfu.beta``) to plain scalars or
string lists, so the same keys work in a TOML file (nested tables), on the
command line (``--set knfu.beta=5``) and in Flower's ``run_config``. Every
value is checked here, before any data is loaded or any model trained, and a
bad one is refused with a message that names the key.

Only the app layer (ServerApp, ClientApp, command line) reads keys by name;
it hands the library typed views (:mod:`fedkd.settings`): ``cfg.training``,
``cfg.privacy``, ``cfg.canaries``, ``cfg.server``, ``cfg.sim``, ``cfg.federation``.

Keys are marked ``client`` or ``server`` (:mod:`fedkd.keys`): clients receive
only the client keys, so the server's own settings (its output folder, the
fusion rule's parameters, timeouts) never travel and never change message sizes.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

from fedkd.fusion.registry import FUSION_RULES, rule_keys
from fedkd.keys import AT_LEAST_1, CLIENT, NON_NEGATIVE, POSITIVE, SERVER, Key, one_of
from fedkd import settings

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10")
PARTITIONS = ("dirichlet", "pathological", "iid")
ORDERS = ("digest-revisit", "revisit-digest", "joint")
WEIGHT_ALGORITHMS = ("fedavg",)  # exchange weights through Flower's FedAvg instead of fusing soft labels
ATTACK_KINDS = ("none", "random", "flip", "shift", "mimic")
CONFLICT_KINDS = ("none", "label_permutation", "rotation")

# What each dataset holds (train split, test split): sizes are bounded by these before anything is loaded.
DATASET_SIZES = {"digits": (1348, 449), "fashion-mnist": (60000, 10000), "mnist": (60000, 10000),
                 "cifar10": (50000, 10000)}
MAX_CANARY_REFERENCES = 100_000


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key."""


def algorithms() -> tuple[str, ...]:
    """Every algorithm a run may name: the registered fusion rules and FedAvg."""
    return tuple(FUSION_RULES) + WEIGHT_ALGORITHMS


def _model_names() -> tuple[str, ...]:
    from fedkd.models import MODEL_NAMES  # imported lazily: torch is heavy

    return tuple(MODEL_NAMES)


def _models_ok(v: list[str]) -> bool:
    return len(v) > 0 and all(name in _model_names() for name in v)


def _c(default, kind, help, check=None, rule="") -> Key:
    """A client key: it changes what clients do, so it travels to them."""
    return Key(default, kind, help, check, rule, audience=CLIENT)


_CORE_SCHEMA: dict[str, Key] = {
    # what federation to simulate
    "dataset": _c("digits", str, "dataset name", *one_of(DATASETS)),
    "data_root": _c("", str, "folder holding the dataset files ('' = the dataset's default place)"),
    "transfer_dir": _c("", str, "the public transfer set on disk: a folder with classes.txt and images or "
                       "transfer.npz ('' = drawn from the dataset, as in simulation); a node may name its own "
                       "copy with --node-config transfer-dir=PATH"),
    "global_test_dir": _c("", str, "optional public labelled test folder (ImageFolder or .npz) for global "
                          "accuracy on real nodes ('' = none: the run records ALMA only)"),
    "algorithm": Key("knfu", str, "fusion algorithm (a registered fusion rule, or fedavg)",
                     lambda v: v in algorithms(), "a registered fusion rule or fedavg"),
    "num_clients": _c(10, int, "number of clients", *AT_LEAST_1),
    "clients_per_round": Key(0, int, "clients sampled per round, seeded (0 = every client every round); "
                             "see docs/performance.md for what a returning client receives", *NON_NEGATIVE),
    "rounds": _c(5, int, "number of communication rounds", *AT_LEAST_1),
    "partition": _c("dirichlet", str, "how private data is split", *one_of(PARTITIONS)),
    "alpha": _c(0.5, float, "Dirichlet concentration (smaller = more label skew)", *POSITIVE),
    "classes_per_client": _c(2, int, "classes per client for the pathological split", *AT_LEAST_1),
    "min_partition_size": _c(10, int, "smallest private partition allowed", *AT_LEAST_1),
    "seed": _c(0, int, "seed for data splits, model init and training", *NON_NEGATIVE),
    "models": _c(["cnn_small", "mlp"], list, "model names, cycled over clients (comma-separated on the command line)",
                 _models_ok, "a non-empty list of known model names"),
    "transfer_size": _c(300, int, "size M of the public transfer set", *AT_LEAST_1),
    "private_pool_size": _c(0, int, "subsample the private pool to this many images (0 = all)", *NON_NEGATIVE),
    "local_test_size": _c(200, int, "per-client local test set size (for ALMA)", *AT_LEAST_1),
    "global_test_size": _c(0, int, "global test set size (0 = the whole test split)", *NON_NEGATIVE),
    "eval_split": _c("test", str, "'val' evaluates on a validation split (for tuning), 'test' on the test split",
                     *one_of(("test", "val"))),
    # knowledge-conflict benchmark (docs/results.md)
    "conflict.kind": _c("none", str, "client group g >= 1 sees the task differently: 'label_permutation' (its own "
                        "fixed permutation of the labels) or 'rotation' (images rotated by g*90 degrees)",
                        *one_of(CONFLICT_KINDS)),
    "conflict.groups": _c(2, int, "number of contiguous client groups for conflict.kind", *AT_LEAST_1),
    # what each client does in a round
    "order": _c("digest-revisit", str, "step order inside a round ('joint' = CE and distillation in the same "
                "steps, revisit_epochs passes)", *one_of(ORDERS)),
    "digest_epochs": _c(2, int, "distillation epochs on the transfer set per round", *NON_NEGATIVE),
    "revisit_epochs": _c(10, int, "local training epochs on private data per round", *NON_NEGATIVE),
    "distill_weight": _c(1.0, float, "weight of the distillation loss when order=joint", *NON_NEGATIVE),
    "temperature": _c(3.0, float, "distillation temperature T (soft labels are sent at T)", *POSITIVE),
    "wire_dtype": _c("float32", str, "how soft labels and targets travel: float32, float16 or uint8 (counts out "
                     "of 255 per row); see docs/performance.md", *one_of(("float32", "float16", "uint8"))),
    "wire_topk": _c(0, int, "send only each row's k largest soft labels, the rest of the mass spread evenly "
                    "(0 = all classes)", *NON_NEGATIVE),
    "batch_size": _c(16, int, "mini-batch size", *AT_LEAST_1),
    "lr": _c(3e-3, float, "learning rate (Adam)", *POSITIVE),
    "device": _c("auto", str, "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'",
                 lambda v: v in ("auto", "cpu") or v.startswith("cuda"), "auto, cpu or cuda[:N]"),
    # server behaviour
    "server.reply_timeout": Key(600.0, float, "seconds to wait for clients' replies each round", *POSITIVE),
    "server.node_wait_timeout": Key(300.0, float, "seconds to wait for the expected nodes to connect", *POSITIVE),
    "server.min_replies": Key(1, int, "fewest valid replies a round needs to fuse", *AT_LEAST_1),
    "server.max_failed_rounds": Key(3, int, "stop the run after this many rounds in a row with fewer than "
                                    "server.min_replies valid replies", *AT_LEAST_1),
    "server.max_num_examples": Key(1_000_000, int, "largest num-examples a client may report; larger replies are "
                                   "rejected, so sample-weighted fusion can never overflow", *AT_LEAST_1),
    "server.max_staleness": Key(3, int, "with client sampling: a returning client's targets may use replies at "
                                "most this many rounds old", *NON_NEGATIVE),
    "server.max_in_flight": Key(-1, int, "most train messages unanswered at once (0 = all at once; -1 = auto: "
                                "all at once in deployment, 16 per client actor in simulation)",
                                lambda v: v >= -1, ">= -1"),
    "server.identity_registry": Key("", str, "JSON file mapping client ids to SuperNode public keys (written by "
                                    "`fedkd certs`/`fedkd register`); '' = bind each id to the first node that "
                                    "claims it (docs/robustness.md)"),
    "server.checkpoint": _c(True, bool, "checkpoint after every round: the server's state in <out>/checkpoint.json "
                            "and each node's state in its own state folder"),
    "server.resume": Key(False, bool, "continue from <out>/checkpoint.json (the last complete round)"),
    "out": Key("", str, "output folder ('' = runs/<run-id>)"),
    "save_models": _c(True, bool, "clients save their final model in their own state folder for audits"),
    "record_label_histograms": _c(False, bool, "opt-in: nodes report their private label histogram, recorded in "
                                  "metrics.jsonl (a disclosure about each node's data; off by default)"),
    # Prometheus /metrics of the server (fedkd/prometheus.py, docs/deploy.md)
    "metrics.port": Key(0, int, "serve Prometheus /metrics from the server on this port (0 = off)",
                        lambda v: 0 <= v <= 65535, "within [0, 65535]"),
    "metrics.address": Key("127.0.0.1", str, "address /metrics listens on ('0.0.0.0' = every interface)",
                           lambda v: bool(v.strip()), "a host address"),
    "metrics.linger": Key(0.0, float, "seconds /metrics stays up after the last round, so a scraper sees "
                          "the final values", *NON_NEGATIVE),
    # swing distillation: protect soft labels before upload (docs/privacy.md)
    "privacy.swing": _c(False, bool, "protect uploaded soft labels with swing distillation"),
    "privacy.t_min": _c(3.0, float, "swing: temperature of public-looking samples", *POSITIVE),
    "privacy.t_max": _c(10.0, float, "swing: temperature of the most private-looking samples", *POSITIVE),
    "privacy.mechanism": _c("gaussian", str, "swing: noise on the tempered probabilities",
                            *one_of(("gaussian", "laplace"))),
    "privacy.noise_scale": _c(0.05, float, "swing: Gaussian sigma or Laplace b per entry (0 = no guarantee)",
                              *NON_NEGATIVE),
    "privacy.delta": _c(1e-5, float, "delta of the reported (epsilon, delta)",
                        lambda v: 0 < v < 1, "within (0, 1)"),
    "privacy.reference": _c("targets", str, "swing's privacy-score reference: 'targets' (the public fused "
                            "targets the client received) or 'none' (top-1 confidence)",
                            *one_of(("targets", "none"))),
    "privacy.noise_seed": _c("auto", str, "'auto' (reproducible from the run seed in simulation, fresh OS "
                             "entropy on real nodes), 'derived' (always reproducible: studies only) or 'os'",
                             *one_of(("auto", "derived", "os"))),
    # canaries: planted secrets whose travel to peers is measured (docs/privacy.md)
    "canaries.enabled": _c(False, bool, "plant canaries in one client's data and measure exposure every round"),
    "canaries.client": _c(0, int, "partition id of the client that holds the canaries", *NON_NEGATIVE),
    "canaries.count": _c(10, int, "number of canaries k", *AT_LEAST_1),
    "canaries.repeats": _c(10, int, "copies of each canary in the client's data", *AT_LEAST_1),
    "canaries.references": _c(1000, int, "never-planted references of the same construction",
                              lambda v: 1 <= v <= MAX_CANARY_REFERENCES, f"within [1, {MAX_CANARY_REFERENCES}]"),
    "canaries.in_transfer": _c(True, bool, "also put the canary images (unlabelled) in the public transfer set, "
                               "so the owner's answers on them are shared"),
    # fault injection for robustness studies (fedkd/faults; installed by the command line, never by the apps)
    "attack.kind": Key("none", str, "what malicious clients upload: 'random' (uniform Dirichlet rows), 'flip' "
                       "(class c -> C-1-c), 'shift' (one-hot rows of class c+1), 'mimic' (rows matching "
                       "class marginals) or 'none'", *one_of(ATTACK_KINDS)),
    "attack.num_malicious": Key(0, int, "number of malicious clients: the last k partitions", *NON_NEGATIVE),
    "attack.clients": Key([], list, "malicious partition ids (instead of attack.num_malicious)",
                          lambda v: all(x.isdigit() for x in v), "a list of partition ids"),
    "attack.malformed": Key([], list, "fault injection: CLIENT:ROUND:KIND entries (ROUND may be *); KIND from "
                            "fedkd.faults.malformed.CATALOGUE (docs/robustness.md)"),
    "attack.stop_after_round": Key(0, int, "stop the server after this round as if it crashed (0 = never; "
                                   "for testing resume)", *NON_NEGATIVE),
    # simulation engine
    "sim.client_cpus": Key(1.0, float, "CPUs per simulated client (Ray)", *POSITIVE),
    "sim.client_gpus": Key(0.0, float, "GPU fraction per simulated client (Ray)", *NON_NEGATIVE),
    "sim.num_cpus": Key(0, int, "CPUs Ray may use for client actors (0 = all cores); with sim.client_cpus "
                    "it sets how many clients run at once", *NON_NEGATIVE),
    "sim.object_store_mb": Key(0, int, "cap on Ray's shared-memory object store in MB (0 = Ray's default, "
                               "about 30% of RAM)", *NON_NEGATIVE),
    "sim.ray_address": Key("", str, "attach to a running Ray cluster at this address ('auto' or HOST:PORT; "
                           "'' = start Ray here, unless RAY_ADDRESS is set); see docs/performance.md"),
    # --- issue 22 keys (to move into their owner's settings): DP-SGD on the client's private loss
    "privacy.dp_sgd": _c(False, bool, "train the private loss with DP-SGD (Opacus): per-example clipping, "
                         "Gaussian noise, Poisson sampling; epsilon accounted over the whole run"),
    "privacy.dp_clip": _c(1.0, float, "DP-SGD: per-example gradient L2 clipping norm", *POSITIVE),
    "privacy.dp_noise_multiplier": _c(1.0, float, "DP-SGD: noise std / clip (used when dp_target_epsilon = 0)",
                                      *NON_NEGATIVE),
    "privacy.dp_target_epsilon": _c(0.0, float, "DP-SGD: epsilon for the whole run at privacy.delta; the noise "
                                    "multiplier is calibrated to it (0 = use dp_noise_multiplier)", *NON_NEGATIVE),
}


def schema() -> dict[str, Key]:
    """Every key: the core ones and those of the registered fusion rules."""
    return {**_CORE_SCHEMA, **rule_keys()}


def client_keys() -> tuple[str, ...]:
    return tuple(k for k, spec in schema().items() if spec.audience == CLIENT)


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
    except (TypeError, ValueError, OverflowError):
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
    """A complete, validated run configuration (read-only mapping of dotted keys) and its typed views."""

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

    def for_clients(self) -> dict[str, Any]:
        """The client keys only, in Flower's scalar form: what every train message carries."""
        keys = set(client_keys())
        return {k: v for k, v in self.to_flower().items() if k in keys}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some keys changed (dotted keys use ``__`` for ``.``)."""
        updates = {k.replace("__", "."): v for k, v in changes.items()}
        return make_config(updates, base=self)

    # typed views for the library (fedkd.settings)
    @property
    def federation(self):
        return settings.federation_spec(self)

    @property
    def training(self) -> settings.TrainingSettings:
        return settings.TrainingSettings.from_config(self)

    @property
    def privacy(self) -> settings.PrivacySettings:
        return settings.PrivacySettings.from_config(self)

    @property
    def canaries(self) -> settings.CanarySettings:
        return settings.CanarySettings.from_config(self)

    @property
    def server(self) -> settings.ServerSettings:
        return settings.ServerSettings.from_config(self)

    @property
    def sim(self) -> settings.SimSettings:
        return settings.SimSettings.from_config(self)

    @property
    def conflict(self) -> settings.ConflictSettings:
        return settings.ConflictSettings.from_config(self)

    @property
    def wire(self):
        from fedkd.wire import WireFormat

        return WireFormat(dtype=self["wire_dtype"], topk=self["wire_topk"])


def make_config(overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None,
                *, known_only: bool = False) -> Config:
    """Defaults, then ``base``, then ``overrides``; every key and value checked.

    known_only: skip keys this process does not know (a client ignores a server-side rule's keys).
    """
    keys = schema()
    values = {k: spec.default for k, spec in keys.items()}
    for source in (base or {}, overrides or {}):
        for raw_key, raw_value in source.items():
            key = _normalise_key(raw_key)
            if key not in keys:
                if known_only:
                    continue
                close = [k for k in keys if k.split(".")[-1] == key.split(".")[-1]]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown config key {raw_key!r}{hint}; run `fedkd keys` to list them")
            values[key] = _coerce(key, raw_value, keys[key])
    for key, spec in keys.items():
        if spec.check is not None and not spec.check(values[key]):
            raise ConfigError(f"config key {key!r}: {values[key]!r} is not allowed; expected {spec.rule}")
    _check_combinations(values)
    _check_sizes(values)
    return Config(values)


def _check_combinations(v: dict[str, Any]) -> None:
    if v["algorithm"] in WEIGHT_ALGORITHMS and len(set(v["models"])) > 1:
        raise ConfigError("config key 'models': fedavg averages weights, so every client needs the same "
                          f"architecture; got {v['models']}")
    if v["privacy.t_min"] > v["privacy.t_max"]:
        raise ConfigError(f"config key 'privacy.t_min': {v['privacy.t_min']} exceeds privacy.t_max "
                          f"{v['privacy.t_max']}")
    if v["canaries.enabled"] and v["canaries.client"] >= v["num_clients"]:
        raise ConfigError(f"config key 'canaries.client': {v['canaries.client']} is not a client id "
                          f"(num_clients={v['num_clients']})")
    if v["clients_per_round"] > v["num_clients"]:
        raise ConfigError(f"config key 'clients_per_round': {v['clients_per_round']} exceeds "
                          f"num_clients={v['num_clients']}")
    if v["conflict.kind"] != "none" and v["conflict.groups"] > v["num_clients"]:
        raise ConfigError(f"config key 'conflict.groups': {v['conflict.groups']} groups need at least as many "
                          f"clients (num_clients={v['num_clients']})")
    if v["conflict.kind"] == "rotation" and v["conflict.groups"] > 4:
        raise ConfigError(f"config key 'conflict.groups': rotation has only 4 distinct groups (0, 90, 180, "
                          f"270 degrees), got {v['conflict.groups']}")
    if v["algorithm"] == "oracle" and v["conflict.kind"] == "none":
        raise ConfigError("config key 'algorithm': oracle fuses inside the true conflict groups, so it needs "
                          "conflict.kind label_permutation or rotation")
    if v["partition"] == "pathological" and v["classes_per_client"] > 100:
        raise ConfigError("config key 'classes_per_client' is larger than any dataset's class count")
    _check_attack_syntax(v)


def _check_sizes(v: dict[str, Any]) -> None:
    """Refuse sizes the dataset cannot hold, naming the key and the limit, before anything is loaded."""
    train, test = DATASET_SIZES[v["dataset"]]
    pool = v["private_pool_size"] or train
    limits = (
        ("private_pool_size", v["private_pool_size"], train, "the dataset's training split"),
        ("transfer_size", v["transfer_size"], train, "the dataset's training split"),
        ("global_test_size", v["global_test_size"], test, "the dataset's test split"),
        ("local_test_size", v["local_test_size"], test, "the dataset's test split"),
        ("num_clients", v["num_clients"] * v["min_partition_size"], pool,
         "num_clients * min_partition_size must fit in the private pool"),
    )
    for key, value, limit, what in limits:
        if value > limit:
            raise ConfigError(f"config key {key!r}: {value} exceeds {limit} ({what} of {v['dataset']!r})")


def _check_attack_syntax(v: Mapping[str, Any]) -> None:
    """The fault-injection keys' form; ``fedkd.faults`` checks the kinds when it is installed."""
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
    if v["attack.kind"] != "none" and v["algorithm"] in WEIGHT_ALGORITHMS:
        raise ConfigError("config key 'attack.kind' corrupts soft labels, but algorithm 'fedavg' exchanges weights")


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """``["rounds=3", "knfu.beta=5"]`` -> dict; a malformed item names itself."""
    out: dict[str, str] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML config file as dotted keys; a missing or broken file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return flatten(tomllib.loads(path.read_text()))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, assignments: Iterable[str] = ()) -> Config:
    """Read an optional TOML file, apply ``KEY=VALUE`` overrides, validate."""
    base = read_toml(path) if path is not None else {}
    return make_config(parse_assignments(assignments), base=base)


def describe_keys() -> str:
    """A table of every key, its default and its help (for ``fedkd keys``)."""
    lines = []
    for key, spec in schema().items():
        default = ",".join(spec.default) if isinstance(spec.default, list) else spec.default
        lines.append(f"{key:28s} {str(default):16s} {spec.help}")
    return "\n".join(lines)


def federation_spec(cfg: Mapping[str, Any]):
    """The data-side view of a config (kept for callers of the old name)."""
    return settings.federation_spec(cfg)
