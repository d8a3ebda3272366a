"""Fusion rules: pure functions from uploaded soft labels to per-client targets.

Each rule takes ``(soft_labels (N, M, C), n_samples (N,) | None, **params)`` and
returns a :class:`FusionResult`; :mod:`fedkd.fusion.registry` maps algorithm
names to rules and their settings (each rule's keys are declared by its settings
class below). ``fedavg`` is not here: it exchanges weights through Flower's own
FedAvg strategy (``server/fedavg.py``).
"""
from __future__ import annotations

import numpy as np

from fedkd.data.conflict import conflict_groups
from fedkd.keys import NON_NEGATIVE, POSITIVE, ConfigError, one_of, setting, settings_group, shared

from .base import FusionResult
from .effectiveness import DISTANCES
from .dsfl import fuse_dsfl
from .fedmd import fuse_fedmd
from .knfu import SCALES, fuse_knfu
from .local import fuse_local
from .oracle import fuse_oracle
from .registry import FUSION_RULES, FusionRule, get_rule, register, unregister


@settings_group("fedmd")
class FedmdSettings:
    weighted: bool = setting(False, "weight FedMD's average by the clients' reported sample counts (bounded by "
                             "server.max_num_examples)")


@settings_group("dsfl")
class DsflSettings:
    temperature: float = setting(0.5, "DS-FL entropy-reduction temperature (<1 sharpens)", POSITIVE)


@settings_group("knfu")
class KnfuSettings:
    beta: float = setting(0.25, "KnFu effectiveness sharpness beta", NON_NEGATIVE)
    tau: float = setting(-1.0, "KnFu neighbour threshold (-1 = 1/N)",
                         ((lambda v: v == -1.0 or 0 <= v <= 1), "-1 or within [0, 1]"))
    include_self: bool = setting(False, "may a client be its own KnFu neighbour")
    distance: str = setting("class_hellinger", "effectiveness measure: profile_kl (mean class profiles), or "
                            "per-sample sample_kl, sample_js, sample_hellinger (answers to the same images), "
                            "class_hellinger (per-class agreement: the worst class's mean Hellinger)",
                            one_of(DISTANCES))
    scale: str = setting("nearest", "per-sample measures: divide each row by its median peer distance, or by its "
                         "nearest peer's (guarded by knfu.guard x the median; finds a group of 2-3 among 10)",
                         one_of(SCALES))
    guard: float = setting(0.5, "knfu.scale=nearest: the row scale is never below this fraction of the median peer "
                           "distance (guards neighbour sets against collapse under strong skew)",
                           ((lambda v: 0 < v <= 1), "within (0, 1]"))
    one_vote: bool = setting(True, "per-sample measures: near-duplicate uploads (colluders, sybils) share one vote "
                             "(FoolsGold's similarity evidence; docs/robustness.md)")
    agreement: bool = setting(True, "per-sample measures: weigh each peer by the evidence that its answers agree "
                              "with the client's beyond chance (a z-score against its answers shuffled over the "
                              "images: none at z <= 1, full from z = 3); random, flipped or shifted answers get "
                              "no weight (docs/robustness.md)")

    relative: float = setting(0.5, "knfu.agreement: a peer whose agreement beyond chance is 0.1 or more below this "
                              "fraction of the client's best-agreeing peer's gets no weight (a conflicting "
                              "labelling), full weight from 0.1 above it; 0 = off (docs/algorithms.md)",
                              ((lambda v: v == 0.0 or 0.1 <= v <= 0.9), "0 or within [0.1, 0.9]"))
    self_share: float = setting(0.1, "a client's targets keep this share of its own answer, its neighbours' mix the "
                                "rest (FedMD's average keeps 1/N); it lifts local accuracy under strong skew and "
                                "costs a little global accuracy (docs/algorithms.md); 0 = peers only",
                                ((lambda v: 0 <= v <= 0.5), "within [0, 0.5]"))

    def fuse_kwargs(self, client_ids: np.ndarray) -> dict:
        return {"beta": self.beta, "tau": None if self.tau == -1.0 else self.tau,
                "include_self": self.include_self, "distance": self.distance, "scale": self.scale,
                "guard": self.guard, "one_vote": self.one_vote, "agreement": self.agreement,
                "relative": self.relative, "self_share": self.self_share}


@settings_group("oracle")
class OracleSettings:
    """The oracle has no keys of its own: it reads the conflict benchmark's groups."""

    num_clients: int = shared("num_clients")
    conflict_kind: str = shared("conflict.kind")
    conflict_groups: int = shared("conflict.groups")

    def fuse_kwargs(self, client_ids: np.ndarray) -> dict:
        return {"groups": conflict_groups(self.num_clients, self.conflict_groups)[client_ids]}

    def rule_check(self) -> None:
        if self.conflict_kind == "none":
            raise ConfigError("config key 'algorithm': oracle fuses inside the true conflict groups, so it "
                              "needs conflict.kind label_permutation or rotation")


register(FusionRule("local", fuse_local, help="no fusion: every client trains on its own data only"))
register(FusionRule("fedmd", fuse_fedmd, FedmdSettings,
                    help="FedMD: every client distils toward the average of all soft labels"))
register(FusionRule("dsfl", fuse_dsfl, DsflSettings, help="DS-FL: the average, sharpened by entropy reduction"))
register(FusionRule("knfu", fuse_knfu, KnfuSettings,
                    help="KnFu: each client fuses only its semantic neighbours' knowledge", peer_prior=True))
register(FusionRule("oracle", fuse_oracle, OracleSettings,
                    help="FedMD inside each client's true conflict group (simulation only: an upper bound)"))


def fuse(algorithm: str, soft_labels, n_samples=None, **params) -> FusionResult:
    """Run the fusion rule named ``algorithm``."""
    return get_rule(algorithm).fuse(soft_labels, n_samples, **params)


__all__ = ["FUSION_RULES", "DsflSettings", "FedmdSettings", "FusionResult", "FusionRule", "KnfuSettings",
           "OracleSettings", "fuse", "fuse_dsfl", "fuse_fedmd", "fuse_knfu", "fuse_local", "fuse_oracle", "get_rule",
           "register", "unregister"]
