"""The fault-injection keys (``fault.*``) of a robustness run: who misbehaves, how and when.

Declarations only: the run config collects these keys, so this module imports nothing else from
``fedkd.faults`` (the product never imports fault injection; ``tests/test_architecture.py``).
The plan they describe is built and checked by ``fedkd.faults.plan`` when the command line installs
fault injection. ``attack.*`` is the old prefix, accepted with a deprecation message for one release.
"""
from __future__ import annotations

from fedkd.keys import NON_NEGATIVE, ConfigError, one_of, setting, settings_group, shared

# What malicious clients upload instead of their honest soft labels (fedkd.faults.knowledge implements each).
LIE_KINDS = ("random", "flip", "shift", "mimic", "swap", "echo")


@settings_group("fault", aliases=("attack",))
class FaultSettings:
    """Fault injection for robustness studies (installed by the command line, never by the apps)."""

    kind: str = setting("none", "what malicious clients upload: 'random' (uniform Dirichlet rows), 'flip' "
                        "(class c -> C-1-c), 'shift' (one-hot rows of class c+1), 'mimic' (rows matching class "
                        "marginals), 'swap' (honest, but class SRC's mass on DST: fault.swap), 'echo' (the targets the "
                        "server sent it, built to sit close to its neighbours; honest while it has none) or 'none'",
                        one_of(("none",) + LIE_KINDS))
    swap: str = setting("3:8", "fault.kind=swap: SRC:DST, the class whose mass the malicious clients move to "
                        "another class (their answers are honest otherwise)")
    collude: bool = setting(False, "the malicious clients upload one identical answer (one model, trained on the "
                            "first malicious client's data, behind every malicious identity)")
    collude_noise: float = setting(0.0, "fault.collude: each malicious client mixes this share of its own random "
                                   "rows into the shared answer, so that the uploads are no longer "
                                   "near-identical (an attempt to escape KnFu's one vote for near-duplicates); "
                                   "0 = the identical answer", ((lambda v: 0.0 <= v < 1.0), "within [0, 1)"))
    echo_noise: float = setting(0.0, "fault.kind=echo: each echo mixes this share of its own random rows into the "
                                "targets it uploads, so that the upload no longer repeats them exactly (an attempt "
                                "to escape server.echo_tolerance); 0 = the exact targets",
                                ((lambda v: 0.0 <= v < 1.0), "within [0, 1)"))
    echo_with: str = setting("random", "fault.echo_noise: what an echo mixes into its targets: 'random' (its own "
                             "random rows) or 'own' (its own honest answer: a client that distils almost wholly, "
                             "close to everyone and agreeing with the images)", one_of(("random", "own")))
    num_malicious: int = setting(0, "number of malicious clients: the last k client ids", NON_NEGATIVE)
    clients: tuple[str, ...] = setting([], "malicious client ids (instead of fault.num_malicious)",
                                       ((lambda v: all(x.isdigit() for x in v)), "a list of client ids"))
    malformed: tuple[str, ...] = setting([], "fault injection: CLIENT:ROUND:KIND entries (ROUND may be *); KIND "
                                         "from fedkd.faults.malformed.CATALOGUE (docs/robustness.md)")
    stop_after_round: int = setting(0, "stop the server after this round as if it crashed (0 = never; for "
                                    "testing resume)", NON_NEGATIVE)
    num_clients: int = shared("num_clients")
    algorithm: str = shared("algorithm")
    seed: int = shared("seed")
    wire_dtype: str = shared("wire_dtype")
    wire_topk: int = shared("wire_topk")

    @property
    def wanted(self) -> bool:
        """Does this run ask for any fault injection?"""
        return self.kind != "none" or bool(self.malformed) or self.stop_after_round > 0

    def check(self) -> None:
        """The keys' form; ``fedkd.faults.plan`` checks the malformation kinds when it is installed."""
        n = self.num_clients
        if self.num_malicious > n:
            raise ConfigError(f"config key 'fault.num_malicious': {self.num_malicious} exceeds num_clients={n}")
        bad = [x for x in self.clients if int(x) >= n]
        if bad:
            raise ConfigError(f"config key 'fault.clients': {bad} are not client ids (num_clients={n})")
        if self.clients and self.num_malicious:
            raise ConfigError("config keys 'fault.clients' and 'fault.num_malicious' both choose the malicious "
                              "clients; set one of them")
        if self.kind == "none" and (self.clients or self.num_malicious):
            raise ConfigError("config key 'fault.kind' is 'none', so the malicious clients chosen by "
                              "fault.clients/fault.num_malicious would behave honestly; set fault.kind")
        if self.collude_noise and not self.collude:
            raise ConfigError("config key 'fault.collude_noise' blurs the colluders' shared answer; set "
                              "fault.collude=true")
        if self.echo_noise and self.kind != "echo":
            raise ConfigError("config key 'fault.echo_noise' blurs an echo's upload; set fault.kind=echo")
        if self.echo_with != "random" and not self.echo_noise:
            raise ConfigError("config key 'fault.echo_with' says what an echo mixes into its targets; set "
                              "fault.echo_noise (its share)")
        if self.kind != "none" and self.algorithm == "fedavg":
            raise ConfigError("config key 'fault.kind' corrupts soft labels, but algorithm 'fedavg' exchanges "
                              "weights")
