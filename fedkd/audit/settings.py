"""What ``fedkd audit`` attacks, and with which budgets: :class:`AuditSettings`."""
from __future__ import annotations

import dataclasses

from .inversion import LoktConfig
from .soft_label_inversion import QUICK_SLI, SliConfig

__all__ = ["AuditSettings", "QUICK_LOKT"]

# Small LOKT budget (the unit tests' setting): about 5 s of CPU per attack on digits.
QUICK_LOKT = LoktConfig(
    gan_steps=400, gan_warmup=80, surrogate_archs=("mlp",), surrogate_per_class=30,
    surrogate_epochs=10, n_per_class=8, invert_steps=60,
)


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """What to attack and with which budgets.

    Attributes
    ----------
    clients : tuple of int or None
        Clients whose membership leakage is measured (None = all).
    lokt_clients : tuple of int or None
        LOKT targets; None picks ``lokt_targets`` of the audited clients, those with the
        most never-held classes first (they make the cross-client audit informative).
    lokt_targets : int
        How many targets to pick when ``lokt_clients`` is None (0 = no inversion).
    lokt : LoktConfig
        The attack's budgets (``LoktConfig.expected_queries`` gives its queries).
    local_baseline : bool
        Also attack a model trained without federation (same data, architecture,
        epochs and attack seed): what the attack gets from the client's own data alone.
    reference_models : int
        Reference models per client for the reference attack (0 = skip that attack).
    reference_epochs : int or None
        Their training epochs (None = what the client ran: rounds x revisit_epochs).
    reference_epochs_cap : int or None
        Upper bound on those epochs (for quick audits of long runs).
    evaluator_epochs : int
        Training epochs of the independent judge.
    label_only_augment : int
        Perturbed copies per sample in the label-only attack.
    rmia : bool
        Run RMIA (offline) with the reference models.
    bootstrap : int
        Bootstrap resamples behind the intervals of every membership number (0 = none).
    sli : SliConfig
        Budgets of the server's soft-label inversion.
    sli_clients : tuple of int or None
        Its targets (None = every audited client; () = skip it).
    one_run_canaries : int
        Candidates of the one-run ε audit, each included with probability 1/2 (0 = skip).
    attacks : tuple of str or None
        The registered privacy attacks to run (``fedkd.audit.attacks.PRIVACY_ATTACKS``); None = every one
        whose needs the run meets.
    seed : int
    device : str
    progress : bool
        Progress bars and stage lines on stderr.
    """

    clients: tuple[int, ...] | None = None
    lokt_clients: tuple[int, ...] | None = None
    lokt_targets: int = 2
    lokt: LoktConfig = LoktConfig()
    local_baseline: bool = True
    reference_models: int = 4
    reference_epochs: int | None = None
    reference_epochs_cap: int | None = None
    evaluator_epochs: int = 30
    label_only_augment: int = 16
    rmia: bool = True
    bootstrap: int = 200
    sli: SliConfig = SliConfig()
    sli_clients: tuple[int, ...] | None = None
    one_run_canaries: int = 200
    attacks: tuple[str, ...] | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def quick(cls, **changes) -> "AuditSettings":
        """Small budgets for a first look or a test: one LOKT target, the small LOKT
        setting, two reference models of at most 20 epochs, a 10-epoch judge."""
        base = dict(lokt_targets=1, lokt=QUICK_LOKT, reference_models=2, reference_epochs_cap=20,
                    evaluator_epochs=10, label_only_augment=8, bootstrap=100, sli=QUICK_SLI,
                    one_run_canaries=100)
        base.update(changes)
        return cls(**base)

    def __post_init__(self):
        for name in ("lokt_targets", "reference_models", "label_only_augment", "bootstrap", "one_run_canaries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.evaluator_epochs < 1:
            raise ValueError(f"evaluator_epochs must be >= 1, got {self.evaluator_epochs!r}")
        for name in ("reference_epochs", "reference_epochs_cap"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if not isinstance(self.lokt, LoktConfig):
            raise ValueError(f"lokt must be a LoktConfig, got {type(self.lokt).__name__}")
        if not isinstance(self.sli, SliConfig):
            raise ValueError(f"sli must be a SliConfig, got {type(self.sli).__name__}")
