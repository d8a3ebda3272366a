"""The fusion-rule registry: an algorithm is one function, one entry here, and its config keys.

A :class:`FusionRule` names the pure fusion function, the config keys it reads
(they join ``fedkd keys`` and are checked like every other key) and how their
values become the function's keyword arguments. The server's ``KnowledgeFusion``
strategy looks the rule up by ``algorithm``; nothing else in the project has to
change to add one::

    from fedkd.fusion import FusionRule, register
    from fedkd.keys import Key, POSITIVE

    register(FusionRule(
        name="median",
        fuse=my_median_fusion,                      # (N, M, C) soft labels -> FusionResult
        keys={"median.trim": Key(0.1, float, "fraction trimmed at each end", *POSITIVE)},
        params=lambda cfg, client_ids: {"trim": cfg["median.trim"]},
    ))

Registered rules live in the process that registers them; only the server
fuses, so a rule registered next to the ServerApp is all a run needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from fedkd.fusion.base import FusionResult
from fedkd.keys import Key

ParamsFn = Callable[[Mapping[str, Any], np.ndarray], dict]


def _no_params(cfg: Mapping[str, Any], client_ids: np.ndarray) -> dict:
    return {}


@dataclass(frozen=True)
class FusionRule:
    """One soft-label fusion algorithm.

    fuse:   ``fuse(soft_labels (N, M, C), n_samples (N,), **params) -> FusionResult``.
    keys:   its config keys (dotted, e.g. ``knfu.beta``); they steer the server only.
    params: ``params(cfg, client_ids)`` -> keyword arguments of ``fuse``; ``client_ids`` are the
            ids of the N clients whose replies are fused, in row order.
    """

    name: str
    fuse: Callable[..., FusionResult]
    keys: Mapping[str, Key] = field(default_factory=dict)
    params: ParamsFn = _no_params
    help: str = ""


FUSION_RULES: dict[str, FusionRule] = {}


def register(rule: FusionRule) -> FusionRule:
    """Add (or replace) a rule; its keys must not clash with another rule's or the core config's."""
    if not rule.name or not rule.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a fusion rule needs a plain name, got {rule.name!r}")
    for other in FUSION_RULES.values():
        if other.name != rule.name and set(other.keys) & set(rule.keys):
            raise ValueError(f"fusion rule {rule.name!r} declares keys of rule {other.name!r}: "
                             f"{sorted(set(other.keys) & set(rule.keys))}")
    FUSION_RULES[rule.name] = rule
    return rule


def rule_keys() -> dict[str, Key]:
    """Every registered rule's config keys."""
    keys: dict[str, Key] = {}
    for rule in FUSION_RULES.values():
        keys.update(rule.keys)
    return keys


def get_rule(name: str) -> FusionRule:
    try:
        return FUSION_RULES[name]
    except KeyError:
        raise ValueError(f"unknown fusion rule {name!r}; known: {', '.join(sorted(FUSION_RULES))}") from None
