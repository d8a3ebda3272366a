"""The run's own settings groups: the run as a whole, one client's round, the server, the simulation engine.

Every setting is declared once, by the module that owns it (``fedkd.keys.setting``); the run config
(``fedkd.config``) collects them. The groups declared here belong to no narrower module:

==================  ==========  ==================================================================
group               prefix      declared in
==================  ==========  ==================================================================
RunSettings         (none)      here: algorithm, num_clients, rounds, seed, out, clients_per_round
TrainingSettings    (none)      here: one client's local round (models, order, epochs, optimiser)
ServerSettings      server.     here: timeouts, what a round needs, what a reply may claim
SimSettings         sim.        here: Flower's simulation engine on Ray
DataSettings        (none)      fedkd/data/settings.py (with ConflictSettings, conflict.)
WireSettings        (none)      fedkd/wire.py (wire_dtype, wire_topk)
PrivacySettings     privacy.    fedkd/privacy/settings.py (with CanarySettings, canaries.)
MetricsSettings     metrics.    fedkd/prometheus.py
FaultSettings       fault.      fedkd/faults/settings.py (alias attack.)
<rule>Settings      <rule>.     fedkd/fusion/__init__.py, one per fusion rule
==================  ==========  ==================================================================
"""
from __future__ import annotations

from fedkd.fusion.registry import FUSION_RULES
import os

from fedkd.keys import AT_LEAST_1, CLIENT, NON_NEGATIVE, POSITIVE, ConfigError, one_of, setting, settings_group, \
    shared, within

ORDERS = ("digest-revisit", "revisit-digest", "joint")
# Ray starts one actor per (CPUs / CPUs per client): beyond a few hundred per machine they only fight for memory.
MAX_SIM_CPUS = 4096
MAX_SIM_ACTORS = 512
WEIGHT_ALGORITHMS = ("fedavg",)  # exchange weights through Flower's FedAvg instead of fusing soft labels


def algorithms() -> tuple[str, ...]:
    """Every algorithm a run may name: the registered fusion rules and FedAvg."""
    return tuple(FUSION_RULES) + WEIGHT_ALGORITHMS


def _models_ok(names: tuple[str, ...]) -> bool:
    from fedkd.models.registry import model_names  # no torch: the driver checks names it never builds

    return len(names) > 0 and all(name in model_names() for name in names)


@settings_group("")
class RunSettings:
    """The run as a whole."""

    algorithm: str = setting("knfu", "fusion algorithm (a registered fusion rule, or fedavg)",
                             ((lambda v: v in algorithms()), "a registered fusion rule or fedavg"))
    num_clients: int = setting(10, "number of clients", AT_LEAST_1, audience=CLIENT)
    clients_per_round: int = setting(0, "clients sampled per round, seeded (0 = every client every round); see "
                                     "docs/performance.md for what a returning client receives", NON_NEGATIVE)
    rounds: int = setting(5, "number of communication rounds", AT_LEAST_1, audience=CLIENT)
    seed: int = setting(0, "seed for data splits, model init and training", NON_NEGATIVE, audience=CLIENT)
    out: str = setting("", "output folder ('' = runs/<run-id>)")
    models: tuple[str, ...] = shared("models")

    @property
    def exchanges_weights(self) -> bool:
        return self.algorithm in WEIGHT_ALGORITHMS

    def check(self) -> None:
        if self.exchanges_weights and len(set(self.models)) > 1:
            raise ConfigError("config key 'models': fedavg averages weights, so every client needs the same "
                              f"architecture; got {list(self.models)}")
        if self.clients_per_round > self.num_clients:
            raise ConfigError(f"config key 'clients_per_round': {self.clients_per_round} exceeds "
                              f"num_clients={self.num_clients}")


@settings_group("", audience=CLIENT)
class TrainingSettings:
    """One client's local round: step order, epochs, optimiser, distillation temperature."""

    models: tuple[str, ...] = setting(["cnn_small", "mlp"], "model names, cycled over clients (comma-separated on "
                                      "the command line)", (_models_ok, "a non-empty list of known model names"))
    order: str = setting("joint", "step order inside a round ('joint' = CE and distillation in the same steps, "
                         "revisit_epochs passes; chosen on the validation split, docs/results.md; FedMD's original "
                         "protocol is 'digest-revisit')", one_of(ORDERS))
    digest_epochs: int = setting(2, "distillation epochs on the transfer set per round", NON_NEGATIVE)
    revisit_epochs: int = setting(10, "local training epochs on private data per round", NON_NEGATIVE)
    distill_weight: float = setting(0.3, "weight of the distillation loss when order=joint (0.3: chosen on the "
                                    "validation split, docs/results.md)", NON_NEGATIVE)
    temperature: float = setting(3.0, "distillation temperature T (soft labels are sent at T)", POSITIVE)
    batch_size: int = setting(16, "mini-batch size", AT_LEAST_1)
    lr: float = setting(3e-3, "learning rate (Adam)", POSITIVE)
    device: str = setting("auto", "'auto' (CUDA when present), 'cpu' or 'cuda[:N]'",
                          ((lambda v: v in ("auto", "cpu") or v.startswith("cuda")), "auto, cpu or cuda[:N]"))
    save_models: bool = setting(True, "clients save their final model in their own state folder for audits")
    record_label_histograms: bool = setting(False, "opt-in: nodes report their private label histogram, recorded "
                                            "in metrics.jsonl (a disclosure about each node's data; off by "
                                            "default)")
    # A client-side key under the server's prefix, kept by that name so that configs keep working.
    checkpoint: bool = setting(True, "checkpoint after every round: the server's state in <out>/checkpoint.json "
                               "and each node's state in its own state folder", key="server.checkpoint")
    seed: int = shared("seed")
    rounds: int = shared("rounds")


