"""What the server knows of the federation: public facts only (the transfer set's size and fingerprint)."""
from __future__ import annotations

from dataclasses import dataclass

from fedkd.config import Config
from fedkd.data import build_federation
from fedkd.privacy.canary_plan import transfer_inputs


@dataclass(frozen=True)
class PublicFacts:
    fingerprint: str
    num_classes: int
    transfer_size: int
    input_shape: tuple[int, int, int]
    has_global_test: bool

    def as_dict(self) -> dict:
        return dict(fingerprint=self.fingerprint, num_classes=self.num_classes, transfer_size=self.transfer_size)


def public_facts(cfg: Config) -> PublicFacts:
    """The transfer set every party uses (with the canary images when the study puts them there)."""
    fed = build_federation(cfg.federation)
    transfer_x, fingerprint = transfer_inputs(cfg.canaries, fed)
    return PublicFacts(fingerprint=fingerprint, num_classes=fed.num_classes, transfer_size=len(transfer_x),
                       input_shape=tuple(fed.input_shape), has_global_test=True)
