"""Privacy audits of what a client exposes: membership inference and label-only model inversion.

Pure functions on numpy arrays and torch models (no Flower). See ``docs/audit.md`` for
the threat models and how to read the numbers.

- :mod:`fedkd.audit.membership` -- loss / confidence / reference-model (LiRA-offline
  style) / label-only membership inference, ROC AUC and TPR at low FPR.
- :mod:`fedkd.audit.label_oracle` -- top-1 label access that counts queries.
- :mod:`fedkd.audit.tacgan` -- the T-ACGAN of LOKT (knowledge transfer from hard labels).
- :mod:`fedkd.audit.inversion` -- surrogates, white-box inversion, scoring, the whole
  LOKT attack and its random-latent chance floor.
- :mod:`fedkd.audit.rmia` -- RMIA offline (Zarifzadeh et al., ICML 2024), ``a`` tuned on references.
- :mod:`fedkd.audit.soft_label_inversion` -- the server's paired-logits inversion of uploads
  (after Takahashi, Liu and Liu, CVPR 2023).
- :mod:`fedkd.audit.one_run` / :mod:`fedkd.audit.empirical_epsilon` -- an empirical ε lower bound
  from one run (Steinke, Nasr and Jagielski, NeurIPS 2023).
- :mod:`fedkd.audit.dp_check` -- that empirical bound against a DP-SGD run's accounted ε (pass or fail).
- :mod:`fedkd.audit.label_distribution` / :mod:`fedkd.audit.upload_membership` -- the curious server's
  attacks from the uploads alone: each client's class histogram, and membership through a surrogate
  distilled from its soft labels (after Shi, Ouyang and Wang, arXiv 2502.08001).
- :mod:`fedkd.audit.attacks` -- the registry every attack above joins (``fedkd audit --attacks``).
"""

from .inversion import (
    LoktConfig,
    fit_surrogates,
    invert,
    lokt_attack,
    random_latent_baseline,
    score_reconstructions,
    surrogate_dataset,
    train_evaluator,
    train_surrogates,
)
from .membership import (
    attack_metrics,
    audit_membership,
    balance_members,
    membership_scores_confidence,
    membership_scores_label_only,
    membership_scores_loss,
    membership_scores_reference,
    train_reference_models,
    worst_client,
)
from .one_run import epsilon_lower_bound, one_run_audit
from .label_oracle import LabelOracle, QueryBudgetExceeded
from .rmia import choose_offline_a, membership_scores_rmia
from .soft_label_inversion import SliConfig, soft_label_inversion
from .tacgan import AuxiliaryDiscriminator, ConditionalGenerator, generate, train_tacgan

__all__ = [
    "LoktConfig",
    "fit_surrogates",
    "invert",
    "lokt_attack",
    "random_latent_baseline",
    "score_reconstructions",
    "surrogate_dataset",
    "train_evaluator",
    "train_surrogates",
    "attack_metrics",
    "audit_membership",
    "balance_members",
    "membership_scores_confidence",
    "membership_scores_label_only",
    "membership_scores_loss",
    "membership_scores_reference",
    "train_reference_models",
    "worst_client",
    "epsilon_lower_bound",
    "one_run_audit",
    "choose_offline_a",
    "membership_scores_rmia",
    "SliConfig",
    "soft_label_inversion",
    "LabelOracle",
    "QueryBudgetExceeded",
    "AuxiliaryDiscriminator",
    "ConditionalGenerator",
    "generate",
    "train_tacgan",
]
