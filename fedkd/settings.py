"""Typed views of a run config: what each part of the library needs, validated, by name.

The config (``fedkd.config``) is a flat mapping of dotted keys because that is
what TOML files, ``--set`` and Flower's run config hold. Below the app layer the
library takes these frozen dataclasses instead, so a misspelt setting is an
AttributeError at import-checking time rather than a KeyError mid-run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from fedkd.data import FederationSpec


def federation_spec(cfg: Mapping[str, Any]) -> FederationSpec:
    """Which federation every party builds from one dataset (simulation and export)."""
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


@dataclass(frozen=True)
class TrainingSettings:
    """One client's local round: step order, epochs, optimiser, distillation temperature."""

    seed: int
    models: tuple[str, ...]
    order: str
    digest_epochs: int
    revisit_epochs: int
    distill_weight: float
    temperature: float
    batch_size: int
    lr: float
    device: str
    rounds: int
    save_models: bool
    checkpoint: bool
    record_label_histograms: bool

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TrainingSettings":
        return cls(seed=cfg["seed"], models=tuple(cfg["models"]), order=cfg["order"],
                   digest_epochs=cfg["digest_epochs"], revisit_epochs=cfg["revisit_epochs"],
                   distill_weight=cfg["distill_weight"], temperature=cfg["temperature"],
                   batch_size=cfg["batch_size"], lr=cfg["lr"], device=cfg["device"], rounds=cfg["rounds"],
                   save_models=cfg["save_models"], checkpoint=cfg["server.checkpoint"],
                   record_label_histograms=cfg["record_label_histograms"])


@dataclass(frozen=True)
class PrivacySettings:
    """Swing distillation of uploads and the (epsilon, delta) it reports."""

    swing: bool
    t_min: float
    t_max: float
    mechanism: str
    noise_scale: float
    delta: float
    reference: str
    noise_seed: str  # auto | derived | os
    seed: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "PrivacySettings":
        return cls(swing=cfg["privacy.swing"], t_min=cfg["privacy.t_min"], t_max=cfg["privacy.t_max"],
                   mechanism=cfg["privacy.mechanism"], noise_scale=cfg["privacy.noise_scale"],
                   delta=cfg["privacy.delta"], reference=cfg["privacy.reference"],
                   noise_seed=cfg["privacy.noise_seed"], seed=cfg["seed"])


@dataclass(frozen=True)
class CanarySettings:
    """The canary experiment: planted secrets whose travel to peers is measured."""

    enabled: bool
    client: int
    count: int
    repeats: int
    references: int
    in_transfer: bool
    seed: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "CanarySettings":
        return cls(enabled=cfg["canaries.enabled"], client=cfg["canaries.client"], count=cfg["canaries.count"],
                   repeats=cfg["canaries.repeats"], references=cfg["canaries.references"],
                   in_transfer=cfg["canaries.in_transfer"], seed=cfg["seed"])


@dataclass(frozen=True)
class ConflictSettings:
    """The knowledge-conflict benchmark: contiguous client groups that see the task differently."""

    kind: str
    groups: int
    seed: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "ConflictSettings":
        return cls(kind=cfg["conflict.kind"], groups=cfg["conflict.groups"], seed=cfg["seed"])


@dataclass(frozen=True)
class ServerSettings:
    """The round loop's rules: timeouts, what a round needs, what a reply may claim."""

    num_clients: int
    rounds: int
    seed: int
    clients_per_round: int
    reply_timeout: float
    node_wait_timeout: float
    min_replies: int
    max_failed_rounds: int
    max_num_examples: int
    max_staleness: int
    max_in_flight: int
    identity_registry: str
    checkpoint: bool
    resume: bool
    temperature: float

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "ServerSettings":
        return cls(num_clients=cfg["num_clients"], rounds=cfg["rounds"], seed=cfg["seed"],
                   clients_per_round=cfg["clients_per_round"], reply_timeout=cfg["server.reply_timeout"],
                   node_wait_timeout=cfg["server.node_wait_timeout"], min_replies=cfg["server.min_replies"],
                   max_failed_rounds=cfg["server.max_failed_rounds"],
                   max_num_examples=cfg["server.max_num_examples"], max_staleness=cfg["server.max_staleness"],
                   max_in_flight=cfg["server.max_in_flight"], identity_registry=cfg["server.identity_registry"],
                   checkpoint=cfg["server.checkpoint"], resume=cfg["server.resume"],
                   temperature=cfg["temperature"])

    @property
    def sampling(self) -> bool:
        return 0 < self.clients_per_round < self.num_clients


@dataclass(frozen=True)
class SimSettings:
    """Flower's simulation engine on Ray."""

    client_cpus: float
    client_gpus: float
    num_cpus: int
    object_store_mb: int
    ray_address: str

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "SimSettings":
        return cls(client_cpus=cfg["sim.client_cpus"], client_gpus=cfg["sim.client_gpus"],
                   num_cpus=cfg["sim.num_cpus"], object_store_mb=cfg["sim.object_store_mb"],
                   ray_address=cfg["sim.ray_address"])
