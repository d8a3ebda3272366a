"""Fusion rules: pure functions from uploaded soft labels to per-client targets.

Each rule takes ``(soft_labels (N, M, C), n_samples (N,) | None, **params)`` and
returns a :class:`FusionResult`; :mod:`fedkd.fusion.registry` maps algorithm
names to rules and their config keys. ``fedavg`` is not here: it exchanges
weights through Flower's own FedAvg strategy (``server/fedavg.py``).
"""
from __future__ import annotations

from fedkd.keys import NON_NEGATIVE, POSITIVE, Key

from fedkd.data.conflict import conflict_groups

from .base import FusionResult
from .effectiveness import DISTANCES
from .dsfl import fuse_dsfl
from .fedmd import fuse_fedmd
from .knfu import SCALES, fuse_knfu
from .local import fuse_local
from .oracle import fuse_oracle
from .registry import FUSION_RULES, FusionRule, get_rule, register, rule_keys

register(FusionRule("local", fuse_local, help="no fusion: every client trains on its own data only"))
register(FusionRule(
    "fedmd", fuse_fedmd, help="FedMD: every client distils toward the average of all soft labels",
    keys={"fedmd.weighted": Key(False, bool, "weight FedMD's average by the clients' reported sample counts "
                                "(bounded by server.max_num_examples)")},
    params=lambda cfg, ids: {"weighted": cfg["fedmd.weighted"]}))
register(FusionRule(
    "dsfl", fuse_dsfl, help="DS-FL: the average, sharpened by entropy reduction",
    keys={"dsfl.temperature": Key(0.5, float, "DS-FL entropy-reduction temperature (<1 sharpens)", *POSITIVE)},
    params=lambda cfg, ids: {"temperature": cfg["dsfl.temperature"]}))
register(FusionRule(
    "knfu", fuse_knfu, help="KnFu: each client fuses only its semantic neighbours' knowledge",
    keys={
        "knfu.beta": Key(1.0, float, "KnFu effectiveness sharpness beta", *NON_NEGATIVE),
        "knfu.tau": Key(-1.0, float, "KnFu neighbour threshold (-1 = 1/N)",
                        lambda v: v == -1.0 or 0 <= v <= 1, "-1 or within [0, 1]"),
        "knfu.include_self": Key(False, bool, "may a client be its own KnFu neighbour"),
        "knfu.distance": Key("sample_hellinger", str, "effectiveness measure: profile_kl (mean class profiles), or "
                             "per-sample sample_kl, sample_js, sample_hellinger (answers to the same images), "
                             "class_hellinger (per-class agreement: the worst class's mean Hellinger)",
                             lambda v: v in DISTANCES, f"one of {', '.join(DISTANCES)}"),
        "knfu.scale": Key("median", str, "per-sample measures: divide each row by its median peer distance, or by its "
                          "nearest peer's (guarded by half the median; finds a group of 2-3 among 10)",
                          lambda v: v in SCALES, f"one of {', '.join(SCALES)}"),
        "knfu.guard": Key(0.5, float, "knfu.scale=nearest: the row scale is never below this fraction of the median "
                          "peer distance (guards neighbour sets against collapse under strong skew)",
                          lambda v: 0 < v <= 1, "within (0, 1]"),
        "knfu.one_vote": Key(True, bool, "per-sample measures: near-duplicate uploads (colluders, sybils) share one "
                             "vote (FoolsGold's similarity evidence; docs/robustness.md)"),
    },
    params=lambda cfg, ids: {"beta": cfg["knfu.beta"], "tau": None if cfg["knfu.tau"] == -1.0 else cfg["knfu.tau"],
                             "include_self": cfg["knfu.include_self"], "distance": cfg["knfu.distance"],
                             "scale": cfg["knfu.scale"], "guard": cfg["knfu.guard"],
                             "one_vote": cfg["knfu.one_vote"]}))
register(FusionRule(
    "oracle", fuse_oracle, help="FedMD inside each client's true conflict group (simulation only: an upper bound)",
    params=lambda cfg, ids: {"groups": conflict_groups(cfg["num_clients"], cfg["conflict.groups"])[ids]}))


def fuse(algorithm: str, soft_labels, n_samples=None, **params) -> FusionResult:
    """Run the fusion rule named ``algorithm``."""
    return get_rule(algorithm).fuse(soft_labels, n_samples, **params)


__all__ = ["FUSION_RULES", "FusionResult", "FusionRule", "fuse", "fuse_dsfl", "fuse_fedmd", "fuse_knfu",
           "fuse_local", "fuse_oracle", "get_rule", "register", "rule_keys"]
