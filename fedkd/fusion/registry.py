"""The fusion-rule registry: an algorithm is one function, one entry here, and its settings.

A :class:`FusionRule` names the pure fusion function and, optionally, the settings group that
declares its config keys (``fedkd.keys.settings_group``: they join ``fedkd keys`` and are checked
like every other key). The server builds the rule's typed settings from the run config and calls
``fuse(soft_labels, n_samples, **settings.fuse_kwargs(client_ids))``; nothing else in the project has
to change to add a rule::

    from fedkd.fusion import FusionRule, register
    from fedkd.keys import POSITIVE, setting, settings_group

    @settings_group("median")
    class MedianSettings:
        trim: float = setting(0.1, "fraction trimmed at each end", POSITIVE)

    register(FusionRule("median", my_median_fusion, settings=MedianSettings))

A settings class may define ``fuse_kwargs(client_ids)`` (default: its declared fields by name;
``client_ids`` are the ids of the N clients whose replies are fused, in row order) and ``check()``
(cross-key rules; run only when the rule is the run's algorithm, via ``FusionRule.check``).
Registered rules live in the process that registers them; only the server fuses, so a rule
registered next to the ServerApp is all a run needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fedkd.fusion.base import FusionResult
from fedkd.keys import SETTINGS_GROUPS, declared_fields


@dataclass(frozen=True)
class FusionRule:
    """One soft-label fusion algorithm.

    fuse:       ``fuse(soft_labels (N, M, C), n_samples (N,), **kwargs) -> FusionResult``.
    settings:   the rule's settings group (its keys steer the server only), or None.
    peer_prior: ``fuse`` also takes ``peer_prior=`` (N,) factors in [0, 1], how much of each upload is the
                client's own rather than a repetition of its targets (``fedkd.fusion.echoes.own_shares``; 1 for
                most). A rule that weighs peers by closeness should: a blurred echo is close to everyone.
    """

    name: str
    fuse: Callable[..., FusionResult]
    settings: type | None = None
    help: str = ""
    peer_prior: bool = False

    def kwargs(self, settings: Any, client_ids: np.ndarray) -> dict:
        """The keyword arguments of ``fuse`` for these typed settings and fused clients."""
        if settings is None:
            return {}
        if hasattr(settings, "fuse_kwargs"):
            return settings.fuse_kwargs(client_ids)
        return declared_fields(settings)

    def check(self, settings: Any) -> None:
        """The rule's cross-key rules (ConfigError), when it is the run's algorithm."""
        if settings is not None and hasattr(settings, "rule_check"):
            settings.rule_check()


FUSION_RULES: dict[str, FusionRule] = {}


def register(rule: FusionRule) -> FusionRule:
    """Add (or replace) a rule; its settings must be a registered settings group."""
    if not rule.name or not rule.name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a fusion rule needs a plain name, got {rule.name!r}")
    if rule.settings is not None and rule.settings not in SETTINGS_GROUPS:
        raise ValueError(f"fusion rule {rule.name!r}: {rule.settings.__name__} is not declared with "
                         "fedkd.keys.settings_group")
    FUSION_RULES[rule.name] = rule
    return rule


def unregister(name: str) -> None:
    """Remove a rule and its keys (tests and plug-ins that clean up after themselves)."""
    rule = FUSION_RULES.pop(name)
    if rule.settings is not None and not any(r.settings is rule.settings for r in FUSION_RULES.values()):
        SETTINGS_GROUPS.pop(rule.settings, None)


def get_rule(name: str) -> FusionRule:
    try:
        return FUSION_RULES[name]
    except KeyError:
        raise ValueError(f"unknown fusion rule {name!r}; known: {', '.join(sorted(FUSION_RULES))}") from None
