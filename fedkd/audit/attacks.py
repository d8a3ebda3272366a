"""The privacy-attack registry: what ``fedkd audit`` runs, writes to ``audit.json`` and shows in the report.

A privacy attack is one function of an :class:`AuditContext` (the loaded run, the audit's settings, a
shared cache) that returns a JSON-able dict, and one :func:`register_attack` call::

    from fedkd.audit.attacks import PrivacyAttack, register_attack

    def upload_entropy(ctx):
        rows = ...                               # anything the run's artifacts hold
        return {"mean_entropy": 1.23}

    register_attack(PrivacyAttack("upload_entropy", "Entropy of the uploads", upload_entropy,
                                  needs=("rounds",), summary=lambda r: f"mean entropy {r['mean_entropy']:.2f}"))

Its result appears in ``audit.json[name]``, in the console summary of ``fedkd audit`` and, for an attack
without a section of its own in the report template, in a generic section of ``report.html`` (its label,
its description, and its numbers as a table). ``tests/test_plugin_attack.py`` registers one from outside
the package. The built-in attacks (membership, LOKT inversion, the server's soft-label inversion, the
one-run empirical epsilon) are registered the same way by their modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .artifacts import RunArtifacts
from .settings import AuditSettings
from .stages import Clock, progress_log

# What an attack may need from a run: checked before it runs; an unmet need skips it with the reason.
NEEDS: dict[str, Callable[[RunArtifacts], bool]] = {
    "models": lambda art: bool(art.models),                   # the clients' saved final models
    "rounds": lambda art: bool(art.rounds),                   # the round records (metrics.jsonl)
    "canaries": lambda art: bool(art.cfg.canaries.enabled),   # planted canaries
}


@dataclass
class AuditContext:
    """What an attack gets: the run, the settings, and what the attacks before it produced."""

    art: RunArtifacts
    settings: AuditSettings
    clients: list[int]                      # the audited clients (all loaded models by default)
    clock: Clock = field(default_factory=Clock)
    cache: dict = field(default_factory=dict)  # shared across runs of a sweep (judges, reference models)
    images: dict = field(default_factory=dict)  # arrays for the report's figures
    results: dict = field(default_factory=dict)  # earlier attacks' results, by name
    log: Callable[[str], None] = progress_log


@dataclass(frozen=True)
class PrivacyAttack:
    """One privacy attack of the audit.

    name:    its key in ``audit.json`` (a plain identifier).
    label:   how the report and the console call it.
    run:     ``run(ctx) -> dict | None`` (None: nothing to report for this run).
    needs:   what it needs from a run (keys of :data:`NEEDS`).
    enabled: ``enabled(settings) -> bool``: whether these settings ask for it (default: always).
    summary: ``summary(result) -> str``: one line for the console (default: none).
    description: a sentence for the report's generic section.
    """

    name: str
    label: str
    run: Callable[[AuditContext], Any]
    needs: tuple[str, ...] = ()
    enabled: Callable[[AuditSettings], bool] = lambda settings: True
    summary: Callable[[dict], str] | None = None
    description: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"a privacy attack needs an identifier as its name, got {self.name!r}")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"attack {self.name!r} needs {sorted(unknown)}; known needs: {sorted(NEEDS)}")


PRIVACY_ATTACKS: dict[str, PrivacyAttack] = {}
# Sections of audit.json that are not attacks (an attack may not take their names).
RESERVED = ("run", "canaries", "fusion_weights", "settings", "timing", "paths", "skipped_attacks", "attacks")


def register_attack(attack: PrivacyAttack) -> PrivacyAttack:
    """Add (or replace) an attack; it runs after those registered before it."""
    if attack.name in RESERVED:
        raise ValueError(f"{attack.name!r} is a section of audit.json, not an attack name")
    PRIVACY_ATTACKS[attack.name] = attack
    return attack


def unregister_attack(name: str) -> None:
    PRIVACY_ATTACKS.pop(name)


def unmet_needs(attack: PrivacyAttack, art: RunArtifacts) -> list[str]:
    return [need for need in attack.needs if not NEEDS[need](art)]