@settings_group("server")
class ServerSettings:
    """The round loop's rules: timeouts, what a round needs, what a reply may claim."""

    reply_timeout: float = setting(600.0, "seconds to wait for clients' replies each round", POSITIVE)
    node_wait_timeout: float = setting(300.0, "seconds to wait for the expected nodes to connect", POSITIVE)
    identify_timeout: float = setting(30.0, "seconds to wait for new nodes' answers to the identify query; a node "
                                      "is asked once per node id, and a late answer is still taken in a later "
                                      "round; while no node has answered yet, the wait lasts up to "
                                      "server.node_wait_timeout", POSITIVE)
    min_replies: int = setting(1, "fewest valid replies a round needs to fuse", AT_LEAST_1)
    max_failed_rounds: int = setting(3, "stop the run after this many rounds in a row with fewer than "
                                     "server.min_replies valid replies", AT_LEAST_1)
    max_num_examples: int = setting(1_000_000, "largest num-examples a client may report; larger replies are "
                                    "rejected, so sample-weighted fusion can never overflow", AT_LEAST_1)
    max_staleness: int = setting(3, "with client sampling: a returning client's targets may use replies at most "
                                 "this many rounds old", NON_NEGATIVE)
    max_in_flight: int = setting(-1, "most train messages unanswered at once (0 = all at once; -1 = auto: all at "
                                 "once in deployment, 16 per client actor in simulation)",
                                 ((lambda v: v >= -1), ">= -1"))
    identity_registry: str = setting("", "JSON file mapping client ids to SuperNode public keys (written by "
                                     "`fedkd certs`/`fedkd register`); '' = bind each id to the first node that "
                                     "claims it (docs/robustness.md)")
    resume: bool = setting(False, "continue from <out>/checkpoint.json (the last complete round)")
    min_contributors: int = setting(2, "a client's targets must mix at least this many other clients' uploads "
                                    "(effective number 1/sum(w^2) over peers, rounded), else it gets no targets "
                                    "that round (1 = no check; docs/privacy.md)", AT_LEAST_1)
    echo_tolerance: float = setting(0.05, "an upload closer to the targets the client was sent than this fraction "
                                    "of the median client's distance repeats them: it is left out of that "
                                    "round's fusion (0 = no check; docs/robustness.md)",
                                    ((lambda v: 0.0 <= v < 1.0), "within [0, 1)"))
    echo_ramp: float = setting(0.5, "an upload closer to its targets than this fraction of the median client's "
                               "distance (but not an echo) weighs as a peer only in proportion, distance / "
                               "(echo_ramp x median), in rules that weigh peers by closeness (KnFu): a blurred "
                               "echo gains nothing by its closeness (0 = off; docs/robustness.md)",
                               ((lambda v: 0.0 <= v <= 1.0), "within [0, 1]"))
    num_clients: int = shared("num_clients")
    rounds: int = shared("rounds")
    seed: int = shared("seed")
    clients_per_round: int = shared("clients_per_round")
    checkpoint: bool = shared("server.checkpoint")
    temperature: float = shared("temperature")

    @property
    def sampling(self) -> bool:
        return 0 < self.clients_per_round < self.num_clients

    def check(self) -> None:
        if 0 < self.echo_ramp <= self.echo_tolerance:
            raise ConfigError(f"config key 'server.echo_ramp' ({self.echo_ramp:g}) must be above "
                              f"server.echo_tolerance ({self.echo_tolerance:g}): uploads under the tolerance are "
                              "left out, and the ramp credits those between the two (0 = no ramp)")


@settings_group("sim")
class SimSettings:
    """Flower's simulation engine on Ray."""

    client_cpus: float = setting(1.0, "CPUs per simulated client (Ray)", within(0.01, MAX_SIM_CPUS))
    client_gpus: float = setting(0.0, "GPU fraction per simulated client (Ray)", within(0, 64))
    num_cpus: int = setting(0, "CPUs Ray may use for client actors (0 = all cores); with sim.client_cpus it sets "
                            "how many clients run at once", within(0, MAX_SIM_CPUS))
    object_store_mb: int = setting(0, "cap on Ray's shared-memory object store in MB (0 = Ray's default, about "
                                   "30% of RAM)", within(0, 2**20))
    ray_address: str = setting("", "attach to a running Ray cluster at this address ('auto' or HOST:PORT; '' = "
                               "start Ray here, unless RAY_ADDRESS is set); see docs/performance.md")

    def actors(self) -> int:
        """Client actors Ray will start on this machine (when it starts Ray here)."""
        return int((self.num_cpus or os.cpu_count() or 1) / self.client_cpus + 1e-9)

    def check(self) -> None:
        if not self.ray_address and self.actors() > MAX_SIM_ACTORS:
            raise ConfigError(f"config key 'sim.client_cpus': {self.client_cpus} CPUs per client on "
                              f"{self.num_cpus or os.cpu_count()} CPUs would start {self.actors()} client actors, "
                              f"more than {MAX_SIM_ACTORS}; raise sim.client_cpus or lower sim.num_cpus")
