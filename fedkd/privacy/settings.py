"""The privacy keys of a run: swing distillation of uploads, and the canary experiment."""
from __future__ import annotations

from fedkd.keys import AT_LEAST_1, CLIENT, NON_NEGATIVE, POSITIVE, ConfigError, one_of, setting, settings_group, \
    shared, within
from fedkd.privacy.swing import MECHANISMS

REFERENCES = ("targets", "none")
NOISE_SEEDS = ("auto", "derived", "os")
MAX_CANARY_REFERENCES = 100_000
# Canaries are images built and kept in memory (and added to the transfer set): a study needs tens, not millions.
MAX_CANARIES = 10_000
MAX_CANARY_REPEATS = 1_000


@settings_group("privacy", audience=CLIENT)
class PrivacySettings:
    """Swing distillation of uploads and the (epsilon, delta) it reports."""

    swing: bool = setting(False, "protect uploaded soft labels with swing distillation")
    t_min: float = setting(3.0, "swing: temperature of public-looking samples", POSITIVE)
    t_max: float = setting(10.0, "swing: temperature of the most private-looking samples", POSITIVE)
    mechanism: str = setting("gaussian", "swing: noise on the tempered probabilities", one_of(MECHANISMS))
    noise_scale: float = setting(0.05, "swing: Gaussian sigma or Laplace b per entry (0 = no guarantee)",
                                 NON_NEGATIVE)
    delta: float = setting(1e-5, "delta of the reported (epsilon, delta)",
                           ((lambda v: 0 < v < 1), "within (0, 1)"))
    reference: str = setting("targets", "swing's privacy-score reference: 'targets' (the public fused targets the "
                             "client received) or 'none' (top-1 confidence)", one_of(REFERENCES))
    noise_seed: str = setting("auto", "'auto' (reproducible from the run seed in simulation, fresh OS entropy on "
                              "real nodes), 'derived' (always reproducible: studies only) or 'os'",
                              one_of(NOISE_SEEDS))
    # DP-SGD on the client's private loss (fedkd/privacy/dp_sgd.py): a guarantee for the training data
    dp_sgd: bool = setting(False, "train the private loss with DP-SGD (Opacus): per-example clipping, Gaussian "
                           "noise, Poisson sampling; epsilon of the training data accounted over the whole run")
    dp_clip: float = setting(1.0, "DP-SGD: per-example gradient L2 clipping norm", POSITIVE)
    dp_noise_multiplier: float = setting(1.0, "DP-SGD: noise std / clip (used when dp_target_epsilon = 0)",
                                         NON_NEGATIVE)
    dp_target_epsilon: float = setting(0.0, "DP-SGD: epsilon of the whole run at privacy.delta; each client "
                                       "calibrates its noise multiplier to it (0 = use dp_noise_multiplier)",
                                       NON_NEGATIVE)
    seed: int = shared("seed")
    rounds: int = shared("rounds")

    def check(self) -> None:
        if self.t_min > self.t_max:
            raise ConfigError(f"config key 'privacy.t_min': {self.t_min} exceeds privacy.t_max {self.t_max}")


@settings_group("canaries", audience=CLIENT)
class CanarySettings:
    """The canary experiment: planted secrets whose travel to peers is measured."""

    enabled: bool = setting(False, "plant canaries in one client's data and measure exposure every round")
    client: int = setting(0, "client id of the client that holds the canaries", NON_NEGATIVE)
    count: int = setting(10, "number of canaries k", within(1, MAX_CANARIES))
    repeats: int = setting(10, "copies of each canary in the client's data", within(1, MAX_CANARY_REPEATS))
    references: int = setting(1000, "never-planted references of the same construction",
                              within(1, MAX_CANARY_REFERENCES))
    in_transfer: bool = setting(True, "also put the canary images (unlabelled) in the public transfer set, so "
                                "the owner's answers on them are shared")
    seed: int = shared("seed")
    num_clients: int = shared("num_clients")

    def check(self) -> None:
        if self.enabled and self.client >= self.num_clients:
            raise ConfigError(f"config key 'canaries.client': {self.client} is not a client id "
                              f"(num_clients={self.num_clients})")
